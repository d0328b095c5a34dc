import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channels, type ExpertJobChangedPayload } from "../../src/db/channels.ts";
import { newId } from "../../src/lib/ids.ts";
import { createTestDatabase, startTestApp, usingPostgres, type TestApp } from "../helpers/app.ts";
import { api, claimJob, eventually, jobInStatus, postCheckpoint, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function listen(t: TestApp): { heard: ExpertJobChangedPayload[]; stop: () => void } {
  const heard: ExpertJobChangedPayload[] = [];
  const stop = t.app.notifications.on(channels.expertJobChanged, (payload) => heard.push(JSON.parse(payload)));
  return { heard, stop };
}

describe("job sweeper: leases", () => {
  const LEASE_MS = 400;
  let t: TestApp;
  let bus: ReturnType<typeof listen>;
  beforeAll(async () => {
    t = await startTestApp({ config: { leaseMs: LEASE_MS }, sweepIntervalMs: 50 });
    bus = listen(t);
  });
  afterAll(async () => {
    bus.stop();
    await t.close();
  });

  const row = (id: string) => t.app.prisma.expertJob.findUniqueOrThrow({ where: { id } });

  it("requeues a job whose lease ran out, counting retries, then fails it past maxRetries", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner, { maxRetries: 1 });
    expect((await claimJob(t.app, owner)).json().data.claim.expertJob.id).toBe(job.id);
    await eventually(async () => (await row(job.id)).status === "queued", 5_000);
    expect((await row(job.id)).retryCount).toBe(1);
    expect(bus.heard).toContainEqual({ expertJobId: job.id, applicationId: owner.applicationId, status: "queued" });

    expect((await claimJob(t.app, owner)).json().data.claim.expertJob.id).toBe(job.id);
    await eventually(async () => (await row(job.id)).status !== "processing", 5_000);
    const failed = await row(job.id);
    expect(failed.status).toBe("failed");
    expect(failed.retryCount).toBe(2);
    expect(failed.leaseExpiresAt).toBeNull();
    await eventually(async () => bus.heard.some((payload) => payload.expertJobId === job.id && payload.status === "failed"));
  });

  it("fails a job with maxRetries 0 at its first expired lease", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner, { maxRetries: 0 });
    await claimJob(t.app, owner);
    await eventually(async () => (await row(job.id)).status === "failed", 5_000);
  });

  it("keeps a job whose runtime sends `processing` heartbeats, and takes it back once they stop", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner);
    const leaseToken = (await claimJob(t.app, owner)).json().data.claim.leaseToken as string;
    // Asserted on the lease each heartbeat sets, not on surviving sweeps: a heartbeat that a busy machine
    // delays past the lease would rightly lose the job. With the claim's lease token, such a late heartbeat
    // gets 409 instead of taking the requeued job back (which a runtime without a token would do).
    let previous = (await row(job.id)).leaseExpiresAt!.getTime();
    for (let beat = 0; beat < 8; beat++) {
      await sleep(LEASE_MS / 4);
      const before = Date.now();
      const answer = await api(t.app, owner.runtimeKey).post(
        `/expert_jobs/${job.id}`,
        { status: "processing" },
        { "perstack-lease-token": leaseToken },
      );
      if (answer.statusCode === 409) break;
      expect(answer.statusCode, `beat ${beat}`).toBe(200);
      const lease = (await row(job.id)).leaseExpiresAt!.getTime();
      expect(lease).toBeGreaterThanOrEqual(Math.max(previous, before + LEASE_MS - 5));
      previous = lease;
    }
    await eventually(async () => (await row(job.id)).status === "queued", 5_000);
    expect((await row(job.id)).retryCount).toBe(1);
  });

  it("keeps a job whose runtime posts checkpoints: every post renews the lease", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner);
    await claimJob(t.app, owner);
    // Asserted on the lease itself, not on surviving a sweep: a post slowed by a busy machine must not fail it.
    let previous = (await row(job.id)).leaseExpiresAt!.getTime();
    for (let step = 1; step <= 3; step++) {
      await sleep(LEASE_MS / 4);
      const before = Date.now();
      await postCheckpoint(t.app, owner, job.id, { stepNumber: step });
      const lease = (await row(job.id)).leaseExpiresAt!.getTime();
      expect(lease).toBeGreaterThanOrEqual(Math.max(previous, before + LEASE_MS - 5));
      previous = lease;
    }
    expect((await row(job.id)).status).toBe("processing");
  });

  it("finishes the cancel of a job whose runtime went silent: canceling → canceled, no retry counted", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner);
    await claimJob(t.app, owner);
    expect((await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/cancel`)).json().data.expertJob.status).toBe("canceling");
    await eventually(async () => (await row(job.id)).status === "canceled", 5_000);
    expect((await row(job.id)).retryCount).toBe(0);
  });

  it("requeues a job left in requestDelegateResult by a runtime that went silent", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner);
    await postCheckpoint(t.app, owner, job.id, {
      stepNumber: 1,
      status: "stoppedByDelegate",
      delegateTo: {
        expert: { key: owner.expert.key, name: owner.expert.name, version: "1.0.0" },
        toolCallId: "call_d",
        toolName: "helper",
        query: "Sub task",
      },
    });
    expect((await row(job.id)).status).toBe("requestDelegateResult");
    await eventually(async () => (await row(job.id)).status === "queued", 5_000);
  });

  it("hands a requeued job to a claim that is waiting for work", async () => {
    const owner = await seedTenant(t.app);
    const job = await startJob(t.app, owner);
    await claimJob(t.app, owner);
    const waiting = await claimJob(t.app, owner, 10_000);
    expect(waiting.statusCode).toBe(200);
    expect(waiting.json().data.claim.expertJob.id).toBe(job.id);
    expect((await row(job.id)).retryCount).toBe(1);
  });

  it("leaves stopped jobs and queued jobs alone", async () => {
    const owner = await seedTenant(t.app);
    const queued = await startJob(t.app, owner);
    const completed = await startJob(t.app, owner);
    await postCheckpoint(t.app, owner, completed.id, { stepNumber: 1, status: "completed" });
    await sleep(LEASE_MS * 2);
    expect((await row(queued.id)).status).toBe("queued");
    expect((await row(completed.id)).status).toBe("completed");
  });
});

describe("job sweeper: paused jobs", () => {
  // Long enough for a test to continue a job it just paused, short enough to watch one expire.
  const TTL_MS = 1_500;
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ config: { pausedJobTtlMs: TTL_MS }, sweepIntervalMs: 50 });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const status = async (id: string) => (await api(t.app, tenant.clientKey).get(`/expert_jobs/${id}`)).json().data.expertJob.status;

  for (const paused of ["requestInteractiveToolResult", "exceededMaxSteps"]) {
    it(`expires a ${paused} job nobody continued within PAUSED_JOB_TTL_MS, and notifies`, async () => {
      const bus = listen(t);
      try {
        const { job } = await jobInStatus(t.app, tenant, paused);
        const { pausedAt } = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
        await eventually(async () => (await status(job.id)) === "expired", 5_000);
        // Expired by the sweeper no sooner than the TTL after the pause (the rows' own times, not this test's pace).
        const expired = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
        expect(expired.updatedAt.getTime() - pausedAt!.getTime()).toBeGreaterThanOrEqual(TTL_MS);
        await eventually(async () => bus.heard.some((payload) => payload.expertJobId === job.id && payload.status === "expired"));
        const continued = await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "too late" });
        expect(continued.json().reason).toBe("Current status is unable to continue");
      } finally {
        bus.stop();
      }
    });
  }

  it("does not expire a paused job that was continued in time, nor completed or failed jobs", async () => {
    const { job: continued } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
    const { job: completed } = await jobInStatus(t.app, tenant, "completed");
    const { job: failed } = await jobInStatus(t.app, tenant, "failed");
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${continued.id}/continue`, { query: "Yes", interactiveToolCallResult: true });
    await sleep(TTL_MS + 500);
    expect(await status(continued.id)).toBe("queued");
    expect(await status(completed.id)).toBe("completed");
    expect(await status(failed.id)).toBe("failed");
  });
});

