import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { channels, type ExpertJobChangedPayload } from "../../../src/db/channels.ts";
import { reasons } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, eventually, jobInStatus, postCheckpoint, reportStatus, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { openSse } from "../../helpers/sse.ts";

const UNKNOWN_ID = "c".repeat(24);

describe("POST /expert_jobs/{id}/cancel", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const cancel = (id: string, key = tenant.clientKey) => api(t.app, key).post(`/expert_jobs/${id}/cancel`);

  const outcomes: Array<[string, string]> = [
    ["queued", "canceled"],
    ["requestInteractiveToolResult", "canceled"],
    ["exceededMaxSteps", "canceled"],
    ["processing", "canceling"],
    ["requestDelegateResult", "canceling"],
  ];
  for (const [from, to] of outcomes) {
    it(`turns a ${from} job ${to}`, async () => {
      const { job } = await jobInStatus(t.app, tenant, from);
      const response = await cancel(job.id);
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().data.expertJob).toMatchObject({ id: job.id, status: to });
      expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe(to);
    });
  }

  for (const status of ["canceling", "canceled"]) {
    it(`leaves a ${status} job unchanged with 200`, async () => {
      const { job } = await jobInStatus(t.app, tenant, status);
      const response = await cancel(job.id);
      expect(response.statusCode).toBe(200);
      expect(response.json().data.expertJob).toEqual(job);
    });
  }

  for (const status of ["completed", "failed", "expired"]) {
    it(`answers 400 \`Current status is unable to cancel\` to a ${status} job`, async () => {
      const { job } = await jobInStatus(t.app, tenant, status);
      const response = await cancel(job.id);
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: reasons.unableToCancel });
      expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe(status);
    });
  }

  it("answers 401 without a key, 422 to a malformed id, 404 to an unknown or another application's job", async () => {
    expect((await t.app.inject({ method: "POST", url: "/api/studio/v1/expert_jobs/bad/cancel" })).statusCode).toBe(401);
    const malformed = await cancel("not-a-valid-id-at-all-xx");
    expect(malformed.statusCode).toBe(422);
    expect(malformed.json().reason[0].path).toBe("/expertJobId");
    expect((await cancel(UNKNOWN_ID)).json()).toEqual({ code: 404, error: "Not Found", reason: reasons.expertJobNotFound });
    const other = await seedTenant(t.app);
    const job = await startJob(t.app, other);
    expect((await cancel(job.id)).statusCode).toBe(404);
    expect((await api(t.app, other.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("queued");
  });

  it("accepts the Perstack client's `Content-Type: application/json` with no body", async () => {
    const job = await startJob(t.app, tenant);
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: `/expert_jobs/${job.id}/cancel`,
      headers: { "content-type": "application/json" },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.status).toBe("canceled");
  });

  it("lets exactly one of two concurrent cancels change a processing job; both see canceling", async () => {
    const { job } = await jobInStatus(t.app, tenant, "processing");
    const heard: ExpertJobChangedPayload[] = [];
    const stop = t.app.notifications.on(channels.expertJobChanged, (payload) => {
      const parsed = JSON.parse(payload) as ExpertJobChangedPayload;
      if (parsed.expertJobId === job.id) heard.push(parsed);
    });
    try {
      const responses = await Promise.all([cancel(job.id), cancel(job.id)]);
      expect(responses.map((response) => response.json().data.expertJob.status)).toEqual(["canceling", "canceling"]);
      await eventually(async () => heard.some((payload) => payload.status === "canceling"));
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(heard.filter((payload) => payload.status === "canceling")).toEqual([
        { expertJobId: job.id, applicationId: tenant.applicationId, status: "canceling" },
      ]);
    } finally {
      stop();
    }
  });
});

