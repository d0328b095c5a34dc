import fp from "fastify-plugin";
import { channels, type ExpertJobChangedPayload } from "../db/channels.ts";
import { RuntimeService, type RuntimeOptions } from "../modules/runtime/runtime.service.ts";

declare module "fastify" {
  interface FastifyInstance {
    runtime: RuntimeService;
  }
}

/** Claims, status reports and lease sweeps; waiting claims are woken by job notifications from any instance. */
export const runtimePlugin = fp<RuntimeOptions>(
  async (app, options) => {
    const runtime = new RuntimeService(app.prisma, app.expertJobs, app.checkpoints, app.providerKeys, app.log, options);
    const stops = [
      app.notifications.on(channels.expertJobChanged, (payload) => {
        try {
          runtime.onJobChanged(JSON.parse(payload) as ExpertJobChangedPayload);
        } catch {
          app.log.warn({ payload }, "ignoring malformed notification payload");
        }
      }),
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
