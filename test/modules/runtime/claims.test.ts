import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasons } from "../../../src/errors.ts";
import { createTestDatabase, startTestApp, usingPostgres, type TestApp } from "../../helpers/app.ts";
import { api, claimJob, eventually, jobInStatus, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { backendCases } from "../../helpers/nats.ts";

const LEASE_MS = 120_000;

describe("POST /expert_jobs/claim", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ config: { leaseMs: LEASE_MS } });
  });
  afterAll(async () => t.close());

  it("is documented in the OpenAPI document with its 200 and 204 answers", async () => {
    const doc = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json();
    const claim = doc.paths["/api/studio/v1/expert_jobs/claim"].post;
    expect(Object.keys(claim.responses)).toEqual(expect.arrayContaining(["200", "204", "401", "403", "422"]));
    expect(doc.paths["/api/studio/v1/expert_jobs/{expertJobId}"].post.operationId).toBe("postApiStudioV1Expert_jobsByExpertJobId");
    const continued = doc.paths["/api/studio/v1/expert_jobs/{expertJobId}/continue"].post;
    expect(continued.operationId).toBe("postApiStudioV1Expert_jobsByExpertJobIdContinue");
    expect(Object.keys(continued.requestBody.content)).toEqual(expect.arrayContaining(["application/json", "multipart/form-data"]));
  });

  it("answers 401 without a key and 403 to a client key", async () => {
    const tenant = await seedTenant(t.app);
    expect((await t.app.inject({ method: "POST", url: "/api/studio/v1/expert_jobs/claim", payload: {} })).statusCode).toBe(401);
    const forbidden = await api(t.app, tenant.clientKey).post("/expert_jobs/claim", {});
    expect(forbidden.statusCode).toBe(403);
    expect(forbidden.json()).toEqual({ code: 403, error: "Forbidden", reason: reasons.runtimeScopeRequired });
  });

  it("answers 422 to waitMs out of range or not a number", async () => {
    const tenant = await seedTenant(t.app);
    for (const waitMs of [-1, 30_001, "soon", 1.5]) {
      const response = await api(t.app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs });
      expect(response.statusCode, String(waitMs)).toBe(422);
      expect(response.json().reason[0].path).toBe("/waitMs");
    }
  });

  it("answers 204 with no body when nothing is queued: empty JSON body, no body, `{}`", async () => {
    const tenant = await seedTenant(t.app);
    const runtime = api(t.app, tenant.runtimeKey);
    const responses = [
      await runtime.request({ method: "POST", url: "/expert_jobs/claim", headers: { "content-type": "application/json" } }),
      await runtime.request({ method: "POST", url: "/expert_jobs/claim" }),
      await runtime.post("/expert_jobs/claim", {}),
    ];
    for (const response of responses) {
      expect(response.statusCode).toBe(204);
      expect(response.body).toBe("");
    }
  });

  it("claims the oldest queued job of its own application: processing, leased, with the provider key", async () => {
    const tenant = await seedTenant(t.app);
    const other = await seedTenant(t.app);
    const theirs = await startJob(t.app, other);
    const first = await startJob(t.app, tenant, { query: "first" });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const second = await startJob(t.app, tenant, { query: "second" });

    const before = Date.now();
    const response = await claimJob(t.app, tenant);
    expect(response.statusCode, response.body).toBe(200);
    const claim = response.json().data.claim;
    expect(claim.expertJob).toMatchObject({ id: first.id, status: "processing", query: "first" });
    expect(claim).not.toHaveProperty("checkpoint");
    expect(claim.providerKey).toEqual({ provider: "anthropic", key: "sk-anthropic-secret" });
    expect(Date.parse(claim.leaseExpiresAt)).toBeGreaterThanOrEqual(before + LEASE_MS - 1000);
    expect(Date.parse(claim.leaseExpiresAt)).toBeLessThanOrEqual(Date.now() + LEASE_MS);
    expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${first.id}`)).json().data.expertJob.status).toBe("processing");

    expect((await claimJob(t.app, tenant)).json().data.claim.expertJob.id).toBe(second.id);
    expect((await claimJob(t.app, tenant)).statusCode).toBe(204);
    expect((await api(t.app, other.clientKey).get(`/expert_jobs/${theirs.id}`)).json().data.expertJob.status).toBe("queued");
  });

  it("hands over the key of the job's model's provider", async () => {
    const tenant = await seedTenant(t.app, { providers: ["anthropic", "openai", "google"] });
    await startJob(t.app, tenant, { model: "gemini-2.5-flash" });
    expect((await claimJob(t.app, tenant)).json().data.claim.providerKey).toEqual({ provider: "google", key: "sk-google-secret" });
  });

  it("fails a job whose provider key was deleted after it was queued, and claims the next one", async () => {
    const tenant = await seedTenant(t.app, { providers: ["anthropic", "openai"] });
    const orphan = await startJob(t.app, tenant, { model: "gpt-5" });
    const next = await startJob(t.app, tenant);
    await t.app.providerKeys.delete(tenant.applicationId, "openai");
    const response = await claimJob(t.app, tenant);
    expect(response.json().data.claim.expertJob.id).toBe(next.id);
    expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${orphan.id}`)).json().data.expertJob.status).toBe("failed");
  });

  it("hands the latest checkpoint with a continued job", async () => {
    const tenant = await seedTenant(t.app);
    const { job, checkpoints } = await jobInStatus(t.app, tenant, "exceededMaxSteps");
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "more", maxSteps: 300 });
    const claim = (await claimJob(t.app, tenant)).json().data.claim;
    expect(claim.expertJob).toMatchObject({ id: job.id, maxSteps: 300, status: "processing" });
    const stored = (await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}/checkpoints/${checkpoints[1]!.id}`)).json();
    expect(claim.checkpoint).toEqual(stored.data.checkpoint);
  });

  it("gives one job to exactly one of 10 concurrent claimers", async () => {
    for (let round = 0; round < 3; round++) {
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant);
      const responses = await Promise.all(Array.from({ length: 10 }, () => claimJob(t.app, tenant)));
      const winners = responses.filter((response) => response.statusCode === 200);
      expect(winners, `round ${round}`).toHaveLength(1);
      expect(winners[0]!.json().data.claim.expertJob.id).toBe(job.id);
      expect(responses.filter((response) => response.statusCode === 204)).toHaveLength(9);
    }
  });

  it("gives 10 concurrent claimers 3 jobs without handing any job out twice", async () => {
    const tenant = await seedTenant(t.app);
    const jobs = [await startJob(t.app, tenant), await startJob(t.app, tenant), await startJob(t.app, tenant)];
    const responses = await Promise.all(Array.from({ length: 10 }, () => claimJob(t.app, tenant)));
    const claimed = responses.filter((response) => response.statusCode === 200).map((response) => response.json().data.claim.expertJob.id);
    expect(claimed.sort()).toEqual(jobs.map((job) => job.id).sort());
  });

  describe("long poll", () => {
    it("is woken at once by a start", async () => {
      const tenant = await seedTenant(t.app);
      const started = Date.now();
      const waiting = claimJob(t.app, tenant, 10_000);
      await eventually(async () => t.app.runtime.waitingClaims > 0);
      const job = await startJob(t.app, tenant);
      const response = await waiting;
      expect(response.statusCode).toBe(200);
      expect(response.json().data.claim.expertJob.id).toBe(job.id);
      expect(Date.now() - started).toBeLessThan(5_000);
    });

    it("is woken at once by a continue", async () => {
      const tenant = await seedTenant(t.app);
      const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
      const waiting = claimJob(t.app, tenant, 10_000);
      await eventually(async () => t.app.runtime.waitingClaims > 0);
      const started = Date.now();
      await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "Yes", interactiveToolCallResult: true });
      const response = await waiting;
      expect(response.json().data.claim.expertJob).toMatchObject({ id: job.id, interactiveToolCallResult: true });
      expect(Date.now() - started).toBeLessThan(3_000);
    });

    it("answers 204 after waitMs when nothing came, ignoring other applications' jobs", async () => {
      const tenant = await seedTenant(t.app);
      const other = await seedTenant(t.app);
      const started = Date.now();
      const waiting = claimJob(t.app, tenant, 600);
      await eventually(async () => t.app.runtime.waitingClaims > 0);
      const theirs = await startJob(t.app, other);
      const response = await waiting;
      expect(response.statusCode).toBe(204);
      expect(Date.now() - started).toBeGreaterThanOrEqual(590);
      expect((await api(t.app, other.clientKey).get(`/expert_jobs/${theirs.id}`)).json().data.expertJob.status).toBe("queued");
    });

    it("lets exactly one of several waiting claimers take a job queued while they wait", async () => {
      const tenant = await seedTenant(t.app);
      const waiting = Array.from({ length: 5 }, () => claimJob(t.app, tenant, 1_500));
      await eventually(async () => t.app.runtime.waitingClaims >= 5);
      const job = await startJob(t.app, tenant);
      const responses = await Promise.all(waiting);
      const winners = responses.filter((response) => response.statusCode === 200);
      expect(winners).toHaveLength(1);
      expect(winners[0]!.json().data.claim.expertJob.id).toBe(job.id);
      expect(t.app.runtime.waitingClaims).toBe(0);
    });

    it("ends when the client disconnects", async () => {
      const tenant = await seedTenant(t.app);
      const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const controller = new AbortController();
      const request = fetch(`${base}/api/studio/v1/expert_jobs/claim`, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.runtimeKey}`, "content-type": "application/json" },
        body: JSON.stringify({ waitMs: 30_000 }),
        signal: controller.signal,
      }).catch((error: unknown) => error);
      await eventually(async () => t.app.runtime.waitingClaims === 1);
      const aborted = Date.now();
      controller.abort();
      await request;
      await eventually(async () => t.app.runtime.waitingClaims === 0, 2_000);
      expect(Date.now() - aborted).toBeLessThan(2_000);
      const job = await startJob(t.app, tenant);
      expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("queued");
    });
  });
});

