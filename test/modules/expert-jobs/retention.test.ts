import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { ADMIN_TOKEN, createTestDatabase, startTestApp, usingPostgres, type TestApp } from "../../helpers/app.ts";
import { postGrownJob } from "../../helpers/corpus.ts";
import { api, eventually, jobInStatus, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";

const DAY_MS = 24 * 60 * 60 * 1000;

/** Moves a job's last change `days` into the past (retention counts from `updated_at`). */
const age = (app: FastifyInstance, expertJobId: string, days: number) =>
  app.prisma.$executeRaw`UPDATE expert_job SET updated_at = now() - make_interval(days => ${days}) WHERE id = ${expertJobId}`;

/** What is stored for a job: its row, its checkpoints, its messages. */
async function stored(app: FastifyInstance, expertJobId: string) {
  const where = { expertJobId };
  return {
    job: await app.prisma.expertJob.count({ where: { id: expertJobId } }),
    checkpoints: await app.prisma.checkpoint.count({ where }),
    messages: await app.prisma.jobMessage.count({ where }),
  };
}

const deletedMetric = async (app: FastifyInstance, reason: string) => {
  const text = (await app.inject({ method: "GET", url: "/metrics" })).body;
  return Number(new RegExp(`^expert_jobs_jobs_deleted_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(text)?.[1]);
};

describe("retention (JOB_RETENTION_DAYS)", () => {
  it("is off by default: the sweeper deletes nothing, however old", async () => {
    const t = await startTestApp({ sweepIntervalMs: 20 });
    try {
      const tenant = await seedTenant(t.app);
      const { job } = await jobInStatus(t.app, tenant, "completed");
      await age(t.app, job.id, 10_000);
      // Many sweeps later: still there.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect((await stored(t.app, job.id)).job).toBe(1);
      expect(await deletedMetric(t.app, "retention")).toBe(0);
    } finally {
      await t.close();
    }
  });

  describe("with a period of 30 days", () => {
    let t: TestApp;
    let tenant: Tenant;
    beforeAll(async () => {
      t = await startTestApp({ config: { jobRetentionMs: 30 * DAY_MS }, sweepIntervalMs: 50 });
      tenant = await seedTenant(t.app);
    });
    afterAll(async () => t.close());

    it("deletes finished jobs older than that with their checkpoints and messages, at real sizes, and keeps every other job", async () => {
      const grown = await postGrownJob(t.app, tenant, { steps: 12, bytesPerStep: 40_000, largeRead: { step: 6, bytes: 2_000_000 } });
      const before = await stored(t.app, grown.expertJobId);
      expect(before).toMatchObject({ job: 1, checkpoints: 12 });
      expect(before.messages).toBeGreaterThan(12);
      const old = { grown: grown.expertJobId } as Record<string, string>;
      for (const status of ["failed", "canceled", "expired"]) old[status] = (await jobInStatus(t.app, tenant, status)).job.id;
      const kept: Record<string, string> = {
        "recent completed": (await jobInStatus(t.app, tenant, "completed")).job.id,
        "old processing": (await jobInStatus(t.app, tenant, "processing")).job.id,
        "old queued": (await startJob(t.app, tenant)).id,
        "old paused": (await jobInStatus(t.app, tenant, "requestInteractiveToolResult")).job.id,
      };
      for (const id of [...Object.values(old), kept["old processing"]!, kept["old queued"]!, kept["old paused"]!]) await age(t.app, id, 31);
      await age(t.app, kept["recent completed"]!, 29);

      // The sweeper may run between two of the updates above: the old jobs can go in more than one sweep.
      await eventually(async () => {
        for (const id of Object.values(old)) if ((await stored(t.app, id)).job !== 0) return false;
        return true;
      }, 10_000);
      for (const [label, id] of Object.entries(old))
        expect(await stored(t.app, id), label).toEqual({ job: 0, checkpoints: 0, messages: 0 });
      for (const [label, id] of Object.entries(kept)) expect((await stored(t.app, id)).job, label).toBe(1);
      const gone = await api(t.app, tenant.clientKey).get(`/expert_jobs/${grown.expertJobId}`);
      expect(gone.statusCode).toBe(404);
      expect(await deletedMetric(t.app, "retention")).toBe(4);
    });
  });

  it("deletes in bounded batches: at most batchSize × maxBatches jobs per sweep, the rest in later sweeps", async () => {
    const t = await startTestApp({ retentionBatches: { batchSize: 4, maxBatches: 2 } });
    try {
      const tenant = await seedTenant(t.app);
      const ids: string[] = [];
      for (let index = 0; index < 11; index++) ids.push((await jobInStatus(t.app, tenant, "completed")).job.id);
      for (const id of ids) await age(t.app, id, 2);
      const cutoff = new Date(Date.now() - DAY_MS);
      expect(await t.app.jobRetention.deleteFinishedBefore(cutoff)).toBe(8);
      expect(await t.app.jobRetention.deleteFinishedBefore(cutoff)).toBe(3);
      expect(await t.app.jobRetention.deleteFinishedBefore(cutoff)).toBe(0);
      expect(await t.app.prisma.expertJob.count({ where: { id: { in: ids } } })).toBe(0);
    } finally {
      await t.close();
    }
  });

  it.skipIf(!usingPostgres())(
    `deletes each job once when two instances sweep at the same time${usingPostgres() ? "" : " (skipped: Postgres only, PGlite is single-process)"}`,
    async () => {
      const db = await createTestDatabase();
      const options = { db, retentionBatches: { batchSize: 5, maxBatches: 1000 } };
      const [a, b] = [await startTestApp(options), await startTestApp(options)];
      try {
        const tenant = await seedTenant(a.app);
        const ids: string[] = [];
        for (let index = 0; index < 60; index++) ids.push((await jobInStatus(a.app, tenant, "completed")).job.id);
        for (const id of ids) await age(a.app, id, 2);
        const cutoff = new Date(Date.now() - DAY_MS);
        const counts = await Promise.all([a, b, a, b].map((t) => t.app.jobRetention.deleteFinishedBefore(cutoff)));
        expect(counts.reduce((sum, count) => sum + count, 0)).toBe(60);
        expect((await deletedMetric(a.app, "retention")) + (await deletedMetric(b.app, "retention"))).toBe(60);
        expect(await a.app.prisma.expertJob.count({ where: { id: { in: ids } } })).toBe(0);
      } finally {
        await a.close();
        await b.close();
        await db.drop();
      }
    },
  );
});

describe("DELETE /api/admin/v1/expert_jobs/{id}", () => {
  let t: TestApp;
  let tenant: Tenant;
  const remove = (id: string) =>
    t.app.inject({ method: "DELETE", url: `/api/admin/v1/expert_jobs/${id}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("deletes a stopped job with its checkpoints and messages (204), counted in the metric", async () => {
    const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
    expect((await stored(t.app, job.id)).checkpoints).toBe(2);
    const response = await remove(job.id);
    expect(response.statusCode).toBe(204);
    expect(response.body).toBe("");
    expect(await stored(t.app, job.id)).toEqual({ job: 0, checkpoints: 0, messages: 0 });
    expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}/checkpoints/`)).statusCode).toBe(404);
    expect(await deletedMetric(t.app, "admin")).toBe(1);
  });

  it("refuses a running job (409) and an unknown one (404), changing nothing", async () => {
    const { job } = await jobInStatus(t.app, tenant, "processing");
    expect((await remove(job.id)).json()).toEqual({
      code: 409,
      error: "Conflict",
      reason: "Cannot delete a running job (status processing); cancel it first",
    });
    expect((await stored(t.app, job.id)).job).toBe(1);
    expect((await remove("zzzzzzzzzzzzzzzzzzzzzzzz")).json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
    expect((await remove("NOT-AN-ID")).statusCode).toBe(422);
  });

  it("needs the admin token", async () => {
    const { job } = await jobInStatus(t.app, tenant, "completed");
    const response = await t.app.inject({
      method: "DELETE",
      url: `/api/admin/v1/expert_jobs/${job.id}`,
      headers: { authorization: `Bearer ${tenant.clientKey}` },
    });
    expect(response.statusCode).toBe(401);
    expect((await stored(t.app, job.id)).job).toBe(1);
  });
});
