import { afterAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import { ADMIN_TOKEN } from "../helpers/app.ts";
import { checkpointBody, eventually } from "../helpers/fixtures.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.ts";
import { createServerStore, seedThroughAdmin, startServerProcess, type ServerProcess, type ServerStore } from "./helpers/server-process.ts";

const webhookEnv = {
  WEBHOOK_ALLOW_PRIVATE: "true",
  WEBHOOK_TIMEOUT_MS: "1000",
  WEBHOOK_RETRY_BASE_MS: "100",
  WEBHOOK_POLL_INTERVAL_MS: "100",
};

/**
 * The server is killed (SIGKILL) after the receiver got a webhook and before the server could record
 * the answer. Delivery is at least once: the next server sends it again once the claim's lease (the
 * attempt's timeout plus 5 s) is over, with the same `webhook-id` and body, which the receiver uses to
 * de-duplicate; no second id is ever made for the event.
 */
describe("SIGKILL between sending a webhook and recording it", () => {
  let store: ServerStore | undefined;
  let server: ServerProcess | undefined;
  let receiver: WebhookReceiver | undefined;
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await server?.exited;
    await receiver?.close();
    await store?.drop();
  });

  it("redelivers the event with the same webhook-id and body after a restart", async () => {
    store = await createServerStore();
    server = await startServerProcess(store, webhookEnv);
    const tenant = await seedThroughAdmin(server);
    receiver = await startWebhookReceiver();
    const killed = server;
    receiver.respond = async (_request, index) => {
      if (index > 0) return 200;
      // The receiver has the event; the server dies before it hears back.
      killed.child.kill("SIGKILL");
      await killed.exited;
      return 200;
    };
    const registered = await fetch(`${server.url}/api/admin/v1/applications/${tenant.applicationId}/webhook_endpoints`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ url: receiver.url, eventTypes: ["expert_job.completed"] }),
    });
    expect(registered.status).toBe(200);
    const { secret } = (await registered.json()).data.webhookEndpoint;

    const studio = `${server.url}/api/studio/v1/expert_jobs`;
    const json = (key: string) => ({ authorization: `Bearer ${key}`, "content-type": "application/json" });
    const started = await fetch(studio, {
      method: "POST",
      headers: json(tenant.clientKey),
      body: JSON.stringify({ expertKey: tenant.expert.key, query: "Go" }),
    });
    const job = (await started.json()).data.expertJob;
    const posted = await fetch(`${studio}/${job.id}/checkpoints/`, {
      method: "POST",
      headers: json(tenant.runtimeKey),
      body: JSON.stringify(checkpointBody(tenant, { stepNumber: 1, status: "completed" })),
    });
    expect(posted.status).toBe(200);

    const [first] = await receiver.waitFor(1);
    expect((await killed.exited).signal).toBe("SIGKILL");
    server = await startServerProcess(store, webhookEnv);
    const [, second] = await receiver.waitFor(2, 60_000);

    expect(second!.headers["webhook-id"]).toBe(first!.headers["webhook-id"]);
    expect(second!.body).toBe(first!.body);
    for (const webhook of [first!, second!]) {
      expect((new Webhook(secret).verify(webhook.body, webhook.headers) as any).data.expertJob).toMatchObject({
        id: job.id,
        status: "completed",
      });
    }
    const logged = await eventually(async () => {
      const response = await fetch(`${server!.url}/api/admin/v1/applications/${tenant.applicationId}/webhook_endpoints`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const [endpoint] = (await response.json()).data.webhookEndpoints;
      const log = await fetch(`${server!.url}/api/admin/v1/webhook_endpoints/${endpoint.id}/deliveries`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      const [delivery] = (await log.json()).data.webhookDeliveries;
      return delivery?.status === "succeeded" && delivery;
    }, 10_000);
    // The killed attempt left no record; the one after the restart is the second.
    expect(logged).toMatchObject({ webhookId: first!.headers["webhook-id"], attempts: 2 });
    expect(logged.attemptLog.map((attempt: any) => [attempt.number, attempt.responseStatus])).toEqual([[2, 200]]);
    // Nothing further arrives: the recorded success ends it.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.received).toHaveLength(2);
  }, 180_000);
});