describe("POST /expert_jobs/{id} {status} (runtime reports)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let heard: ExpertJobChangedPayload[];
  let stopListening: () => void;
  beforeAll(async () => {
    t = await startTestApp({ config: { leaseMs: 60_000 } });
    tenant = await seedTenant(t.app);
    heard = [];
    stopListening = t.app.notifications.on(channels.expertJobChanged, (payload) => heard.push(JSON.parse(payload)));
  });
  afterEach(() => {
    heard.length = 0;
  });
  afterAll(async () => {
    stopListening();
    await t.close();
  });

  const report = (id: string, status: unknown) => reportStatus(t.app, tenant, id, status as string);
  /** Notifications arrive in commit order: once the job's current status is heard, nothing from its setup is still on the way. */
  const settle = async (job: Record<string, any>) => {
    await eventually(async () => heard.some((payload) => payload.expertJobId === job.id && payload.status === job.status));
    heard.length = 0;
  };
  const row = (id: string) => t.app.prisma.expertJob.findUniqueOrThrow({ where: { id } });

  it("answers 401 without a key and 403 to a client key, before validating the body", async () => {
    const job = await startJob(t.app, tenant);
    expect((await t.app.inject({ method: "POST", url: `/api/studio/v1/expert_jobs/${job.id}`, payload: {} })).statusCode).toBe(401);
    const forbidden = await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}`, { status: "nonsense" });
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toEqual({ code: 403, error: "Forbidden", reason: reasons.runtimeScopeRequired });
  });

  it("answers 422 to a status outside the enum, a missing status and a malformed id; 404 to unknown and foreign jobs", async () => {
    const job = await startJob(t.app, tenant);
    for (const body of [{ status: "running" }, {}, { status: 3 }]) {
      const response = await api(t.app, tenant.runtimeKey).post(`/expert_jobs/${job.id}`, body);
      expect(response.statusCode, JSON.stringify(body)).toBe(422);
      expect(response.json().reason[0].path).toBe("/status");
    }
    expect((await report("NOT_AN_ID_NOT_AN_ID_1234", "processing")).statusCode).toBe(422);
    expect((await report(UNKNOWN_ID, "processing")).json()).toEqual({ code: 404, error: "Not Found", reason: reasons.expertJobNotFound });
    const other = await seedTenant(t.app);
    const theirs = await startJob(t.app, other);
    expect((await report(theirs.id, "processing")).statusCode).toBe(404);
    expect((await row(theirs.id)).status).toBe("queued");
  });

  const conflicts: Array<[string, string]> = [
    ["queued", "completed"],
    ["queued", "canceled"],
    ["processing", "queued"],
    ["processing", "canceled"],
    ["processing", "canceling"],
    ["processing", "expired"],
    ["completed", "processing"],
    ["completed", "failed"],
    ["requestInteractiveToolResult", "processing"],
    ["canceling", "completed"],
    ["canceled", "processing"],
    ["expired", "expired"],
    ["failed", "completed"],
  ];
  for (const [from, to] of conflicts) {
    it(`answers 409 to ${from} → ${to} and changes nothing`, async () => {
      const { job } = await jobInStatus(t.app, tenant, from);
      await settle(job);
      const response = await report(job.id, to);
      expect(response.statusCode).toBe(409);
      expect(response.json()).toEqual({ code: 409, error: "Conflict", reason: `Cannot change status from ${from} to ${to}` });
      expect((await row(job.id)).status).toBe(from);
      expect(heard.filter((payload) => payload.expertJobId === job.id)).toEqual([]);
    });
  }

  it("takes a queued job to processing under a fresh lease, and notifies", async () => {
    const job = await startJob(t.app, tenant);
    await settle(job);
    const before = Date.now();
    const response = await report(job.id, "processing");
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.status).toBe("processing");
    const stored = await row(job.id);
    expect(stored.leaseExpiresAt!.getTime()).toBeGreaterThanOrEqual(before + 60_000);
    await eventually(async () => heard.some((payload) => payload.expertJobId === job.id));
    expect(heard).toEqual([{ expertJobId: job.id, applicationId: tenant.applicationId, status: "processing" }]);
  });

  it("renews the lease on a processing heartbeat without notifying", async () => {
    const { job } = await jobInStatus(t.app, tenant, "processing");
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() + 1000) } });
    await settle(job);
    const response = await report(job.id, "processing");
    expect(response.statusCode).toBe(200);
    expect((await row(job.id)).leaseExpiresAt!.getTime()).toBeGreaterThan(Date.now() + 50_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(heard.filter((payload) => payload.expertJobId === job.id)).toEqual([]);
  });

  for (const to of ["completed", "failed", "requestInteractiveToolResult", "exceededMaxSteps", "requestDelegateResult"]) {
    it(`takes a processing job to ${to}, and notifies`, async () => {
      const { job } = await jobInStatus(t.app, tenant, "processing");
      await settle(job);
      const response = await report(job.id, to);
      expect(response.statusCode).toBe(200);
      expect(response.json().data.expertJob.status).toBe(to);
      const stored = await row(job.id);
      expect(stored.status).toBe(to);
      expect(stored.pausedAt !== null).toBe(to === "requestInteractiveToolResult" || to === "exceededMaxSteps");
      expect(stored.leaseExpiresAt !== null).toBe(to === "requestDelegateResult");
      await eventually(async () => heard.some((payload) => payload.expertJobId === job.id && payload.status === to));
    });
  }

  it("finishes a cancel: canceling → canceled", async () => {
    const { job } = await jobInStatus(t.app, tenant, "canceling");
    const response = await report(job.id, "canceled");
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.status).toBe("canceled");
    expect((await row(job.id)).leaseExpiresAt).toBeNull();
  });

  it("keeps a canceling job canceling on a processing heartbeat, renewing its lease", async () => {
    const { job } = await jobInStatus(t.app, tenant, "canceling");
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() + 1000) } });
    const response = await report(job.id, "processing");
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.status).toBe("canceling");
    expect((await row(job.id)).leaseExpiresAt!.getTime()).toBeGreaterThan(Date.now() + 50_000);
  });

  it("accepts a report of the status the last checkpoint already set, as a no-op", async () => {
    const { job } = await jobInStatus(t.app, tenant, "completed");
    await settle(job);
    const response = await report(job.id, "completed");
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob).toEqual(job);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(heard.filter((payload) => payload.expertJobId === job.id)).toEqual([]);
  });
});

describe("canceling a processing job with an open stream", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("sends `complete` only once the job is canceled, not at canceling", async () => {
    const { job } = await jobInStatus(t.app, tenant, "processing");
    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    try {
      expect(stream.status).toBe(200);
      await stream.waitFor(1);
      const canceling = await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      expect(canceling.json().data.expertJob.status).toBe("canceling");
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(stream.events.map((event) => event.event)).toEqual(["message"]);

      const canceled = await reportStatus(t.app, tenant, job.id, "canceled");
      expect(canceled.statusCode).toBe(200);
      const events = await stream.waitFor(2);
      expect(events[1]).toMatchObject({ event: "complete" });
      expect(JSON.parse(events[1]!.data)).toEqual({ status: "canceled", expertJobId: job.id });
      await stream.ended;
    } finally {
      stream.close();
    }
  });

  it("sends the runtime's last checkpoint, then `complete`, when that checkpoint finishes the cancel", async () => {
    const { job } = await jobInStatus(t.app, tenant, "processing");
    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    try {
      await stream.waitFor(1);
      await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2 });
      const events = await stream.waitFor(3);
      expect(events.map((event) => event.event)).toEqual(["message", "message", "complete"]);
      expect(JSON.parse(events[2]!.data)).toEqual({ status: "canceled", expertJobId: job.id });
    } finally {
      stream.close();
    }
  });
});
