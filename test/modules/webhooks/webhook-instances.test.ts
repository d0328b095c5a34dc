import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import type { AppConfig } from "../../../src/app.ts";
import { WebhookDeliveryService, webhookDeliveryDefaults } from "../../../src/modules/webhooks/webhook-delivery.service.ts";
import { ADMIN_TOKEN, startTestApp, usingPostgres, type TestApp } from "../../helpers/app.ts";
import { api, eventually, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { startWebhookReceiver, type WebhookReceiver } from "../../helpers/webhook-receiver.ts";

const EVENTS = 40;

// A long timeout: a busy machine (PGlite runs in this process, as does the receiver) must not turn a slow answer into a retry.
const webhooks: AppConfig["webhooks"] = {
  allowPrivate: true,
  timeoutMs: 30_000,
  retryBaseMs: 50,
  retryMaxDelayMs: 200,
  pollIntervalMs: 20,
  concurrency: 4,
};

async function register(t: TestApp, tenant: Tenant, url: string) {
  const response = await t.app.inject({
    method: "POST",
    url: `/api/admin/v1/applications/${tenant.applicationId}/webhook_endpoints`,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    payload: { url },
  });
  expect(response.statusCode, response.body).toBe(200);
  return response.json().data.webhookEndpoint as { id: string; secret: string };
}

/** `count` canceled jobs: one event each. */
async function cancelJobs(t: TestApp, tenant: Tenant, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let index = 0; index < count; index++) {
    const job = await startJob(t.app, tenant);
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
    ids.push(job.id);
  }
  return ids;
}

const succeeded = async (t: TestApp, endpointId: string) =>
  (await t.app.prisma.webhookDelivery.count({ where: { endpointId, status: "succeeded" } })) === EVENTS;

/** Every event reached the receiver once: one claim, one attempt, one request per webhook-id. */
async function expectEachOnce(t: TestApp, receiver: WebhookReceiver, endpoint: { id: string; secret: string }, jobIds: string[]) {
  const ids = receiver.received.map((webhook) => webhook.headers["webhook-id"]);
  expect(new Set(ids).size).toBe(ids.length);
  const jobs = receiver.received.map(
    (webhook) => (new Webhook(endpoint.secret).verify(webhook.body, webhook.headers) as any).data.expertJob.id,
  );
  expect(jobs.sort()).toEqual([...jobIds].sort());
  const rows = await t.app.prisma.webhookDelivery.findMany({ where: { endpointId: endpoint.id }, select: { attempts: true } });
  expect(rows.map((row) => row.attempts)).toEqual(Array(EVENTS).fill(1));
}

describe.skipIf(!usingPostgres())("two app instances on one database (Postgres only: PGlite is one process)", () => {
  let a: TestApp;
  let b: TestApp;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    a = await startTestApp({ config: { webhooks } });
    b = await startTestApp({ db: a.db, config: { webhooks } });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await receiver?.close();
  });

  it(`deliver each of ${EVENTS} events exactly once between them (FOR UPDATE SKIP LOCKED)`, async () => {
    const tenant = await seedTenant(a.app);
    const endpoint = await register(a, tenant, receiver.url);
    // A slow receiver keeps claims of both instances in flight at once.
    receiver.respond = async () => {
      await new Promise((resolve) => setTimeout(resolve, 30));
      return 200;
    };
    const half = EVENTS / 2;
    const jobIds = [...(await cancelJobs(a, tenant, half)), ...(await cancelJobs(b, tenant, half))];
    await eventually(() => succeeded(a, endpoint.id), 90_000);
    // Nothing more arrives after every delivery is marked.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expectEachOnce(a, receiver, endpoint, jobIds);
    const sentBy = [a, b].map((t) => t.app.webhookDeliveries.totals.succeeded);
    expect(sentBy[0]! + sentBy[1]!).toBe(EVENTS);
    const attempts = await a.app.prisma.webhookAttempt.count({ where: { delivery: { endpointId: endpoint.id } } });
    expect(attempts).toBe(EVENTS);
  }, 120_000);
});

describe("concurrent claims on one database", () => {
  let t: TestApp;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    // The app's own worker polls rarely (each cancel still wakes it); the test's workers claim beside it.
    t = await startTestApp({ config: { webhooks: { ...webhooks, pollIntervalMs: 600_000 } } });
    receiver = await startWebhookReceiver();
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it(`four workers claiming at once deliver each of ${EVENTS} events exactly once`, async () => {
    const tenant = await seedTenant(t.app);
    const endpoint = await register(t, tenant, receiver.url);
    const jobIds = await cancelJobs(t, tenant, EVENTS);
    // The app's own worker takes part too (each cancel wakes it); four more claim at the same time.
    const workers = Array.from(
      { length: 4 },
      () =>
        new WebhookDeliveryService(t.app.prisma, t.app.webhooks, t.app.log, { ...webhookDeliveryDefaults, ...webhooks, concurrency: 3 }),
    );
    await eventually(async () => {
      await Promise.all(workers.map((worker) => worker.deliverDue()));
      return succeeded(t, endpoint.id);
    }, 90_000);
    await expectEachOnce(t, receiver, endpoint, jobIds);
  }, 120_000);
});
