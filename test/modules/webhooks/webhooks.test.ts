import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Webhook } from "standardwebhooks";
import type { AppConfig } from "../../../src/app.ts";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, eventually, jobInStatus, postCheckpoint, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { metric } from "../../helpers/metrics.ts";
import { createRestartableDatabase } from "../../helpers/restartable-database.ts";
import { startWebhookReceiver, type ReceivedWebhook, type WebhookReceiver } from "../../helpers/webhook-receiver.ts";

/** Fast retries for tests: retries come 25–200 ms apart; an attempt gives up after 2 s. */
const fastWebhooks: AppConfig["webhooks"] = {
  allowPrivate: true,
  timeoutMs: 2_000,
  retryBaseMs: 50,
  retryMaxDelayMs: 200,
  pollIntervalMs: 50,
  retryWindowMs: 60_000,
};

const admin = (t: TestApp) => ({
  post: (url: string, body?: unknown) =>
    t.app.inject({
      method: "POST",
      url: `/api/admin/v1${url}`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      ...(body !== undefined && { payload: body as object }),
    }),
  get: (url: string) => t.app.inject({ method: "GET", url: `/api/admin/v1${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
  delete: (url: string) =>
    t.app.inject({ method: "DELETE", url: `/api/admin/v1${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
});

async function registerEndpoint(t: TestApp, tenant: Tenant, url: string, eventTypes?: string[]) {
  const response = await admin(t).post(`/applications/${tenant.applicationId}/webhook_endpoints`, {
    url,
    ...(eventTypes && { eventTypes }),
  });
  if (response.statusCode !== 200) throw new Error(`register failed: ${response.statusCode} ${response.body}`);
  return response.json().data.webhookEndpoint as { id: string; secret: string; url: string; eventTypes: string[] };
}

const verified = (secret: string, webhook: ReceivedWebhook) =>
  new Webhook(secret).verify(webhook.body, webhook.headers) as { type: string; timestamp: string; data: { expertJob: any } };

async function deliveries(t: TestApp, endpointId: string) {
  const response = await admin(t).get(`/webhook_endpoints/${endpointId}/deliveries?take=100`);
  expect(response.statusCode, response.body).toBe(200);
  return response.json().data.webhookDeliveries as Array<Record<string, any>>;
}

describe("webhook endpoints (admin API)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    // The default policy: no private receivers.
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("registers an endpoint with a Standard Webhooks secret shown once, lists it without, deletes it", async () => {
    const created = await admin(t).post(`/applications/${tenant.applicationId}/webhook_endpoints`, {
      url: "https://203.0.113.7/hooks",
      eventTypes: ["expert_job.completed"],
    });
    expect(created.statusCode, created.body).toBe(200);
    const endpoint = created.json().data.webhookEndpoint;
    expect(endpoint).toMatchObject({
      applicationId: tenant.applicationId,
      url: "https://203.0.113.7/hooks",
      eventTypes: ["expert_job.completed"],
    });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(endpoint.secret.slice(6), "base64")).toHaveLength(32);
    // The stored row holds no plaintext secret.
    const row = await t.app.prisma.webhookEndpoint.findUniqueOrThrow({ where: { id: endpoint.id } });
    expect(Buffer.from(row.ciphertext).toString("latin1")).not.toContain(endpoint.secret.slice(6, 20));

    const listed = await admin(t).get(`/applications/${tenant.applicationId}/webhook_endpoints`);
    expect(listed.statusCode).toBe(200);
    const { secret: _secret, ...withoutSecret } = endpoint;
    expect(listed.json().data.webhookEndpoints).toContainEqual(withoutSecret);
    expect(listed.body).not.toContain(endpoint.secret);

    expect((await admin(t).delete(`/webhook_endpoints/${endpoint.id}`)).statusCode).toBe(204);
    expect((await admin(t).delete(`/webhook_endpoints/${endpoint.id}`)).json()).toMatchObject({ code: 404, error: "Not Found" });
  });

  it("subscribes a new endpoint to every event type by default", async () => {
    const endpoint = await registerEndpoint(t, tenant, "https://203.0.113.8/all");
    expect(endpoint.eventTypes).toEqual([
      "expert_job.completed",
      "expert_job.failed",
      "expert_job.canceled",
      "expert_job.expired",
      "expert_job.requestInteractiveToolResult",
      "expert_job.exceededMaxSteps",
    ]);
  });

  const refused: Array<[string, string, RegExp]> = [
    ["ftp", "ftp://203.0.113.7/x", /http or https/],
    ["not a URL", "hooks.example.com", /not a URL/],
    ["credentials", "https://user:pass@203.0.113.7/x", /credentials/],
    ["AWS/GCP metadata", "http://169.254.169.254/latest/meta-data", /link-local, metadata/],
    ["link-local", "http://169.254.10.20/x", /link-local/],
    ["AWS IPv6 metadata", "http://[fd00:ec2::254]/x", /metadata/],
    ["IPv4-mapped metadata", "http://[::ffff:169.254.169.254]/x", /link-local/],
    ["GCP metadata name", "http://metadata.google.internal/computeMetadata/v1", /metadata service/],
    ["loopback", "http://127.0.0.1:8080/x", /WEBHOOK_ALLOW_PRIVATE/],
    ["a private range", "http://10.1.2.3/x", /private/],
    ["IPv6 loopback", "http://[::1]/x", /private/],
    ["a name resolving to loopback", "http://localhost:8080/x", /localhost resolves to 127\.0\.0\.1|localhost resolves to ::1/],
    ["a name that does not resolve", "https://no-such-host.invalid/x", /does not resolve/],
  ];
  for (const [what, url, reason] of refused) {
    it(`refuses ${what} with 422 in the envelope`, async () => {
      const response = await admin(t).post(`/applications/${tenant.applicationId}/webhook_endpoints`, { url });
      expect(response.statusCode, response.body).toBe(422);
      const body = response.json();
      expect(body).toMatchObject({ code: 422, error: "Validation Failed", reason: [{ path: "/url" }] });
      expect(body.reason[0].message).toMatch(reason);
    });
  }

  it("refuses an unknown event type (422) and an unknown application (404)", async () => {
    const bad = await admin(t).post(`/applications/${tenant.applicationId}/webhook_endpoints`, {
      url: "https://203.0.113.7/x",
      eventTypes: ["expert_job.processing"],
    });
    expect(bad.statusCode).toBe(422);
    const unknown = await admin(t).post(`/applications/${"a".repeat(24)}/webhook_endpoints`, { url: "https://203.0.113.7/x" });
    expect(unknown.json()).toEqual({ code: 404, error: "Not Found", reason: "Application not found" });
  });

  it("is documented in OpenAPI: the admin routes and their errors", () => {
    const paths = (t.app.swagger() as any).paths;
    expect(paths["/api/admin/v1/applications/{applicationId}/webhook_endpoints"].post.responses["422"]).toBeDefined();
    expect(paths["/api/admin/v1/webhook_endpoints/{webhookEndpointId}/deliveries"].get).toBeDefined();
    expect(paths["/api/admin/v1/webhook_deliveries/{webhookDeliveryId}/redeliver"].post).toBeDefined();
    expect(paths["/api/admin/v1/webhook_endpoints/{webhookEndpointId}"].delete).toBeDefined();
  });
});

describe("webhook events, signed, to a real receiver", () => {
  let t: TestApp;
  let tenant: Tenant;
  let receiver: WebhookReceiver;
  let endpoint: { id: string; secret: string };
  beforeAll(async () => {
    t = await startTestApp({ config: { webhooks: fastWebhooks } });
    tenant = await seedTenant(t.app);
    receiver = await startWebhookReceiver();
    endpoint = await registerEndpoint(t, tenant, receiver.url);
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });
  afterEach(() => {
    receiver.respond = () => 200;
  });

  /** The first `count` attempts of every event get `answer`, later ones 200. */
  const failFirst = (count: number, answer: number | "hang") => {
    const seen = new Map<string, number>();
    return (request: ReceivedWebhook) => {
      const id = request.headers["webhook-id"]!;
      seen.set(id, (seen.get(id) ?? 0) + 1);
      return seen.get(id)! <= count ? answer : 200;
    };
  };

  const webhooksFor = (expertJobId: string) =>
    receiver.received.filter(
      (webhook) => (JSON.parse(webhook.body) as { data: { expertJob: { id: string } } }).data.expertJob.id === expertJobId,
    );
  /** A job's events, once each: delivery is at least once, so a receiver de-duplicates by webhook-id. */
  const eventsFor = (expertJobId: string) => [
    ...new Map(webhooksFor(expertJobId).map((webhook) => [webhook.headers["webhook-id"], webhook])).values(),
  ];

  it("sends a completed job as GET returns it, with Standard Webhooks headers that its verifier accepts", async () => {
    const job = await startJob(t.app, tenant);
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1 });
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2, status: "completed" });
    const [webhook] = await eventually(async () => webhooksFor(job.id).length > 0 && webhooksFor(job.id));
    expect(webhook!.headers["webhook-id"]).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(Math.abs(Number(webhook!.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(300);
    expect(webhook!.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(webhook!.headers["content-type"]).toBe("application/json");
    const payload = verified(endpoint.secret, webhook!);
    const current = (await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob;
    expect(payload).toEqual({ type: "expert_job.completed", timestamp: expect.any(String), data: { expertJob: current } });
    expect(current.status).toBe("completed");
    // Another secret, or a changed body, does not verify.
    const other = await registerEndpoint(t, tenant, `${receiver.url}/other`, ["expert_job.expired"]);
    expect(() => verified(other.secret, webhook!)).toThrow();
    expect(() => verified(endpoint.secret, { ...webhook!, body: webhook!.body.replace("completed", "failed") })).toThrow();
    await admin(t).delete(`/webhook_endpoints/${other.id}`);
  });

  it("sends one event per status that has one, and none for queued, processing, canceling or requestDelegateResult", async () => {
    const statuses = [
      "requestInteractiveToolResult",
      "exceededMaxSteps",
      "failed",
      "canceled",
      "expired",
      "requestDelegateResult",
      "canceling",
    ];
    const jobs = new Map<string, string>();
    for (const status of statuses) jobs.set(status, (await jobInStatus(t.app, tenant, status)).job.id);
    const canceledFromQueued = await startJob(t.app, tenant);
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${canceledFromQueued.id}/cancel`);
    // A job that ends after a requeue by the sweeper: the lease ran out with no retries left.
    const sweptFailed = await startJob(t.app, tenant, { maxRetries: 0 });
    await postCheckpoint(t.app, tenant, sweptFailed.id, { stepNumber: 1 });
    await t.app.prisma.expertJob.update({ where: { id: sweptFailed.id }, data: { leaseExpiresAt: new Date(Date.now() - 1000) } });
    await t.app.runtime.sweep();

    const expected = [
      [jobs.get("requestInteractiveToolResult"), ["expert_job.requestInteractiveToolResult"]],
      [jobs.get("exceededMaxSteps"), ["expert_job.exceededMaxSteps"]],
      [jobs.get("failed"), ["expert_job.failed"]],
      [jobs.get("canceled"), ["expert_job.canceled"]],
      // Paused first (an event), then expired by the sweeper (another).
      [jobs.get("expired"), ["expert_job.requestInteractiveToolResult", "expert_job.expired"]],
      [canceledFromQueued.id, ["expert_job.canceled"]],
      [sweptFailed.id, ["expert_job.failed"]],
    ] as const;
    await eventually(async () => expected.every(([id, types]) => eventsFor(id!).length >= types.length), 30_000);
    for (const [id, types] of expected) {
      const payloads = eventsFor(id!).map((webhook) => verified(endpoint.secret, webhook));
      expect(payloads.map((payload) => payload.type).sort()).toEqual([...types].sort());
      for (const payload of payloads) expect(`expert_job.${payload.data.expertJob.status}`).toBe(payload.type);
    }
    // No events at all for the jobs that are still running or waiting for a delegate.
    const outbox = await t.app.prisma.webhookMessage.findMany({
      where: { expertJobId: { in: [jobs.get("requestDelegateResult")!, jobs.get("canceling")!] } },
    });
    expect(outbox).toEqual([]);
  }, 120_000);

  it("sends only the event types an endpoint subscribed to", async () => {
    const only = await startWebhookReceiver();
    try {
      const completedOnly = await registerEndpoint(t, tenant, only.url, ["expert_job.completed"]);
      const failed = await jobInStatus(t.app, tenant, "failed");
      const completed = await jobInStatus(t.app, tenant, "completed");
      const [webhook] = await only.waitFor(1);
      expect(verified(completedOnly.secret, webhook!).data.expertJob.id).toBe(completed.job.id);
      const rows = await t.app.prisma.webhookDelivery.findMany({ where: { endpointId: completedOnly.id }, include: { message: true } });
      expect(rows.map((row) => row.message.expertJobId)).toEqual([completed.job.id]);
      expect(rows.map((row) => row.message.expertJobId)).not.toContain(failed.job.id);
      await admin(t).delete(`/webhook_endpoints/${completedOnly.id}`);
    } finally {
      await only.close();
    }
  });

  it("retries after 500s with the same webhook-id and body, and logs every attempt", async () => {
    receiver.respond = failFirst(2, 500);
    const attemptsSoFar = async () =>
      Object.fromEntries(
        await Promise.all(
          ["succeeded", "retried", "failed"].map(async (outcome) => [
            outcome,
            await metric(t.app, "expert_jobs_webhook_attempts_total", { outcome }),
          ]),
        ),
      );
    const before = await attemptsSoFar();
    const job = await jobInStatus(t.app, tenant, "failed");
    await eventually(async () => webhooksFor(job.job.id).length === 3, 20_000);
    const attempts = webhooksFor(job.job.id);
    expect(new Set(attempts.map((webhook) => webhook.headers["webhook-id"])).size).toBe(1);
    expect(new Set(attempts.map((webhook) => webhook.body)).size).toBe(1);
    for (const webhook of attempts) expect(verified(endpoint.secret, webhook).type).toBe("expert_job.failed");
    const delivery = await eventually(async () => {
      const found = (await deliveries(t, endpoint.id)).find((item) => item.expertJobId === job.job.id);
      return found?.status === "succeeded" && found;
    });
    expect(delivery).toMatchObject({ webhookId: attempts[0]!.headers["webhook-id"], eventType: "expert_job.failed", attempts: 3 });
    expect(delivery.attemptLog.map((attempt: any) => [attempt.number, attempt.responseStatus])).toEqual([
      [1, 500],
      [2, 500],
      [3, 200],
    ]);
    expect(delivery.attemptLog[0].responseBody).toBe("nope");
    // The attempts' outcomes, as /metrics counts them: this test's receiver alone failed attempts; other
    // tests' deliveries may still succeed meanwhile.
    const after = await attemptsSoFar();
    expect(after.retried! - before.retried!).toBe(2);
    expect(after.succeeded! - before.succeeded!).toBeGreaterThanOrEqual(1);
    expect(after.failed).toBe(before.failed);
  });

  it("retries after a receiver that does not answer within the timeout", async () => {
    receiver.respond = failFirst(1, "hang");
    const job = await jobInStatus(t.app, tenant, "exceededMaxSteps");
    await eventually(async () => webhooksFor(job.job.id).length === 2, 20_000);
    const [hung, answered] = webhooksFor(job.job.id);
    expect(answered!.headers["webhook-id"]).toBe(hung!.headers["webhook-id"]);
    const delivery = await eventually(async () => {
      const found = (await deliveries(t, endpoint.id)).find((item) => item.expertJobId === job.job.id);
      return found?.status === "succeeded" && found;
    });
    expect(delivery.attemptLog[0]).toMatchObject({ number: 1, error: "no answer within 2000 ms" });
    expect(delivery.attemptLog[0].responseStatus).toBeUndefined();
    expect(delivery.attemptLog[1]).toMatchObject({ number: 2, responseStatus: 200 });
  });

  it("marks a delivery failed once its retry window is over, and redelivers it on request with the same id", async () => {
    const failing = await startWebhookReceiver();
    try {
      failing.respond = () => 503;
      const hook = await registerEndpoint(t, tenant, failing.url, ["expert_job.canceled"]);
      // Its retry window started long ago: it ends within the next retries.
      const job = await startJob(t.app, tenant);
      await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      await t.app.prisma.webhookDelivery.updateMany({
        where: { endpointId: hook.id },
        data: { windowStartedAt: new Date(Date.now() - 59_700) },
      });
      const failed = await eventually(async () => {
        const [found] = await deliveries(t, hook.id);
        return found?.status === "failed" && found;
      }, 20_000);
      expect(failed.attempts).toBeGreaterThanOrEqual(1);
      expect(failed.attemptLog).toHaveLength(failed.attempts);
      expect(failed.attemptLog.every((attempt: any) => attempt.responseStatus === 503)).toBe(true);
      expect(failed.nextAttemptAt).toBeUndefined();
      const sentBefore = failing.received.length;
      expect(sentBefore).toBe(failed.attempts);

      failing.respond = () => 204;
      const redelivered = await admin(t).post(`/webhook_deliveries/${failed.id}/redeliver`);
      expect(redelivered.statusCode, redelivered.body).toBe(200);
      expect(redelivered.json().data.webhookDelivery).toMatchObject({ id: failed.id, status: "pending", webhookId: failed.webhookId });
      const done = await eventually(async () => {
        const [found] = await deliveries(t, hook.id);
        return found?.status === "succeeded" && found;
      });
      expect(done.attemptLog.at(-1)).toMatchObject({ number: failed.attempts + 1, responseStatus: 204 });
      const last = failing.received.at(-1)!;
      expect(last.headers["webhook-id"]).toBe(failed.webhookId);
      expect(last.body).toBe(failing.received[0]!.body);
      expect(verified(hook.secret, last).data.expertJob.id).toBe(job.id);
      await admin(t).delete(`/webhook_endpoints/${hook.id}`);
    } finally {
      await failing.close();
    }
  });

  it("answers 404 to the delivery log of an unknown endpoint and a redeliver of an unknown delivery", async () => {
    expect((await admin(t).get(`/webhook_endpoints/${"e".repeat(24)}/deliveries`)).statusCode).toBe(404);
    expect((await admin(t).post(`/webhook_deliveries/${"d".repeat(24)}/redeliver`)).json()).toEqual({
      code: 404,
      error: "Not Found",
      reason: "Webhook delivery not found",
    });
  });
});

describe("the outbox is written in the status change's transaction", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    // No worker runs often enough to matter here: events stay in the outbox.
    t = await startTestApp({ config: { webhooks: { ...fastWebhooks, pollIntervalMs: 600_000 } } });
    tenant = await seedTenant(t.app);
    await registerEndpoint(t, tenant, "http://127.0.0.1:9/never");
  });
  afterAll(async () => t.close());

  it("stores an event with the change and none for a change that rolls back", async () => {
    const kept = await startJob(t.app, tenant);
    const rolledBack = await startJob(t.app, tenant);
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${kept.id}/cancel`);
    await expect(
      t.app.prisma.$transaction(async (tx) => {
        await tx.expertJob.update({ where: { id: rolledBack.id }, data: { status: "canceled" } });
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    const messages = await t.app.prisma.webhookMessage.findMany({ where: { expertJobId: { in: [kept.id, rolledBack.id] } } });
    expect(messages.map((message) => [message.expertJobId, message.type])).toEqual([[kept.id, "expert_job.canceled"]]);
    expect(await t.app.prisma.webhookDelivery.count({ where: { messageId: messages[0]!.id } })).toBe(1);
    // The events go with their job.
    expect((await admin(t).delete(`/expert_jobs/${kept.id}`)).statusCode).toBe(204);
    expect(await t.app.prisma.webhookMessage.count({ where: { expertJobId: kept.id } })).toBe(0);
    expect(await t.app.prisma.webhookDelivery.count({ where: { messageId: messages[0]!.id } })).toBe(0);
  });

  it("writes nothing for an application without endpoints", async () => {
    const other = await seedTenant(t.app);
    const job = await startJob(t.app, other);
    await api(t.app, other.clientKey).post(`/expert_jobs/${job.id}/cancel`);
    expect(await t.app.prisma.webhookMessage.count({ where: { applicationId: other.applicationId } })).toBe(0);
  });
});

describe("the receiver's address is checked again at delivery", () => {
  it("refuses a loopback receiver registered while private ranges were allowed, once they no longer are", async () => {
    const store = await createRestartableDatabase();
    const receiver = await startWebhookReceiver();
    try {
      const allowing = await startTestApp({ db: store.db, config: { webhooks: fastWebhooks } });
      const tenant = await seedTenant(allowing.app);
      const byAddress = await registerEndpoint(allowing, tenant, receiver.url);
      const byName = await registerEndpoint(allowing, tenant, receiver.url.replace("127.0.0.1", "localhost"));
      await allowing.close();

      const strict = await startTestApp({ db: store.reopen(), config: { webhooks: { ...fastWebhooks, allowPrivate: false } } });
      try {
        const job = await startJob(strict.app, tenant);
        await api(strict.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
        const [address, name] = await eventually(async () => {
          const found = await Promise.all([deliveries(strict, byAddress.id), deliveries(strict, byName.id)]);
          return found.every((list) => list[0]?.attemptLog.length) ? found.map((list) => list[0]!) : undefined;
        });
        expect(address!.attemptLog[0].error).toMatch(/^refused: 127\.0\.0\.1 is a loopback or private address/);
        expect(name!.attemptLog[0].error).toMatch(/localhost resolves to (127\.0\.0\.1|::1) is a loopback or private address/);
        expect(receiver.received).toEqual([]);
      } finally {
        await strict.close();
      }
    } finally {
      await receiver.close();
      await store.drop();
    }
  }, 120_000);
});
