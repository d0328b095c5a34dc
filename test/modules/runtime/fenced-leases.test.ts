import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasons } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, checkpointBody, eventually, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { grownJobBodies } from "../../helpers/corpus.ts";
import { readPostContext, storeCheckpoint } from "../../../src/modules/checkpoints/checkpoints.sql.ts";

type Json = Record<string, any>;

const LEASE_HEADER = "Perstack-Lease-Token";
const CONFLICT = { code: 409, error: "Conflict", reason: reasons.leaseNotCurrent };

/** One runtime over real HTTP: every request about a job it claimed carries that claim's lease token. */
class Runtime {
  readonly leases = new Map<string, string>();
  constructor(
    private readonly base: string,
    private readonly key: string,
  ) {}

  /** `leaseToken` null: no header. */
  async request(method: string, path: string, body?: unknown, leaseToken: string | null = null): Promise<{ status: number; json: Json }> {
    const response = await fetch(`${this.base}/api/studio/v1${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.key}`,
        ...(body !== undefined && { "content-type": "application/json" }),
        ...(leaseToken !== null && { [LEASE_HEADER]: leaseToken }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : {} };
  }

  async claim(): Promise<Json> {
    const { status, json } = await this.request("POST", "/expert_jobs/claim", { waitMs: 0 });
    expect(status, JSON.stringify(json)).toBe(200);
    this.leases.set(json.data.claim.expertJob.id, json.data.claim.leaseToken);
    return json.data.claim;
  }

  post(expertJobId: string, body: unknown, token = this.leases.get(expertJobId) ?? null) {
    return this.request("POST", `/expert_jobs/${expertJobId}/checkpoints/`, body, token);
  }

  report(expertJobId: string, status: string, token = this.leases.get(expertJobId) ?? null) {
    return this.request("POST", `/expert_jobs/${expertJobId}`, { status }, token);
  }

  watch(expertJobId: string, query = "", token = this.leases.get(expertJobId) ?? null) {
    return this.request("GET", `/expert_jobs/${expertJobId}/status${query}`, undefined, token);
  }
}

describe("fenced leases (Perstack-Lease-Token)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    // A lease long enough that only the test ends it (by moving lease_expires_at), swept every 50 ms.
    t = await startTestApp({ config: { leaseMs: 120_000 }, sweepIntervalMs: 50 });
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  const jobRow = (id: string) => t.app.prisma.expertJob.findUniqueOrThrow({ where: { id } });
  const storedIds = async (expertJobId: string) =>
    (await t.app.prisma.checkpoint.findMany({ where: { expertJobId }, orderBy: { seq: "asc" }, select: { id: true } })).map(
      (row) => row.id,
    );
  /** The runtime paused past its lease (a GC, a partition): the lease runs out and the sweeper requeues the job. */
  async function loseLease(expertJobId: string): Promise<void> {
    await t.app.prisma.expertJob.update({ where: { id: expertJobId }, data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
    await eventually(async () => (await jobRow(expertJobId)).status === "queued", 30_000);
  }

  it("A claims, its lease runs out, the sweeper requeues, B claims: A's next post is a 409 and only B's history is stored", async () => {
    tenant = await seedTenant(t.app);
    const a = new Runtime(base, tenant.runtimeKey);
    const b = new Runtime(base, tenant.runtimeKey);
    const job = await startJob(t.app, tenant, { maxRetries: 3, maxSteps: 100 });

    const claimA = await a.claim();
    expect(claimA.expertJob.id).toBe(job.id);
    expect(claimA.leaseToken).toEqual(expect.any(String));
    // A's run: real-sized steps (~10 KB each, the conversation growing), the first two posted in time.
    const bodiesA = [...grownJobBodies(tenant, { steps: 4, lastStatus: "proceeding" })];
    for (const body of bodiesA.slice(0, 2)) expect((await a.post(job.id, body)).status).toBe(200);
    const beforeTakeover = await storedIds(job.id);
    expect(beforeTakeover).toHaveLength(2);

    await loseLease(job.id);
    // Between the requeue and B's claim A's heartbeat is refused too: without the token it would take the job back to processing.
    expect(await a.report(job.id, "processing")).toEqual({ status: 409, json: CONFLICT });
    expect((await jobRow(job.id)).status).toBe("queued");

    const claimB = await b.claim();
    expect(claimB.expertJob.id).toBe(job.id);
    expect(claimB.leaseToken).not.toBe(claimA.leaseToken);
    expect(claimB.checkpoint.id).toBe(beforeTakeover[1]);
    const bodiesB = [...grownJobBodies(tenant, { steps: 3, firstStep: 2, lastStatus: "proceeding" })];
    expect((await b.post(job.id, bodiesB[0])).status).toBe(200);

    // A wakes up and goes on with its own step 3, then 4, then reports: every one refused before anything is stored.
    for (const body of bodiesA.slice(2)) expect(await a.post(job.id, body)).toEqual({ status: 409, json: CONFLICT });
    expect(await a.report(job.id, "processing")).toEqual({ status: 409, json: CONFLICT });
    expect(await a.report(job.id, "failed")).toEqual({ status: 409, json: CONFLICT });
    expect(await a.watch(job.id, "?while=processing&waitMs=0")).toEqual({ status: 409, json: CONFLICT });

    for (const body of bodiesB.slice(1)) expect((await b.post(job.id, body)).status).toBe(200);
    const completed = checkpointBody(tenant, { stepNumber: 6, status: "completed" });
    expect((await b.post(job.id, completed)).json.data.checkpoint.status).toBe("completed");
    expect((await b.report(job.id, "completed")).json.data.expertJob.status).toBe("completed");

    const stored = await t.app.prisma.checkpoint.findMany({ where: { expertJobId: job.id }, orderBy: { seq: "asc" } });
    expect(stored.map((row) => row.stepNumber)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(stored.slice(0, 2).map((row) => row.id)).toEqual(beforeTakeover);
    expect(stored.slice(2, 5).map((row) => row.id)).toEqual(bodiesB.map((body) => body.checkpoint.id));
    expect(new Set(stored.slice(2).map((row) => row.runId)).has(bodiesA[0]!.checkpoint.runId)).toBe(false);
    // No message of A's late steps (each carrying a ~10 KB file) was stored either.
    const late = new Set(bodiesA.slice(2).flatMap((body) => body.step.newMessages.map((message: Json) => message.id)));
    const messages = await t.app.prisma.jobMessage.findMany({ where: { expertJobId: job.id } });
    expect(messages.filter((message) => late.has((message.body as Json).id))).toEqual([]);
    expect(messages.length).toBeGreaterThan(0);
    expect(await jobRow(job.id)).toMatchObject({ status: "completed", currentStep: 6, totalSteps: 6, lastSeq: 6, retryCount: 1 });
  });

  it("without the header nothing is checked, as before: a late runtime's post lands in the new run's history", async () => {
    const owner = await seedTenant(t.app);
    const a = new Runtime(base, owner.runtimeKey);
    const b = new Runtime(base, owner.runtimeKey);
    const job = await startJob(t.app, owner, { maxRetries: 3 });
    await a.claim();
    expect((await a.post(job.id, checkpointBody(owner, { stepNumber: 1 }), null)).status).toBe(200);
    await loseLease(job.id);
    // A heartbeat without the token moves a requeued job back to processing with no claim at all.
    expect((await a.report(job.id, "processing", null)).json.data.expertJob.status).toBe("processing");
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { status: "queued", leaseExpiresAt: null } });
    await b.claim();
    expect((await b.post(job.id, checkpointBody(owner, { stepNumber: 2 }))).status).toBe(200);
    expect((await a.post(job.id, checkpointBody(owner, { stepNumber: 2 }), null)).status).toBe(200);
    expect((await t.app.prisma.checkpoint.findMany({ where: { expertJobId: job.id } })).map((row) => row.stepNumber).sort()).toEqual([
      1, 2, 2,
    ]);
  });

  it("the current lease's token works for every call, an idempotent re-post included, until the job is continued", async () => {
    const owner = await seedTenant(t.app);
    const a = new Runtime(base, owner.runtimeKey);
    const b = new Runtime(base, owner.runtimeKey);
    const job = await startJob(t.app, owner);
    const claim = await a.claim();
    expect((await a.report(job.id, "processing")).json.data.expertJob.status).toBe("processing");
    expect((await a.watch(job.id)).json.data.jobStatus).toEqual({ expertJobId: job.id, status: "processing" });
    const last = checkpointBody(owner, { id: createId(), stepNumber: 1, status: "completed" });
    const first = await a.post(job.id, last);
    expect(first.status).toBe(200);
    // The job is completed; the lease is still the last one: a retried post gets the same answer.
    expect(await a.post(job.id, last)).toEqual(first);
    expect((await a.report(job.id, "completed")).status).toBe(200);

    const continued = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "More" });
    expect(continued.statusCode).toBe(200);
    expect(await a.post(job.id, checkpointBody(owner, { stepNumber: 2 }), claim.leaseToken)).toEqual({ status: 409, json: CONFLICT });
    expect(await a.post(job.id, last, claim.leaseToken)).toEqual({ status: 409, json: CONFLICT });
    const next = await b.claim();
    expect(next.leaseToken).not.toBe(claim.leaseToken);
    expect((await b.post(job.id, checkpointBody(owner, { stepNumber: 2 }))).status).toBe(200);
    expect(await a.report(job.id, "processing", claim.leaseToken)).toEqual({ status: 409, json: CONFLICT });
    expect(await storedIds(job.id)).toHaveLength(2);
  });

