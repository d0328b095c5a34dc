import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasons } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import {
  api,
  claimJob,
  formData,
  jobInStatus,
  postCheckpoint,
  seedSiblingApplication,
  seedTenant,
  startJob,
  type Tenant,
} from "../../helpers/fixtures.ts";
import { INTERACTIVE_ANSWER, replayTrace, traceLines } from "../../helpers/corpus.ts";

const UNKNOWN_ID = "a".repeat(24);

describe("POST /expert_jobs/{id}/continue", () => {
  let t: TestApp;
  let tenant: Tenant;
  let other: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    other = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const client = () => api(t.app, tenant.clientKey);
  const continueJob = (id: string, body?: unknown) => client().post(`/expert_jobs/${id}/continue`, body);
  const continueForm = async (id: string, fields: Array<[string, string]>) => {
    const { payload, headers } = await formData(fields);
    return client().request({ method: "POST", url: `/expert_jobs/${id}/continue`, payload, headers });
  };
  const expectBadRequest = (response: { statusCode: number; json(): unknown }, reason: string) => {
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason });
  };

  describe("check order 401 → 422 → 404 → 400", () => {
    it("answers 401 to a request without a key even when its id and body are invalid", async () => {
      const response = await t.app.inject({
        method: "POST",
        url: "/api/studio/v1/expert_jobs/NOT-AN-ID/continue",
        payload: { temperature: 7 },
      });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
    });

    it("answers 422 to a malformed job id, never 404", async () => {
      for (const id of ["short", "A".repeat(24), "a".repeat(25), "a-".repeat(12)]) {
        const response = await continueJob(id, { query: "hi" });
        expect(response.statusCode, id).toBe(422);
        expect(response.json().reason[0].path).toBe("/expertJobId");
      }
    });

    it("answers 422 to an invalid body of an unknown job (validation before lookup)", async () => {
      const response = await continueJob(UNKNOWN_ID, { query: "hi", maxSteps: 0 });
      expect(response.statusCode).toBe(422);
    });

    it("answers 404 to an unknown job before looking at a missing query", async () => {
      const response = await continueJob(UNKNOWN_ID, {});
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: reasons.expertJobNotFound });
    });

    it("answers 404 to another application's job, even a continuable one", async () => {
      const { job } = await jobInStatus(t.app, other, "completed");
      const response = await continueJob(job.id, { query: "mine now?" });
      expect(response.statusCode).toBe(404);
      expect(response.json().reason).toBe(reasons.expertJobNotFound);
      const sibling = await seedSiblingApplication(t.app, tenant);
      const { job: siblingJob } = await jobInStatus(t.app, sibling, "completed");
      expect((await continueJob(siblingJob.id, { query: "same org, other app" })).statusCode).toBe(404);
    });
  });

  describe("422: numbers, enums and strings out of range", () => {
    let jobId: string;
    beforeAll(async () => {
      jobId = (await jobInStatus(t.app, tenant, "completed")).job.id;
    });

    const invalidJson: Array<[string, Record<string, unknown>, string]> = [
      ["temperature not a number", { temperature: "warm" }, "/temperature"],
      ["temperature above 1", { temperature: 1.5 }, "/temperature"],
      ["temperature below 0", { temperature: "-0.1" }, "/temperature"],
      ["maxSteps 0", { maxSteps: 0 }, "/maxSteps"],
      ["maxSteps fractional", { maxSteps: "1.5" }, "/maxSteps"],
      ["maxSteps empty string", { maxSteps: "" }, "/maxSteps"],
      ["maxRetries negative", { maxRetries: "-1" }, "/maxRetries"],
      ["maxRetries not a number", { maxRetries: "five" }, "/maxRetries"],
      ["model outside the enum", { model: "gpt-2" }, "/model"],
      ["interactiveToolCallResult not a boolean", { interactiveToolCallResult: "maybe" }, "/interactiveToolCallResult"],
      ["an empty file name", { files: [""] }, "/files/0"],
      ["a query longer than 20480 characters", { query: "x".repeat(20481) }, "/query"],
    ];
    for (const [name, body, path] of invalidJson) {
      it(`answers 422 to JSON with ${name}`, async () => {
        const response = await continueJob(jobId, { query: "go on", ...body });
        expect(response.statusCode).toBe(422);
        expect(response.json()).toMatchObject({ code: 422, error: "Validation Failed" });
        expect(response.json().reason.map((issue: { path: string }) => issue.path)).toContain(path);
      });
    }

    it("answers 422 to form data with a non-numeric maxSteps or an out-of-range temperature", async () => {
      const steps = await continueForm(jobId, [
        ["query", "go on"],
        ["maxSteps", "ten"],
      ]);
      expect(steps.statusCode).toBe(422);
      expect(steps.json().reason[0].path).toBe("/maxSteps");
      const temperature = await continueForm(jobId, [
        ["query", "go on"],
        ["temperature", "2"],
      ]);
      expect(temperature.statusCode).toBe(422);
      expect(temperature.json().reason[0].path).toBe("/temperature");
    });

    it("left the job untouched after every rejected request", async () => {
      const job = (await client().get(`/expert_jobs/${jobId}`)).json().data.expertJob;
      expect(job.status).toBe("completed");
      expect(job.query).toBe("Do it");
    });
  });

  describe("the four 400s, in order", () => {
    it("gets `Query or files are required` before anything else, for a job with no checkpoint in a running status", async () => {
      const job = await startJob(t.app, tenant);
      expectBadRequest(await continueJob(job.id, {}), reasons.queryOrFilesRequired);
      expectBadRequest(await continueJob(job.id, { query: "" }), reasons.queryOrFilesRequired);
      expectBadRequest(await continueJob(job.id, { query: "", files: [] }), reasons.queryOrFilesRequired);
    });

    it("gets `Query or files are required` for an empty JSON body and for the new client's `{response}` shape", async () => {
      const { job } = await jobInStatus(t.app, tenant, "completed");
      const empty = await client().request({
        method: "POST",
        url: `/expert_jobs/${job.id}/continue`,
        headers: { "content-type": "application/json" },
      });
      expectBadRequest(empty, reasons.queryOrFilesRequired);
      expectBadRequest(await continueJob(job.id, { response: "yes" }), reasons.queryOrFilesRequired);
    });

    it("gets `No checkpoint found` for a job without checkpoints, before its status is looked at", async () => {
      const job = await startJob(t.app, tenant);
      expectBadRequest(await continueJob(job.id, { query: "go" }), reasons.noCheckpointFound);
      expectBadRequest(await continueJob(job.id, { files: ["a.txt"] }), reasons.noCheckpointFound);
    });

    for (const status of ["processing", "canceling", "canceled", "expired"]) {
      it(`gets \`Current status is unable to continue\` for a ${status} job, before the provider key is looked at`, async () => {
        const { job } = await jobInStatus(t.app, tenant, status);
        expectBadRequest(await continueJob(job.id, { query: "go", model: "gpt-5" }), reasons.unableToContinue);
        expect((await client().get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe(status);
      });
    }

    it("gets `Current status is unable to continue` for a queued job that already has checkpoints", async () => {
      const { job } = await jobInStatus(t.app, tenant, "completed");
      expect((await continueJob(job.id, { query: "once" })).statusCode).toBe(200);
      expectBadRequest(await continueJob(job.id, { query: "twice" }), reasons.unableToContinue);
    });

    it("gets `Provider API key not found` for a model whose provider has no key in the application", async () => {
      const { job } = await jobInStatus(t.app, tenant, "completed");
      for (const model of ["gpt-5", "gemini-2.5-pro", "deepseek-chat", "o3"]) {
        expectBadRequest(await continueJob(job.id, { query: "go", model }), reasons.providerKeyNotFound);
      }
      expect((await client().get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("completed");
    });

    it("gets `Provider API key not found` when the job's own model lost its key", async () => {
      const owner = await seedTenant(t.app, { providers: ["anthropic", "openai"] });
      const { job } = await jobInStatus(t.app, owner, "completed", { model: "gpt-5-mini" });
      await t.app.providerKeys.delete(owner.applicationId, "openai");
      const response = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "go" });
      expectBadRequest(response, reasons.providerKeyNotFound);
      const switched = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, {
        query: "go",
        model: "claude-haiku-4-5",
      });
      expect(switched.statusCode).toBe(200);
      expect(switched.json().data.expertJob.model).toBe("claude-haiku-4-5");
    });
  });

  describe("effect", () => {
    for (const status of ["completed", "requestInteractiveToolResult", "requestDelegateResult", "exceededMaxSteps", "failed"]) {
      it(`queues a ${status} job again`, async () => {
        const { job } = await jobInStatus(t.app, tenant, status);
        const response = await continueJob(job.id, { query: "carry on" });
        expect(response.statusCode, response.body).toBe(200);
        expect(response.json().data.expertJob).toMatchObject({ id: job.id, status: "queued", query: "carry on" });
      });
    }

    it("replaces query, files and interactiveToolCallResult, applies overrides and keeps the counters (JSON)", async () => {
      const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult", { files: ["old.txt"] });
      expect(job.totalSteps).toBe(2);
      const response = await continueJob(job.id, {
        query: "Yes, proceed",
        interactiveToolCallResult: true,
        files: "new.txt",
        temperature: 0.3,
        maxSteps: "250",
        maxRetries: 2,
        model: "claude-opus-4-5",
      });
      expect(response.statusCode, response.body).toBe(200);
      const continued = response.json().data.expertJob;
      expect(continued).toEqual({
        ...job,
        status: "queued",
        query: "Yes, proceed",
        interactiveToolCallResult: true,
        files: ["new.txt"],
        temperature: 0.3,
        maxSteps: 250,
        maxRetries: 2,
        model: "claude-opus-4-5",
        updatedAt: continued.updatedAt,
      });
      expect(Date.parse(continued.updatedAt)).toBeGreaterThanOrEqual(Date.parse(job.updatedAt));
      expect((await client().get(`/expert_jobs/${job.id}`)).json().data.expertJob).toEqual(continued);
    });

    it("clears interactiveToolCallResult and files when a later continue leaves them out, and keeps settings not given", async () => {
      const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
      await continueJob(job.id, { query: "Yes", interactiveToolCallResult: true, files: ["a.txt"], maxSteps: 7 });
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 3, status: "completed" });
      const response = await continueJob(job.id, { query: "And now?" });
      expect(response.statusCode).toBe(200);
      const continued = response.json().data.expertJob;
      expect(continued).not.toHaveProperty("interactiveToolCallResult");
      expect(continued.files).toEqual([]);
      expect(continued.query).toBe("And now?");
      expect(continued.maxSteps).toBe(7);
    });

    it("accepts files without a query and leaves query out of the job", async () => {
      const { job } = await jobInStatus(t.app, tenant, "completed");
      const response = await continueJob(job.id, { query: "", files: ["report.pdf"] });
      expect(response.statusCode).toBe(200);
      expect(response.json().data.expertJob).not.toHaveProperty("query");
      expect(response.json().data.expertJob.files).toEqual(["report.pdf"]);
    });

    it('accepts the original client\'s multipart/form-data: numbers as strings, files repeated, interactiveToolCallResult as "true"', async () => {
      const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
      const response = await continueForm(job.id, [
        ["query", "Yes, proceed"],
        ["model", "claude-haiku-4-5"],
        ["temperature", "0.7"],
        ["maxSteps", "50"],
        ["maxRetries", "3"],
        ["files", "a.txt"],
        ["files", "b.txt"],
        ["interactiveToolCallResult", "true"],
      ]);
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().data.expertJob).toMatchObject({
        status: "queued",
        query: "Yes, proceed",
        model: "claude-haiku-4-5",
        temperature: 0.7,
        maxSteps: 50,
        maxRetries: 3,
        files: ["a.txt", "b.txt"],
        interactiveToolCallResult: true,
      });
    });

    it("turns a single multipart `files` field into a one-element array", async () => {
      const { job } = await jobInStatus(t.app, tenant, "completed");
      const response = await continueForm(job.id, [["files", "only.txt"]]);
      expect(response.statusCode, response.body).toBe(200);
      expect(response.json().data.expertJob.files).toEqual(["only.txt"]);
    });

    it("applies the 400 checks to form data too", async () => {
      const job = await startJob(t.app, tenant);
      const response = await continueForm(job.id, [["temperature", "0.5"]]);
      expectBadRequest(response, reasons.queryOrFilesRequired);
    });

    it("makes the job claimable again with its latest checkpoint", async () => {
      const owner = await seedTenant(t.app);
      const { job, checkpoints } = await jobInStatus(t.app, owner, "requestInteractiveToolResult");
      await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "Yes", interactiveToolCallResult: true });
      const claim = await claimJob(t.app, owner);
      expect(claim.statusCode, claim.body).toBe(200);
      expect(claim.json().data.claim.expertJob).toMatchObject({ id: job.id, status: "processing", interactiveToolCallResult: true });
      expect(claim.json().data.claim.checkpoint).toEqual(checkpoints.at(-1));
    });
  });

  describe("two concurrent continues", () => {
    it("let exactly one through, 25 times over", async () => {
      for (let round = 0; round < 25; round++) {
        const job = await startJob(t.app, tenant);
        await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "completed" });
        const responses = await Promise.all([
          continueJob(job.id, { query: `first ${round}` }),
          continueJob(job.id, { query: `second ${round}` }),
        ]);
        const codes = responses.map((response) => response.statusCode).sort();
        expect(codes, `round ${round}`).toEqual([200, 400]);
        const loser = responses.find((response) => response.statusCode === 400)!;
        expect(loser.json().reason).toBe(reasons.unableToContinue);
        const winner = responses.find((response) => response.statusCode === 200)!.json().data.expertJob;
        const stored = (await client().get(`/expert_jobs/${job.id}`)).json().data.expertJob;
        expect(stored.query).toBe(winner.query);
      }
    });

    it("let exactly one of five through", async () => {
      const { job } = await jobInStatus(t.app, tenant, "exceededMaxSteps");
      const responses = await Promise.all([1, 2, 3, 4, 5].map((n) => continueJob(job.id, { query: `try ${n}`, maxSteps: 200 })));
      expect(responses.filter((response) => response.statusCode === 200)).toHaveLength(1);
      expect(
        responses.filter((response) => response.statusCode === 400 && response.json().reason === reasons.unableToContinue),
      ).toHaveLength(4);
    });
  });
});

