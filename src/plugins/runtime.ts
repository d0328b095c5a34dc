import fp from "fastify-plugin";
import { channels, type ApiKeyRevokedPayload, type ExpertJobChangedPayload } from "../db/channels.ts";
import { RuntimeService, type RuntimeOptions } from "../modules/runtime/runtime.service.ts";

declare module "fastify" {
  interface FastifyInstance {
    runtime: RuntimeService;
  }
}

/** Claims, status reports and lease sweeps; waiting claims are woken by job and key notifications from any instance. */
export const runtimePlugin = fp<RuntimeOptions>(
  async (app, options) => {
    const runtime = new RuntimeService(app.prisma, app.expertJobs, app.checkpoints, app.providerKeys, app.log, options);
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
      app.notifications.onReconnected(() => runtime.wakeAll()),
    ];
    app.decorate("runtime", runtime);
    app.addHook("preClose", async () => {
      for (const stop of stops) stop();
      await runtime.close();
    });
  },
  { name: "runtime", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