  it("a post that read the job before a requeue and another claim is not stored: the store re-checks the lease", async () => {
    const owner = await seedTenant(t.app);
    const a = new Runtime(base, owner.runtimeKey);
    const b = new Runtime(base, owner.runtimeKey);
    const job = await startJob(t.app, owner, { maxRetries: 3 });
    await a.claim();
    // A's post has read the job (processing, last_seq 0) when A stalls…
    const read = (await readPostContext(t.app.sql, job.id, owner.applicationId, null, []))!;
    await loseLease(job.id);
    await b.claim();
    // …and the job looks the same again (processing, last_seq 0) under B's lease: only the lease tells them apart.
    expect(await jobRow(job.id)).toMatchObject({ status: read.status, lastSeq: read.lastSeq });
    const now = new Date();
    const row = {
      expertJobId: job.id,
      id: createId(),
      seq: 1,
      runId: createId(),
      stepNumber: 1,
      status: "proceeding",
      expertId: owner.expert.id,
      expertKey: owner.expert.key,
      action: JSON.stringify({ type: "init" }),
      actionLight: null,
      skillName: null,
      toolName: null,
      delegateTo: null,
      delegatedBy: null,
      messageRuns: "[]",
      inputMessages: null,
      newMessages: "[]",
      toolCall: null,
      toolResult: null,
      usage: JSON.stringify({ inputTokens: 0, outputTokens: 0, reasoningTokens: 0, totalTokens: 0, cachedInputTokens: 0 }),
      contextWindow: 0,
      contextWindowUsage: 0,
      startedAt: now,
      finishedAt: null,
      resumedFromCheckpointId: null,
      contentHash: "00",
      conversationHash: "00",
      createdAt: now,
      messagesBytes: 2,
      detailBytes: 0,
    };
    const update = {
      status: "processing" as const,
      durationMs: 0,
      leaseExpiresAt: new Date(now.getTime() + 60_000),
      pausedAt: null,
    };
    expect(await storeCheckpoint(t.app.sql, read, [], row, update)).toBeUndefined();
    expect(await storedIds(job.id)).toEqual([]);
    // Read again under B's lease, the same write is stored.
    const again = (await readPostContext(t.app.sql, job.id, owner.applicationId, null, []))!;
    expect(await storeCheckpoint(t.app.sql, again, [], row, update)).toBeDefined();
    expect(await storedIds(job.id)).toEqual([row.id]);
  });

