import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, ADMIN_TOKEN, type TestApp } from "../../helpers/app.ts";
import { api, eventually, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";

describe("a runtime key revoked while its claim long-polls", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const revoke = (apiKeyId: string) =>
    t.app.inject({ method: "DELETE", url: `/api/admin/v1/api_keys/${apiKeyId}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

  it("gets 401 at once instead of the next job and its secret; the job stays queued for another runtime", async () => {
    const doomed = await t.app.admin.createApiKey(tenant.applicationId, "runtime");
    const waiting = api(t.app, doomed.key).post("/expert_jobs/claim", { waitMs: 20_000 });
    await eventually(async () => t.app.runtime.waitingClaims === 1);
    expect((await revoke(doomed.id)).statusCode).toBe(204);
    const job = await startJob(t.app, tenant);

    const answer = await waiting;
    expect(answer.statusCode).toBe(401);
    expect(answer.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
    expect(answer.body).not.toContain("sk-anthropic-secret");
    const row = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
    expect([row.status, row.leaseExpiresAt]).toEqual(["queued", null]);

    const other = await api(t.app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs: 0 });
    expect(other.statusCode).toBe(200);
    expect(other.json().data.claim.expertJob.id).toBe(job.id);
  });

  it("gets no job when the job is queued while the revocation's notification is still on its way", async () => {
    const doomed = await t.app.admin.createApiKey(tenant.applicationId, "runtime");
    const waiting = api(t.app, doomed.key).post("/expert_jobs/claim", { waitMs: 20_000 });
    await eventually(async () => t.app.runtime.waitingClaims === 1);
    // The revocation commits in the database, but this instance hears of it only when the job's start wakes the claim.
    await t.app.prisma.apiKey.update({ where: { id: doomed.id }, data: { revokedAt: new Date() } });
    const job = await startJob(t.app, tenant);
    expect((await waiting).statusCode).toBe(401);
    expect((await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } })).status).toBe("queued");
    expect((await api(t.app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs: 0 })).json().data.claim.expertJob.id).toBe(job.id);
  });

  it("a claim by a key revoked before it started is a plain 401", async () => {
    const doomed = await t.app.admin.createApiKey(tenant.applicationId, "runtime");
    await revoke(doomed.id);
    expect((await api(t.app, doomed.key).post("/expert_jobs/claim", { waitMs: 0 })).statusCode).toBe(401);
  });
});