describe("claims and server shutdown", () => {
  it("ends a waiting claim with 204 when the server closes", async () => {
    const t = await startTestApp();
    const tenant = await seedTenant(t.app);
    const waiting = claimJob(t.app, tenant, 30_000);
    await eventually(async () => t.app.runtime.waitingClaims === 1);
    const closing = Date.now();
    await t.close();
    const response = await waiting;
    expect(response.statusCode).toBe(204);
    expect(Date.now() - closing).toBeLessThan(3_000);
  });
});

for (const backend of backendCases) {
  describe.skipIf(!usingPostgres() || backend.skip !== undefined)(
    `claims across two server instances on one database, notifications over ${backend.name} (${backend.skip ?? "Postgres only: PGlite is single-process"})`,
    () => {
      it("wakes a claim waiting on one instance when a job starts on the other", async () => {
        const db = await createTestDatabase();
        // Instances of one deployment share SECRETS_KEY, or they could not decrypt each other's provider keys.
        // The safety re-read is slowed down: only the notification can wake the claim in time.
        const config = { secretsKey: randomBytes(32), notify: backend.notify(db), notifySafetyIntervalMs: 600_000 };
        const a = await startTestApp({ db, config });
        const b = await startTestApp({ db, config });
        try {
          const tenant = await seedTenant(a.app);
          const waiting = claimJob(a.app, tenant, 15_000);
          await eventually(async () => a.app.runtime.waitingClaims === 1);
          const started = Date.now();
          const job = await startJob(b.app, tenant);
          const response = await waiting;
          expect(response.statusCode).toBe(200);
          expect(response.json().data.claim.expertJob.id).toBe(job.id);
          expect(Date.now() - started).toBeLessThan(3_000);
        } finally {
          await a.close();
          await b.close();
          await db.drop();
        }
      });

      it("gives one job to exactly one of 10 claimers spread over two instances", async () => {
        const db = await createTestDatabase();
        // Instances of one deployment share SECRETS_KEY, or they could not decrypt each other's provider keys.
        const config = { secretsKey: randomBytes(32), notify: backend.notify(db) };
        const a = await startTestApp({ db, config });
        const b = await startTestApp({ db, config });
        try {
          const tenant = await seedTenant(a.app);
          for (let round = 0; round < 5; round++) {
            const job = await startJob(a.app, tenant);
            const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => claimJob(i % 2 === 0 ? a.app : b.app, tenant)));
            const winners = responses.filter((response) => response.statusCode === 200);
            expect(winners).toHaveLength(1);
            expect(winners[0]!.json().data.claim.expertJob.id).toBe(job.id);
          }
        } finally {
          await a.close();
          await b.close();
          await db.drop();
        }
      });
    },
  );
}
