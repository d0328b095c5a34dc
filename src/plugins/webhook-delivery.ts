import fp from "fastify-plugin";
import { channels, type ExpertJobChangedPayload } from "../db/channels.ts";
import { WebhookDeliveryService, type WebhookDeliveryOptions } from "../modules/webhooks/webhook-delivery.service.ts";
import { webhookStatuses } from "../modules/webhooks/webhooks.schemas.ts";

declare module "fastify" {
  interface FastifyInstance {
    webhookDeliveries: WebhookDeliveryService;
  }
}

const webhookStatusSet: ReadonlySet<string> = new Set(webhookStatuses);

/**
 * Sends the webhook outbox: every instance runs one worker; it polls every `pollIntervalMs` (retries fall
 * due with time) and is woken at once by a job status change that makes an event, on any instance. Runs
 * never overlap; on close, attempts in flight are cut short and recorded (due again at once), before the
 * database closes.
 */
export const webhookDeliveryPlugin = fp<WebhookDeliveryOptions>(
  async (app, options) => {
    const deliveries = new WebhookDeliveryService(app.prisma, app.webhooks, app.log, options);
    app.decorate("webhookDeliveries", deliveries);
    const shutdown = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> | undefined;
    let wokenWhileRunning = false;
    let closed = false;

    const runUntilDrained = async () => {
      // A full batch: more may be due.
      while (!closed && (await deliveries.deliverDue(shutdown.signal)) === options.concurrency);
    };
    const schedule = (delayMs: number) => {
      clearTimeout(timer);
      if (closed) return;
      timer = setTimeout(run, delayMs);
      timer.unref();
    };
    const run = () => {
      if (running) {
        wokenWhileRunning = true;
        return;
      }
      running = runUntilDrained()
        .catch((error: unknown) => app.log.error({ err: error }, "webhook delivery run failed"))
        .finally(() => {
          running = undefined;
          schedule(wokenWhileRunning ? 0 : options.pollIntervalMs);
          wokenWhileRunning = false;
        });
    };

    const stops = [
      app.notifications.on(channels.expertJobChanged, (payload) => {
        let status: string | undefined;
        try {
          status = (JSON.parse(payload) as ExpertJobChangedPayload).status;
        } catch {
          return;
        }
        if (webhookStatusSet.has(status)) schedule(0);
      }),
      app.notifications.onCatchUp(() => schedule(0)),
    ];
    app.addHook("onReady", async () => schedule(0));
    app.addHook("preClose", async () => {
      closed = true;
      for (const stop of stops) stop();
      clearTimeout(timer);
      shutdown.abort();
      await running;
    });
  },
  { name: "webhook-delivery", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
