import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasons } from "../../../src/errors.ts";
import { createTestDatabase, startTestApp, usingPostgres, type TestApp } from "../../helpers/app.ts";
import { metric } from "../../helpers/metrics.ts";
import { api, claimJob, eventually, postCheckpoint, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";

type Json = Record<string, any>;

const WAIT_MS = 30_000;

/** A runtime's status watch over real HTTP; `answeredWithinWait` tells a wake-up from the wait running out. */
async function watch(base: string, key: string, expertJobId: string, query: string, leaseToken?: string) {
  const started = Date.now();
  const response = await fetch(`${base}/api/studio/v1/expert_jobs/${expertJobId}/status${query}`, {
    headers: { authorization: `Bearer ${key}`, ...(leaseToken && { "perstack-lease-token": leaseToken }) },
  });
  const json = (await response.json()) as Json;
  return { status: response.status, json, answeredWithinWait: Date.now() - started < WAIT_MS };
}

describe("GET /expert_jobs/{expertJobId}/status (the runtime's status watch)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp({ config: { leaseMs: 120_000 }, sweepIntervalMs: 50 });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  async function claimed(owner: Tenant = tenant): Promise<{ id: string; leaseToken: string }> {
    const job = await startJob(t.app, owner);
    const claim = (await claimJob(t.app, owner)).json().data.claim;
    expect(claim.expertJob.id).toBe(job.id);
    return { id: job.id, leaseToken: claim.leaseToken };
  }
  const cancel = (id: string, owner: Tenant = tenant) => api(t.app, owner.clientKey).post(`/expert_jobs/${id}/cancel`);

  it("answers at once without `while`, and at once when the status already differs from it", async () => {
    const job = await claimed();
    const now = await watch(base, tenant.runtimeKey, job.id, `?waitMs=${WAIT_MS}`);
    expect(now.json).toEqual({ data: { jobStatus: { expertJobId: job.id, status: "processing" } } });
    await cancel(job.id);
    const differs = await watch(base, tenant.runtimeKey, job.id, `?while=processing&waitMs=${WAIT_MS}`);
    expect(differs.json.data.jobStatus.status).toBe("canceling");
    expect(differs.answeredWithinWait).toBe(true);
  });

  it("a waiting watch answers `canceling` when a client cancels, woken by the change, not by its wait running out", async () => {
    const job = await claimed();
    const watching = watch(base, tenant.runtimeKey, job.id, `?while=processing&waitMs=${WAIT_MS}`, job.leaseToken);
    await eventually(async () => t.app.runtime.watchingStatuses > 0);
    expect(await metric(t.app, "expert_jobs_status_watches_waiting")).toBe(1);
    // A checkpoint post does not change the status: the watch keeps waiting.
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1 });
    expect(t.app.runtime.watchingStatuses).toBe(1);
    const canceled = await cancel(job.id);
    expect(canceled.json().data.expertJob.status).toBe("canceling");
    const answer = await watching;
    expect(answer.status).toBe(200);
    expect(answer.json.data.jobStatus).toEqual({ expertJobId: job.id, status: "canceling" });
    expect(answer.answeredWithinWait).toBe(true);
    expect(await metric(t.app, "expert_jobs_status_watches_waiting")).toBe(0);
  });

  it("answers the unchanged status when waitMs runs out", async () => {
    const job = await claimed();
    const answer = await watch(base, tenant.runtimeKey, job.id, "?while=processing&waitMs=200", job.leaseToken);
    expect(answer.json.data.jobStatus.status).toBe("processing");
  });

  it("the heartbeat's answer carries `canceling` too (and the job stays canceling)", async () => {
    const job = await claimed();
    await cancel(job.id);
    const beat = await api(t.app, tenant.runtimeKey).request({
      method: "POST",
      url: `/expert_jobs/${job.id}`,
      headers: { "perstack-lease-token": job.leaseToken },
      payload: { status: "processing" },
    });
    expect(beat.statusCode).toBe(200);
    expect(beat.json().data.expertJob.status).toBe("canceling");
    const done = await api(t.app, tenant.runtimeKey).request({
      method: "POST",
      url: `/expert_jobs/${job.id}`,
      headers: { "perstack-lease-token": job.leaseToken },
      payload: { status: "canceled" },
    });
    expect(done.json().data.expertJob.status).toBe("canceled");
  });

  it("with a lease token, a waiting watch is a 409 once the lease is lost (the sweeper requeued the job)", async () => {
    // Its own tenant: the requeued job would be the next claim of the shared one.
    const owner = await seedTenant(t.app);
    const job = await claimed(owner);
    const watching = watch(base, owner.runtimeKey, job.id, `?while=processing&waitMs=${WAIT_MS}`, job.leaseToken);
    await eventually(async () => t.app.runtime.watchingStatuses > 0);
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
    const answer = await watching;
    expect(answer).toMatchObject({ status: 409, json: { code: 409, error: "Conflict", reason: reasons.leaseNotCurrent } });
    expect(answer.answeredWithinWait).toBe(true);
    // Without the token the same watch reports the requeue.
    expect((await watch(base, owner.runtimeKey, job.id, "?while=processing")).json.data.jobStatus.status).toBe("queued");
  });

  it("refuses client keys (403), other applications' jobs (404) and bad queries (422), in the envelope", async () => {
    const job = await claimed();
    const stranger = await seedTenant(t.app);
    expect(await watch(base, tenant.clientKey, job.id, "")).toMatchObject({
      status: 403,
      json: { code: 403, error: "Forbidden", reason: reasons.runtimeScopeRequired },
    });
    expect(await watch(base, stranger.runtimeKey, job.id, "")).toMatchObject({
      status: 404,
      json: { code: 404, error: "Not Found", reason: reasons.expertJobNotFound },
    });
    for (const query of ["?waitMs=30001", "?waitMs=-1", "?waitMs=soon", "?while=running"]) {
      const answer = await watch(base, tenant.runtimeKey, job.id, query);
      expect(answer.status, query).toBe(422);
      expect(answer.json).toMatchObject({ code: 422, error: "Validation Failed" });
    }
  });

  it("closing the server answers waiting watches instead of holding the shutdown", async () => {
    const own = await startTestApp({ config: { leaseMs: 120_000 } });
    try {
      const owner = await seedTenant(own.app);
      const job = await startJob(own.app, owner);
      const claim = (await claimJob(own.app, owner)).json().data.claim;
      const waiting = own.app.inject({
        method: "GET",
        url: `/api/studio/v1/expert_jobs/${job.id}/status?while=processing&waitMs=${WAIT_MS}`,
        headers: { authorization: `Bearer ${owner.runtimeKey}`, "perstack-lease-token": claim.leaseToken },
      });
      await eventually(async () => own.app.runtime.watchingStatuses > 0);
      await own.close();
      const answer = await waiting;
      expect(answer.statusCode).toBe(200);
      expect(answer.json().data.jobStatus.status).toBe("processing");
    } finally {
      await own.close().catch(() => {});
    }
  });

  it.runIf(usingPostgres())("a cancel taken by another instance wakes the watch (LISTEN/NOTIFY between instances)", async () => {
    const db = await createTestDatabase();
    const a = await startTestApp({ db, config: { leaseMs: 120_000 } });
    const b = await startTestApp({ db, config: { leaseMs: 120_000 } });
    try {
      const baseA = await a.app.listen({ port: 0, host: "127.0.0.1" });
      const owner = await seedTenant(a.app);
      const job = await startJob(a.app, owner);
      const claim = (await claimJob(a.app, owner)).json().data.claim;
      const watching = watch(baseA, owner.runtimeKey, job.id, `?while=processing&waitMs=${WAIT_MS}`, claim.leaseToken);
      await eventually(async () => a.app.runtime.watchingStatuses > 0);
      expect((await api(b.app, owner.clientKey).post(`/expert_jobs/${job.id}/cancel`)).json().data.expertJob.status).toBe("canceling");
      const answer = await watching;
      expect(answer.json.data.jobStatus.status).toBe("canceling");
      expect(answer.answeredWithinWait).toBe(true);
    } finally {
      await a.close();
      await b.close();
      await db.drop();
    }
  });
});
