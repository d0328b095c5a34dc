import fp from "fastify-plugin";
import { channels, type ApiKeyRevokedPayload, type ExpertJobChangedPayload } from "../db/channels.ts";
import { RuntimeService, type RuntimeOptions } from "../modules/runtime/runtime.service.ts";
import { oneAtATime } from "../notify/bus.ts";

declare module "fastify" {
  interface FastifyInstance {
    runtime: RuntimeService;
  }
}

/** Claims, status reports and lease sweeps; waiting claims are woken by job and key notifications from any instance. */
export const runtimePlugin = fp<RuntimeOptions>(
  async (app, options) => {
    const runtime = new RuntimeService(app.prisma, app.expertJobs, app.checkpoints, app.providerKeys, app.log, app.notifier, options);
    // A queued job or a revocation whose notification was lost still reaches the waiting claims, one interval late.
    const recheck = oneAtATime(async () => {
      await runtime.recheck();
      const keys = runtime.waitingKeys;
      if (keys.length > 0) for (const apiKeyId of await app.admin.revokedAmong(keys)) runtime.onApiKeyRevoked(apiKeyId);
    });
    const listen = <T>(channel: string, handle: (payload: T) => void) =>
      app.notifications.on(channel, (payload) => {
        let parsed: T;
        try {
          parsed = JSON.parse(payload) as T;
        } catch {
          app.log.warn({ payload }, "ignoring malformed notification payload");
          return;
        }
        handle(parsed);
      });
    const stops = [
      listen<ExpertJobChangedPayload>(channels.expertJobChanged, (payload) => runtime.onJobChanged(payload)),
      listen<ApiKeyRevokedPayload>(channels.apiKeyRevoked, (payload) => runtime.onApiKeyRevoked(payload.apiKeyId)),
      app.notifications.onCatchUp((reason) => {
        if (reason === "reconnected") return runtime.wakeAll();
        void recheck().catch((error) => app.log.warn({ err: error }, "claim safety re-read failed"));
      }),
    ];
    app.decorate("runtime", runtime);
    app.addHook("preClose", async () => {
      for (const stop of stops) stop();
      await runtime.close();
    });
  },
  { name: "runtime", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