  it("a token that was never the job's is a 409; an empty header is a 422", async () => {
    const owner = await seedTenant(t.app);
    const a = new Runtime(base, owner.runtimeKey);
    const job = await startJob(t.app, owner);
    await a.claim();
    expect(await a.post(job.id, checkpointBody(owner), "not-a-lease")).toEqual({ status: 409, json: CONFLICT });
    expect(await a.report(job.id, "processing", createId())).toEqual({ status: 409, json: CONFLICT });
    const empty = await api(t.app, owner.runtimeKey).request({
      method: "POST",
      url: `/expert_jobs/${job.id}/checkpoints/`,
      headers: { "content-type": "application/json", [LEASE_HEADER]: "" },
      payload: JSON.stringify(checkpointBody(owner)),
    });
    expect(empty.statusCode).toBe(422);
    expect(empty.json()).toMatchObject({ code: 422, error: "Validation Failed" });
    expect(await storedIds(job.id)).toEqual([]);
  });

  it("a lease taken back for good (failed past maxRetries) refuses its token", async () => {
    const owner = await seedTenant(t.app);
    const a = new Runtime(base, owner.runtimeKey);
    const job = await startJob(t.app, owner, { maxRetries: 0 });
    await a.claim();
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
    await eventually(async () => (await jobRow(job.id)).status === "failed", 30_000);
    expect((await jobRow(job.id)).leaseToken).toBeNull();
    expect(await a.post(job.id, checkpointBody(owner))).toEqual({ status: 409, json: CONFLICT });
  });

  it("is documented in OpenAPI: the claim's leaseToken, the header on posts, reports and watches, their 409", async () => {
    const doc = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json();
    const claim = doc.paths["/api/studio/v1/expert_jobs/claim"].post.responses["200"].content["application/json"].schema;
    const claimSchema = JSON.stringify(claim);
    expect(claimSchema).toContain("leaseToken");
    for (const [path, method] of [
      ["/api/studio/v1/expert_jobs/{expertJobId}/checkpoints", "post"],
      ["/api/studio/v1/expert_jobs/{expertJobId}", "post"],
      ["/api/studio/v1/expert_jobs/{expertJobId}/status", "get"],
    ] as const) {
      const operation = doc.paths[path]?.[method] ?? doc.paths[`${path}/`]?.[method];
      expect(operation, path).toBeDefined();
      const header = operation.parameters.find((parameter: Json) => parameter.in === "header");
      expect(header, path).toMatchObject({ name: "perstack-lease-token" });
      expect(header.required ?? false).toBe(false);
      expect(header.description ?? header.schema.description).toMatch(/409/);
      expect(Object.keys(operation.responses)).toContain("409");
    }
  });
});