describe("RuntimeService.sweep", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ sweepIntervalMs: 60_000 });
  });
  afterAll(async () => t.close());

  it("works through more stale jobs than one batch holds", async () => {
    const tenant = await seedTenant(t.app);
    const template = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: (await startJob(t.app, tenant)).id } });
    const { id: _id, usage, ...fields } = template;
    await t.app.prisma.expertJob.createMany({
      data: Array.from({ length: 230 }, (_, i) => ({
        ...fields,
        id: newId(),
        usage: usage as object,
        ...(i % 2 === 0
          ? { status: "exceededMaxSteps" as const, pausedAt: new Date(0) }
          : { status: "processing" as const, leaseExpiresAt: new Date(Date.now() - 1000), maxRetries: i % 3 === 0 ? 0 : 5 }),
      })),
    });
    const result = await t.app.runtime.sweep();
    expect(result.expired).toBe(115);
    expect(result.requeued + result.failed).toBe(115);
    expect(result.failed).toBe(Array.from({ length: 230 }, (_, i) => i).filter((i) => i % 2 === 1 && i % 3 === 0).length);
    const left = await t.app.prisma.expertJob.count({
      where: { applicationId: tenant.applicationId, status: { in: ["processing", "exceededMaxSteps"] } },
    });
    expect(left).toBe(0);
    expect(await t.app.runtime.sweep()).toEqual({ requeued: 0, failed: 0, canceled: 0, expired: 0 });
  });
});

describe("job sweeper on two instances", () => {
  it.skipIf(!usingPostgres())(
    "takes back each expired lease exactly once when both instances sweep (Postgres only: PGlite is single-process)",
    async () => {
      const db = await createTestDatabase();
      // A long lease, expired by hand once every job is claimed: on a busy machine 20 claims can outlast a short one.
      const config = { leaseMs: 600_000, secretsKey: randomBytes(32) };
      const a = await startTestApp({ db, config, sweepIntervalMs: 10 });
      const b = await startTestApp({ db, config, sweepIntervalMs: 10 });
      const bus = listen(a);
      try {
        const tenant = await seedTenant(a.app);
        const jobs = [];
        for (let i = 0; i < 20; i++) jobs.push(await startJob(a.app, tenant));
        for (let i = 0; i < 20; i++) expect((await claimJob(i % 2 ? a.app : b.app, tenant)).statusCode).toBe(200);
        await a.app.prisma.expertJob.updateMany({
          where: { applicationId: tenant.applicationId },
          data: { leaseExpiresAt: new Date(Date.now() - 1000) },
        });
        await eventually(
          async () => (await a.app.prisma.expertJob.count({ where: { applicationId: tenant.applicationId, status: "queued" } })) === 20,
          10_000,
        );
        await sleep(300);
        const rows = await a.app.prisma.expertJob.findMany({ where: { applicationId: tenant.applicationId } });
        expect(rows.map((row) => row.retryCount)).toEqual(Array(20).fill(1));
        for (const job of jobs) {
          expect(
            bus.heard.filter((payload) => payload.expertJobId === job.id && payload.status === "queued"),
            job.id,
          ).toHaveLength(2);
        }
      } finally {
        bus.stop();
        await a.close();
        await b.close();
        await db.drop();
      }
    },
  );
});