describe("POST /expert_jobs/{id}/resume_from", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const resume = (id: string, body?: unknown, as = tenant) => api(t.app, as.clientKey).post(`/expert_jobs/${id}/resume_from`, body);

  it("answers 401 without a key, and 422 to a bad body before looking the job up", async () => {
    const unauthenticated = await t.app.inject({
      method: "POST",
      url: `/api/studio/v1/expert_jobs/${UNKNOWN_ID}/resume_from`,
      payload: {},
    });
    expect(unauthenticated.statusCode).toBe(401);
    const invalid = await resume(UNKNOWN_ID, { checkpointId: UNKNOWN_ID, query: "x", temperature: "hot" });
    expect(invalid.statusCode).toBe(422);
    const unknown = await resume(UNKNOWN_ID, { checkpointId: UNKNOWN_ID, query: "x" });
    expect(unknown.json()).toEqual({ code: 404, error: "Not Found", reason: reasons.expertJobNotFound });
  });

  it("answers 422 to a missing or malformed checkpointId", async () => {
    const { job } = await jobInStatus(t.app, tenant, "completed");
    const missing = await resume(job.id, { query: "again" });
    expect(missing.statusCode).toBe(422);
    expect(missing.json().reason[0].path).toBe("/checkpointId");
    const malformed = await resume(job.id, { query: "again", checkpointId: "NOT-A-CUID" });
    expect(malformed.statusCode).toBe(422);
    expect(malformed.json().reason[0].path).toBe("/checkpointId");
  });

  it("answers 404 `Checkpoint not found` to another job's checkpoint, before the 400 checks", async () => {
    const { job } = await jobInStatus(t.app, tenant, "completed");
    const { checkpoints: foreign } = await jobInStatus(t.app, tenant, "completed");
    for (const body of [{ query: "again", checkpointId: foreign[0]!.id }, { checkpointId: foreign[0]!.id }]) {
      const response = await resume(job.id, body);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: reasons.checkpointNotFound });
    }
    expect((await resume(job.id, { query: "again", checkpointId: UNKNOWN_ID })).json().reason).toBe(reasons.checkpointNotFound);
  });

  it("answers 404 `Expert job not found` to another application's job", async () => {
    const other = await seedTenant(t.app);
    const { job, checkpoints } = await jobInStatus(t.app, other, "completed");
    const response = await resume(job.id, { query: "again", checkpointId: checkpoints[0]!.id });
    expect(response.statusCode).toBe(404);
    expect(response.json().reason).toBe(reasons.expertJobNotFound);
  });

  it("applies the continue 400s in order: query, status, provider key", async () => {
    const { job, checkpoints } = await jobInStatus(t.app, tenant, "processing");
    const checkpointId = checkpoints[0]!.id;
    expect((await resume(job.id, { checkpointId, model: "gpt-5" })).json().reason).toBe(reasons.queryOrFilesRequired);
    expect((await resume(job.id, { checkpointId, query: "x", model: "gpt-5" })).json().reason).toBe(reasons.unableToContinue);
    const { job: done, checkpoints: doneCheckpoints } = await jobInStatus(t.app, tenant, "completed");
    const response = await resume(done.id, { checkpointId: doneCheckpoints[0]!.id, query: "x", model: "gpt-5" });
    expect(response.statusCode).toBe(400);
    expect(response.json().reason).toBe(reasons.providerKeyNotFound);
  });

  it("hands the runtime the chosen checkpoint, not the latest, and the next checkpoint records it", async () => {
    const owner = await seedTenant(t.app);
    const { job, checkpoints } = await jobInStatus(t.app, owner, "completed");
    const [first, latest] = checkpoints;
    const response = await resume(job.id, { checkpointId: first!.id, query: "Take another path", maxSteps: "30" }, owner);
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().data.expertJob).toMatchObject({ status: "queued", query: "Take another path", maxSteps: 30, totalSteps: 2 });

    const claim = (await claimJob(t.app, owner)).json().data.claim;
    expect(claim.checkpoint.id).toBe(first!.id);
    expect(claim.checkpoint).not.toEqual(latest);

    const next = await postCheckpoint(t.app, owner, job.id, { stepNumber: 2 });
    const stored = await t.app.prisma.checkpoint.findUniqueOrThrow({ where: { expertJobId_id: { expertJobId: job.id, id: next.id } } });
    expect(stored.resumedFromCheckpointId).toBe(first!.id);
    const history = (await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}/checkpoints/`)).json();
    expect(history.meta.total).toBe(3);
  });

  it("accepts multipart/form-data with checkpointId as a field", async () => {
    const { job, checkpoints } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
    const { payload, headers } = await formData([
      ["checkpointId", checkpoints[0]!.id],
      ["query", "From the start"],
      ["maxRetries", "0"],
    ]);
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: `/expert_jobs/${job.id}/resume_from`,
      payload,
      headers,
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().data.expertJob).toMatchObject({ status: "queued", maxRetries: 0, query: "From the start" });
    const row = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
    expect(row.resumeFromCheckpointId).toBe(checkpoints[0]!.id);
  });

  it("lets a later plain continue resume from the latest checkpoint again", async () => {
    const owner = await seedTenant(t.app);
    const { job, checkpoints } = await jobInStatus(t.app, owner, "completed");
    await resume(job.id, { checkpointId: checkpoints[0]!.id, query: "one" }, owner);
    expect((await claimJob(t.app, owner)).json().data.claim.checkpoint.id).toBe(checkpoints[0]!.id);
    expect((await api(t.app, owner.runtimeKey).post(`/expert_jobs/${job.id}`, { status: "failed" })).statusCode).toBe(200);
    const response = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, { query: "two" });
    expect(response.statusCode).toBe(200);
    const claim = (await claimJob(t.app, owner)).json().data.claim;
    expect(claim.checkpoint.id).toBe(checkpoints.at(-1)!.id);
  });
});

describe("continue and resume_from on the real runtime traces", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t.close());

  it("continues the interactive trace after its askUser pause: the claim hands out the paused checkpoint whole, and the rest posts", async () => {
    const owner = await seedTenant(t.app);
    const paused = await replayTrace(t.app, owner, "interactive", { lines: 4 });
    const job = (await api(t.app, owner.clientKey).get(`/expert_jobs/${paused.expertJobId}`)).json().data.expertJob;
    expect(job.status).toBe("requestInteractiveToolResult");
    expect(paused.checkpoints.at(-1)!.action).toMatchObject({ type: "interactiveTool", toolName: "askUser" });

    const continued = await api(t.app, owner.clientKey).post(`/expert_jobs/${paused.expertJobId}/continue`, INTERACTIVE_ANSWER);
    expect(continued.statusCode, continued.body).toBe(200);
    expect(continued.json().data.expertJob).toMatchObject({
      status: "queued",
      query: INTERACTIVE_ANSWER.query,
      interactiveToolCallResult: true,
      totalSteps: 4,
    });
    const claim = (await claimJob(t.app, owner)).json().data.claim;
    expect(claim.expertJob.id).toBe(paused.expertJobId);
    expect(claim.checkpoint).toEqual(paused.checkpoints.at(-1));

    const runtime = api(t.app, owner.runtimeKey);
    for (const line of traceLines("interactive").slice(4)) {
      const response = await runtime.request({
        method: "POST",
        url: `/expert_jobs/${paused.expertJobId}/checkpoints/`,
        headers: { "content-type": "application/json" },
        payload: line,
      });
      expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
      expect(response.json().data.checkpoint.messages).toEqual(JSON.parse(line).checkpoint.messages);
    }
    const done = (await api(t.app, owner.clientKey).get(`/expert_jobs/${paused.expertJobId}`)).json().data.expertJob;
    expect({ status: done.status, totalSteps: done.totalSteps }).toEqual({ status: "completed", totalSteps: 9 });
  });

  it("resumes the 79-step long-research job from step 40: the claim carries that checkpoint's whole conversation, the next one records it", async () => {
    const owner = await seedTenant(t.app);
    const replayed = await replayTrace(t.app, owner, "long-research");
    const from = replayed.checkpoints[39]!;
    expect(JSON.stringify(from.messages).length).toBeGreaterThan(500_000);
    const resumed = await api(t.app, owner.clientKey).post(`/expert_jobs/${replayed.expertJobId}/resume_from`, {
      checkpointId: from.id,
      query: "Summarise only the design documents.",
    });
    expect(resumed.statusCode, resumed.body).toBe(200);
    const claim = (await claimJob(t.app, owner)).json().data.claim;
    expect(claim.checkpoint).toEqual(from);

    // The runtime goes on from step 40's conversation: line 41's body, as a new checkpoint.
    const next = JSON.parse(traceLines("long-research")[40]!);
    next.checkpoint.id = createId();
    const posted = await api(t.app, owner.runtimeKey).post(`/expert_jobs/${replayed.expertJobId}/checkpoints/`, next);
    expect(posted.statusCode, posted.body.slice(0, 300)).toBe(200);
    const stored = await t.app.prisma.checkpoint.findUniqueOrThrow({
      where: { expertJobId_id: { expertJobId: replayed.expertJobId, id: next.checkpoint.id } },
    });
    expect(stored.resumedFromCheckpointId).toBe(from.id);
    expect(stored.seq).toBe(80);
    const got = await api(t.app, owner.clientKey).get(`/expert_jobs/${replayed.expertJobId}/checkpoints/${next.checkpoint.id}`);
    expect(got.json().data.checkpoint.messages).toEqual(next.checkpoint.messages);
    const page = (
      await api(t.app, owner.clientKey).get(`/expert_jobs/${replayed.expertJobId}/checkpoints/?take=5&order=desc&exclude=messages`)
    ).json();
    expect(page.meta.total).toBe(80);
    expect(page.data.checkpoints[0].id).toBe(next.checkpoint.id);
  }, 120_000);
});
