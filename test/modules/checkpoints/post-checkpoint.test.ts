import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import {
  api,
  checkpointBody,
  expertMessage,
  expertRef,
  instructionMessage,
  seedSiblingApplication,
  seedTenant,
  setJobStatus,
  startJob,
  textPart,
  toolCallPart,
  toolResultFor,
  userMessage,
  type Api,
  type Tenant,
} from "../../helpers/fixtures.ts";
import type { ExpertDigest } from "../../../src/schemas/common.ts";

type Body = ReturnType<typeof checkpointBody>;
type Json = Record<string, any>;

const ID = /^[a-z0-9]{24}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const MESSAGE_FIELDS = new Set(["messages", "newMessages", "inputMessages"]);

/** JSON paths holding `null`, outside the message arrays (which carry whatever the runtime posted). */
function nullPaths(value: unknown, path = ""): string[] {
  if (value === null) return [path || "/"];
  if (Array.isArray(value)) return value.flatMap((item, index) => nullPaths(item, `${path}/${index}`));
  if (typeof value === "object") {
    return Object.entries(value as Json).flatMap(([key, item]) =>
      path === "" && MESSAGE_FIELDS.has(key) ? [] : nullPaths(item, `${path}/${key}`),
    );
  }
  return [];
}

describe("POST /expert_jobs/{expertJobId}/checkpoints/", () => {
  let t: TestApp;
  let tenant: Tenant;
  let stranger: Tenant;
  let sibling: Tenant;
  let writer: ExpertDigest;
  let runtime: Api;
  let client: Api;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    stranger = await seedTenant(t.app, { expertName: "@other/bot" });
    sibling = await seedSiblingApplication(t.app, tenant);
    writer = await t.app.admin.registerExpert(tenant.organizationId, { name: "@acme/writer", version: "2.0.0", description: "Writes" });
    runtime = api(t.app, tenant.runtimeKey);
    client = api(t.app, tenant.clientKey);
  });
  afterAll(async () => t.close());

  const newJob = () => startJob(t.app, tenant);
  const post = (jobId: string, body: unknown, as: Api = runtime) => as.post(`/expert_jobs/${jobId}/checkpoints/`, body);
  const rowCount = (jobId: string) => t.app.prisma.checkpoint.count({ where: { expertJobId: jobId } });
  async function jobOf(jobId: string): Promise<Json> {
    const response = await client.get(`/expert_jobs/${jobId}`);
    expect(response.statusCode, response.body).toBe(200);
    return response.json().data.expertJob;
  }
  async function posted(jobId: string, body: unknown): Promise<Json> {
    const response = await post(jobId, body);
    expect(response.statusCode, response.body).toBe(200);
    return response.json().data.checkpoint;
  }

  describe("a stored checkpoint", () => {
    it.each(["/checkpoints/", "/checkpoints"])(
      "is answered on %s as {data:{checkpoint}}, equal to GET, the list and the stream's read",
      async (suffix) => {
        const job = await newJob();
        const body = checkpointBody(tenant, {
          inputMessages: [userMessage("Do it")],
          toolResult: toolResultFor({ id: "call_1", skillName: "search", toolName: "webSearch" }, "3 results"),
          contextWindow: 200_000,
          contextWindowUsage: 0.125,
        });
        const response = await runtime.post(`/expert_jobs/${job.id}${suffix}`, body);
        expect(response.statusCode, response.body).toBe(200);
        expect(response.headers["content-type"]).toMatch(/^application\/json/);
        const json = response.json();
        expect(Object.keys(json)).toEqual(["data"]);
        expect(Object.keys(json.data)).toEqual(["checkpoint"]);
        const checkpoint = json.data.checkpoint;
        expect(checkpoint).toMatchObject({
          type: "checkpoint",
          expertJobId: job.id,
          stepNumber: 1,
          status: "proceeding",
          expert: tenant.expert,
          skillName: "search",
          toolName: "webSearch",
          messages: body.checkpoint.messages,
          inputMessages: body.step.inputMessages,
          newMessages: body.step.newMessages,
          toolCall: body.step.toolCall,
          toolResult: body.step.toolResult,
          usage: body.checkpoint.usage,
          contextWindow: 200_000,
          contextWindowUsage: 0.125,
          action: {
            type: "generalTool",
            skillName: "search",
            toolName: "webSearch",
            args: { q: "x" },
            result: body.step.toolResult!.result,
          },
        });

        const got = await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`);
        expect(got.statusCode).toBe(200);
        expect(got.json().data.checkpoint).toEqual(checkpoint);
        // The post splices the conversation's JSON text into its answer; GET serialises by schema: same bytes.
        expect(got.body).toBe(response.body);
        const listed = await client.get(`/expert_jobs/${job.id}/checkpoints/`);
        expect(listed.json().data.checkpoints).toEqual([checkpoint]);
        const streamed = await t.app.checkpoints.listAfter(job.id, 0, 10);
        expect(streamed.map((event) => JSON.parse(JSON.stringify(event.checkpoint)))).toEqual([checkpoint]);
      },
    );

    it("keeps checkpoint.id and checkpoint.runId when the runtime sends them", async () => {
      const job = await newJob();
      const id = createId();
      const runId = createId();
      const checkpoint = await posted(job.id, checkpointBody(tenant, { id, runId }));
      expect(checkpoint.id).toBe(id);
      expect(checkpoint.runId).toBe(runId);
      expect((await client.get(`/expert_jobs/${job.id}/checkpoints/${id}`)).json().data.checkpoint.runId).toBe(runId);
    });

    it("generates 24-character [a-z0-9] ids when checkpoint.id and checkpoint.runId are absent", async () => {
      const job = await newJob();
      const first = await posted(job.id, checkpointBody(tenant, { stepNumber: 1 }));
      const second = await posted(job.id, checkpointBody(tenant, { stepNumber: 2 }));
      for (const checkpoint of [first, second]) {
        expect(checkpoint.id).toMatch(ID);
        expect(checkpoint.runId).toMatch(ID);
      }
      expect(second.id).not.toBe(first.id);
      expect(await rowCount(job.id)).toBe(2);
    });

    it("always carries contextWindow and contextWindowUsage, 0 when the runtime did not report them", async () => {
      const job = await newJob();
      const checkpoint = await posted(job.id, checkpointBody(tenant));
      expect(checkpoint.contextWindow).toBe(0);
      expect(checkpoint.contextWindowUsage).toBe(0);
      const got = (await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).json().data.checkpoint;
      expect(got).toHaveProperty("contextWindow", 0);
      expect(got).toHaveProperty("contextWindowUsage", 0);
    });

    it("omits absent optional fields instead of sending null", async () => {
      const job = await newJob();
      const body: Json = checkpointBody(tenant, { newMessages: [expertMessage(textPart("thinking"))] });
      delete body.step.toolCall;
      delete body.step.finishedAt;
      const checkpoint = await posted(job.id, body);
      for (const field of ["skillName", "toolName", "delegateTo", "delegatedBy", "inputMessages", "toolCall", "toolResult", "finishedAt"]) {
        expect(checkpoint, field).not.toHaveProperty(field);
      }
      expect(nullPaths(checkpoint)).toEqual([]);
      const got = (await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).json().data.checkpoint;
      expect(nullPaths(got)).toEqual([]);
      expect(got).toEqual(checkpoint);
    });

    it("sends no null anywhere outside the messages of a checkpoint with every optional field", async () => {
      const job = await newJob();
      const parent = await posted(job.id, checkpointBody(tenant, { stepNumber: 1 }));
      const toolCall = { id: "call_2", skillName: "search", toolName: "webSearch", args: { q: "y" } };
      const body = checkpointBody(tenant, {
        stepNumber: 2,
        toolCall,
        toolResult: toolResultFor(toolCall, "ok"),
        inputMessages: [userMessage("go"), null],
        messages: [instructionMessage("You help."), null, userMessage("go")],
        newMessages: [null, expertMessage(toolCallPart("call_2", "webSearch", { q: "y" }))],
        delegatedBy: { expert: expertRef(tenant.expert), toolCallId: "call_p", toolName: "helper", checkpointId: parent.id },
        contextWindow: 1000,
        contextWindowUsage: 0.5,
      });
      const checkpoint = await posted(job.id, body);
      expect(checkpoint.messages).toEqual(body.checkpoint.messages);
      expect(checkpoint.newMessages).toEqual(body.step.newMessages);
      expect(checkpoint.inputMessages).toEqual(body.step.inputMessages);
      expect(checkpoint.delegatedBy).toEqual({ expert: tenant.expert, toolCallId: "call_p", toolName: "helper", checkpointId: parent.id });
      expect(nullPaths(checkpoint)).toEqual([]);
      expect(nullPaths((await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).json().data.checkpoint)).toEqual([]);
    });

    it("answers timestamps as ISO-8601 strings, step times converted from epoch milliseconds", async () => {
      const job = await newJob();
      const checkpoint = await posted(job.id, checkpointBody(tenant, { startedAt: 1_766_570_410_123, finishedAt: 1_766_570_412_500 }));
      expect(checkpoint.startedAt).toBe("2025-12-24T10:00:10.123Z");
      expect(checkpoint.finishedAt).toBe("2025-12-24T10:00:12.500Z");
      for (const value of [checkpoint.expert.createdAt, checkpoint.expert.updatedAt, checkpoint.expert.owner.createdAt]) {
        expect(value).toMatch(ISO);
      }
    });
    it("accepts step times up to the last millisecond of the year 9999 and reads them back", async () => {
      const job = await newJob();
      const checkpoint = await posted(job.id, checkpointBody(tenant, { startedAt: 0, finishedAt: 253_402_300_799_999 }));
      expect(checkpoint.startedAt).toBe("1970-01-01T00:00:00.000Z");
      expect(checkpoint.finishedAt).toBe("9999-12-31T23:59:59.999Z");
      const listed = await client.get(`/expert_jobs/${job.id}/checkpoints/`);
      expect(listed.statusCode).toBe(200);
      expect(listed.json().data.checkpoints).toEqual([checkpoint]);
      expect((await jobOf(job.id)).totalDuration).toBe(253_402_300_799_999);
    });

    it("stores tool calls and results carrying U+0000 as posted, the derived action too", async () => {
      const job = await newJob();
      const toolCall = { id: "call_nul", skillName: "shell", toolName: "exec", args: { command: "cat blob\u0000.bin" } };
      const toolResult = toolResultFor(toolCall, "head\u0000tail");
      const body = checkpointBody(tenant, { toolCall, toolResult, messages: [userMessage("nul \u0000 inside")] });
      const checkpoint = await posted(job.id, body);
      expect(checkpoint.toolCall).toEqual(toolCall);
      expect(checkpoint.toolResult).toEqual(toolResult);
      expect(checkpoint.messages).toEqual(body.checkpoint.messages);
      expect(checkpoint.action).toMatchObject({
        type: "generalTool",
        args: { command: "cat blob\u0000.bin" },
        result: [{ text: "head\u0000tail" }],
      });
      expect((await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).json().data.checkpoint).toEqual(checkpoint);
    });

    it("stores tool names and a delegate query carrying U+0000 as posted instead of failing", async () => {
      const job = await newJob();
      const toolCall = { id: "call_nul", skillName: "sh\u0000ell", toolName: "ex\u0000ec", args: {} };
      const first = await post(job.id, checkpointBody(tenant, { stepNumber: 1, toolCall }));
      expect(first.statusCode, first.body).toBe(200);
      expect(first.json().data.checkpoint).toMatchObject({ toolCall, skillName: "sh\u0000ell", toolName: "ex\u0000ec" });
      const delegateTo = { expert: expertRef(writer), toolCallId: "call\u0000d", toolName: "@acme/writer", query: "Write\u0000" };
      const second = await post(job.id, checkpointBody(tenant, { stepNumber: 2, status: "stoppedByDelegate", delegateTo }));
      expect(second.statusCode, second.body).toBe(200);
      expect(second.json().data.checkpoint.delegateTo.toolCallId).toBe("call\u0000d");
      expect(second.json().data.checkpoint.action).toMatchObject({ type: "delegate", query: "Write\u0000" });
    });

    it("resolves an expert posted by bare name or tag to its registered version", async () => {
      const job = await newJob();
      const bare = await posted(job.id, checkpointBody(tenant, { stepNumber: 1, expertKey: "@acme/helper" }));
      const tagged = await posted(job.id, checkpointBody(tenant, { stepNumber: 2, expertKey: "@acme/helper@latest" }));
      expect(bare.expert).toEqual(tenant.expert);
      expect(tagged.expert).toEqual(tenant.expert);
    });

    it("keeps only the five usage counters of the checkpoint's usage", async () => {
      const job = await newJob();
      const body = checkpointBody(tenant, { totalTokens: 321 });
      Object.assign(body.checkpoint.usage, { costUsd: 0.12, note: "free text \u0000" });
      const checkpoint = await posted(job.id, body);
      const counters = { inputTokens: 321, outputTokens: 0, reasoningTokens: 0, totalTokens: 321, cachedInputTokens: 0 };
      expect(checkpoint.usage).toEqual(counters);
      expect((await jobOf(job.id)).usage).toEqual(counters);
      const row = await t.app.prisma.checkpoint.findUniqueOrThrow({
        where: { expertJobId_id: { expertJobId: job.id, id: checkpoint.id } },
      });
      expect(row.usage).toEqual(counters);
    });
  });

  describe("errors", () => {
    it.each([
      ["no Authorization header", undefined],
      ["a non-Bearer scheme", `Basic ${Buffer.from("a:b").toString("base64")}`],
      ["a malformed key", "Bearer not-a-key"],
      ["an unknown key", `Bearer ejk_${createId()}_${"A".repeat(43)}`],
    ])("answers 401 to %s", async (_name, authorization) => {
      const job = await newJob();
      const response = await t.app.inject({
        method: "POST",
        url: `/api/studio/v1/expert_jobs/${job.id}/checkpoints/`,
        headers: authorization === undefined ? {} : { authorization },
        payload: checkpointBody(tenant),
      });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
      expect(await rowCount(job.id)).toBe(0);
    });

    it("answers 401 to a revoked runtime key", async () => {
      const job = await newJob();
      const key = await t.app.admin.createApiKey(tenant.applicationId, "runtime");
      await t.app.admin.revokeApiKey(key.id);
      const response = await post(job.id, checkpointBody(tenant), api(t.app, key.key));
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
    });

    it("answers 401 before 422 when a request with a bad path id has no key", async () => {
      const response = await t.app.inject({ method: "POST", url: "/api/studio/v1/expert_jobs/nope/checkpoints/", payload: {} });
      expect(response.statusCode).toBe(401);
    });

    it("answers 403 to a client key and stores nothing", async () => {
      const job = await newJob();
      const response = await post(job.id, checkpointBody(tenant), client);
      expect(response.statusCode).toBe(403);
      expect(response.json()).toEqual({ code: 403, error: "Forbidden", reason: expect.any(String) });
      expect(await rowCount(job.id)).toBe(0);
      expect((await jobOf(job.id)).status).toBe("queued");
    });

    it.each([
      ["too short", "abc"],
      ["25 characters long", "a".repeat(25)],
      ["upper case", "A".repeat(24)],
      ["carrying a dash", `${"a".repeat(23)}-`],
    ])("answers 422 to a path job id that is %s", async (_name, badId) => {
      const response = await post(badId, checkpointBody(tenant));
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({
        code: 422,
        error: "Validation Failed",
        reason: [{ path: "/expertJobId", message: expect.any(String) }],
      });
    });

    const badBodies: Array<[string, (body: Json) => unknown, string]> = [
      ["no body at all", () => undefined, "/"],
      ["a JSON array instead of an object", (body) => [body], "/"],
      ["no checkpoint", (body) => ({ step: body.step }), "/checkpoint"],
      ["no step", (body) => ({ checkpoint: body.checkpoint }), "/step"],
      ["no checkpoint.status", (body) => (delete body.checkpoint.status, body), "/checkpoint/status"],
      ["an unknown checkpoint.status", (body) => ((body.checkpoint.status = "paused"), body), "/checkpoint/status"],
      ["checkpoint.status wrapped in an array", (body) => ((body.checkpoint.status = ["completed"]), body), "/checkpoint/status"],
      ["checkpoint.messages null", (body) => ((body.checkpoint.messages = null), body), "/checkpoint/messages"],
      ["checkpoint.messages as a string", (body) => ((body.checkpoint.messages = "hello"), body), "/checkpoint/messages"],
      ["checkpoint.stepNumber as a numeric string", (body) => ((body.checkpoint.stepNumber = "2"), body), "/checkpoint/stepNumber"],
      ["a fractional checkpoint.stepNumber", (body) => ((body.checkpoint.stepNumber = 1.5), body), "/checkpoint/stepNumber"],
      ["a negative checkpoint.stepNumber", (body) => ((body.checkpoint.stepNumber = -1), body), "/checkpoint/stepNumber"],
      ["no checkpoint.expert", (body) => (delete body.checkpoint.expert, body), "/checkpoint/expert"],
      ["an empty checkpoint.expert.key", (body) => ((body.checkpoint.expert.key = ""), body), "/checkpoint/expert/key"],
      ["no checkpoint.usage", (body) => (delete body.checkpoint.usage, body), "/checkpoint/usage"],
      ["a negative usage count", (body) => ((body.checkpoint.usage.totalTokens = -1), body), "/checkpoint/usage/totalTokens"],
      ["a checkpoint.id that is not an id", (body) => ((body.checkpoint.id = "Checkpoint-1"), body), "/checkpoint/id"],
      ["a checkpoint.runId of 23 characters", (body) => ((body.checkpoint.runId = "a".repeat(23)), body), "/checkpoint/runId"],
      ["a negative contextWindow", (body) => ((body.checkpoint.contextWindow = -1), body), "/checkpoint/contextWindow"],
      [
        "delegateTo without query",
        (body) => ((body.checkpoint.delegateTo = { expert: body.checkpoint.expert, toolCallId: "c", toolName: "t" }), body),
        "/checkpoint/delegateTo/query",
      ],
      [
        "delegatedBy without checkpointId",
        (body) => ((body.checkpoint.delegatedBy = { expert: body.checkpoint.expert, toolCallId: "c", toolName: "t" }), body),
        "/checkpoint/delegatedBy/checkpointId",
      ],
      ["no step.newMessages", (body) => (delete body.step.newMessages, body), "/step/newMessages"],
      ["step.inputMessages as an object", (body) => ((body.step.inputMessages = { a: 1 }), body), "/step/inputMessages"],
      ["no step.startedAt", (body) => (delete body.step.startedAt, body), "/step/startedAt"],
      ["step.startedAt as a date string", (body) => ((body.step.startedAt = "2025-12-24T10:00:00Z"), body), "/step/startedAt"],
      ["a negative step.finishedAt", (body) => ((body.step.finishedAt = -5), body), "/step/finishedAt"],
      ["step.finishedAt in the year 10000", (body) => ((body.step.finishedAt = 253_402_300_800_000), body), "/step/finishedAt"],
      ["step.startedAt in epoch microseconds", (body) => ((body.step.startedAt = 1_766_570_400_000_000), body), "/step/startedAt"],
      ["step.toolCall.args as an array", (body) => ((body.step.toolCall.args = ["q"]), body), "/step/toolCall/args"],
      [
        "step.toolResult without result",
        (body) => ((body.step.toolResult = { id: "c", skillName: "s", toolName: "t" }), body),
        "/step/toolResult/result",
      ],
    ];
    it.each(badBodies)("answers 422 with a {path, message} list to a body with %s", async (_name, mutate, path) => {
      const job = await newJob();
      const body = mutate(structuredClone(checkpointBody(tenant)) as Json);
      const response = await runtime.request({
        method: "POST",
        url: `/expert_jobs/${job.id}/checkpoints/`,
        headers: { "content-type": "application/json" },
        ...(body !== undefined && { payload: JSON.stringify(body) }),
      });
      expect(response.statusCode, response.body).toBe(422);
      const json = response.json();
      expect(json).toMatchObject({ code: 422, error: "Validation Failed" });
      expect(Array.isArray(json.reason)).toBe(true);
      for (const issue of json.reason) expect(issue).toEqual({ path: expect.any(String), message: expect.any(String) });
      expect(json.reason.map((issue: Json) => issue.path)).toContain(path);
      expect(await rowCount(job.id)).toBe(0);
    });

    it("answers 400 to malformed JSON", async () => {
      const job = await newJob();
      const response = await runtime.request({
        method: "POST",
        url: `/expert_jobs/${job.id}/checkpoints/`,
        headers: { "content-type": "application/json" },
        payload: '{"checkpoint": {',
      });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: expect.any(String) });
    });

    it("answers 404 Expert job not found to an unknown job id", async () => {
      const response = await post(createId(), checkpointBody(tenant));
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
    });

    it.each([
      ["another organization's application", () => stranger],
      ["another application of the same organization", () => sibling],
    ])("answers 404 Expert job not found to the runtime key of %s", async (_name, owner) => {
      const job = await newJob();
      const response = await post(job.id, checkpointBody(tenant), api(t.app, owner().runtimeKey));
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
      expect(await rowCount(job.id)).toBe(0);
    });

    it("answers 404 before 400 when both the job and the expert are unknown", async () => {
      const response = await post(createId(), checkpointBody(tenant, { expertKey: "@acme/nobody@1.0.0" }));
      expect(response.statusCode).toBe(404);
    });

    const unknownExperts: Array<[string, (body: Json, key: string) => void]> = [
      ["checkpoint.expert.key", (body, key) => (body.checkpoint.expert = { key, name: "x", version: "1.0.0" })],
      [
        "checkpoint.delegateTo.expert.key",
        (body, key) => {
          body.checkpoint.status = "stoppedByDelegate";
          body.checkpoint.delegateTo = { expert: { key, name: "x", version: "1.0.0" }, toolCallId: "call_d", toolName: "x", query: "q" };
        },
      ],
      [
        "checkpoint.delegatedBy.expert.key",
        (body, key) =>
          (body.checkpoint.delegatedBy = {
            expert: { key, name: "x", version: "1.0.0" },
            toolCallId: "c",
            toolName: "t",
            checkpointId: createId(),
          }),
      ],
    ];
    describe.each(unknownExperts)("when %s does not resolve", (_field, mutate) => {
      it.each([
        ["an unregistered key", () => "@acme/nobody@1.0.0"],
        ["an unregistered version", () => "@acme/helper@9.9.9"],
        ["an unknown tag", () => "@acme/helper@stable"],
        ["another organization's expert", () => stranger.expert.key],
        ["a key that is not an expert key", () => "Not A Key"],
      ])("answers 400 Expert not found to %s and leaves the job alone", async (_name, key) => {
        const job = await newJob();
        const body = structuredClone(checkpointBody(tenant)) as Json;
        mutate(body, key());
        const before = await jobOf(job.id);
        const response = await post(job.id, body);
        expect(response.statusCode, response.body).toBe(400);
        expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Expert not found" });
        expect(await rowCount(job.id)).toBe(0);
        expect(await jobOf(job.id)).toEqual(before);
      });
    });

    it.each(["canceled", "expired", "completed", "failed", "requestInteractiveToolResult", "exceededMaxSteps"])(
      "answers 409 Conflict and stores nothing when the job is %s",
      async (status) => {
        const job = await newJob();
        await setJobStatus(t.app, job.id, status);
        const before = await jobOf(job.id);
        const response = await post(job.id, checkpointBody(tenant, { id: createId() }));
        expect(response.statusCode, response.body).toBe(409);
        expect(response.json()).toEqual({ code: 409, error: "Conflict", reason: expect.any(String) });
        expect(await rowCount(job.id)).toBe(0);
        expect(await t.app.prisma.jobMessage.count({ where: { expertJobId: job.id } })).toBe(0);
        expect(await jobOf(job.id)).toEqual(before);
      },
    );

    it("stores a checkpoint posted to a canceling job, then marks the job canceled", async () => {
      const job = await newJob();
      await posted(job.id, checkpointBody(tenant, { stepNumber: 1 }));
      await setJobStatus(t.app, job.id, "canceling");
      const checkpoint = await posted(job.id, checkpointBody(tenant, { stepNumber: 2 }));
      expect(checkpoint.stepNumber).toBe(2);
      const after = await jobOf(job.id);
      expect(after).toMatchObject({ status: "canceled", currentStep: 2, totalSteps: 2 });
      expect(await rowCount(job.id)).toBe(2);
      const row = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
      expect(row.leaseExpiresAt).toBeNull();
      const late = await post(job.id, checkpointBody(tenant, { stepNumber: 3 }));
      expect(late.statusCode).toBe(409);
    });
  });

  describe("idempotency", () => {
    it("answers a re-post of the same id and content with the stored checkpoint, adding no row and touching no counter", async () => {
      const job = await newJob();
      const body = checkpointBody(tenant, { id: createId(), stepNumber: 1 });
      const first = await posted(job.id, body);
      const jobBefore = await jobOf(job.id);
      const rowBefore = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
      const again = await posted(job.id, structuredClone(body));
      expect(again).toEqual(first);
      expect(await rowCount(job.id)).toBe(1);
      expect(await jobOf(job.id)).toEqual(jobBefore);
      const rowAfter = await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
      expect(rowAfter.lastSeq).toBe(rowBefore.lastSeq);
      expect(rowAfter.updatedAt).toEqual(rowBefore.updatedAt);
    });

    it("answers a re-post of the final checkpoint with 200 although the job has stopped since", async () => {
      const job = await newJob();
      const body = checkpointBody(tenant, { id: createId(), status: "completed" });
      const first = await posted(job.id, body);
      expect((await jobOf(job.id)).status).toBe("completed");
      const again = await post(job.id, body);
      expect(again.statusCode).toBe(200);
      expect(again.json().data.checkpoint).toEqual(first);
      expect(await rowCount(job.id)).toBe(1);
    });

    it("answers 409 to the same id with different content and keeps the stored checkpoint", async () => {
      const job = await newJob();
      const id = createId();
      const first = await posted(job.id, checkpointBody(tenant, { id, stepNumber: 1, totalTokens: 100 }));
      const jobBefore = await jobOf(job.id);
      const response = await post(job.id, checkpointBody(tenant, { id, stepNumber: 1, totalTokens: 999 }));
      expect(response.statusCode).toBe(409);
      expect(response.json()).toEqual({ code: 409, error: "Conflict", reason: expect.any(String) });
      expect(await rowCount(job.id)).toBe(1);
      expect((await client.get(`/expert_jobs/${job.id}/checkpoints/${id}`)).json().data.checkpoint).toEqual(first);
      expect(await jobOf(job.id)).toEqual(jobBefore);
    });
  });

  describe("concurrent posts", () => {
    it("commits concurrent checkpoints of one job one after another, counting every step", async () => {
      const job = await newJob();
      const bodies = Array.from({ length: 8 }, (_, index) =>
        checkpointBody(tenant, { stepNumber: index + 1, startedAt: 5_000_000 + index * 10_000, finishedAt: 5_001_000 + index * 10_000 }),
      );
      const responses = await Promise.all(bodies.map((body) => post(job.id, body)));
      for (const response of responses) expect(response.statusCode, response.body).toBe(200);
      const rows = await t.app.prisma.checkpoint.findMany({ where: { expertJobId: job.id }, orderBy: { seq: "asc" } });
      expect(rows.map((row) => row.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(await jobOf(job.id)).toMatchObject({ totalSteps: 8, totalDuration: 8000 });
      expect((await t.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } })).lastSeq).toBe(8);
      for (const [index, response] of responses.entries()) {
        const id = response.json().data.checkpoint.id;
        const got = (await client.get(`/expert_jobs/${job.id}/checkpoints/${id}`)).json().data.checkpoint;
        expect(got.messages).toEqual(bodies[index]!.checkpoint.messages);
      }
    });

    it("stores one row for concurrent re-posts of the same checkpoint", async () => {
      const job = await newJob();
      const body = checkpointBody(tenant, { id: createId() });
      const responses = await Promise.all(Array.from({ length: 5 }, () => post(job.id, body)));
      for (const response of responses) expect(response.statusCode, response.body).toBe(200);
      const first = responses[0]!.json().data.checkpoint;
      for (const response of responses) expect(response.json().data.checkpoint).toEqual(first);
      expect(await rowCount(job.id)).toBe(1);
      expect(await jobOf(job.id)).toMatchObject({ totalSteps: 1, currentStep: 1 });
    });
  });

  describe("job status after a checkpoint (SPEC §6)", () => {
    const table: Array<[string, boolean, string]> = [
      ["init", false, "processing"],
      ["proceeding", false, "processing"],
      ["completed", false, "completed"],
      ["completed", true, "processing"],
      ["stoppedByInteractiveTool", false, "requestInteractiveToolResult"],
      ["stoppedByDelegate", false, "requestDelegateResult"],
      ["stoppedByExceededMaxSteps", false, "exceededMaxSteps"],
      ["stoppedByError", false, "failed"],
    ];
    it.each(table)("checkpoint %s (delegatedBy: %s) puts the job in %s", async (status, delegated, jobStatus) => {
      const job = await newJob();
      const body = checkpointBody(tenant, {
        status,
        ...(status === "stoppedByDelegate" && {
          delegateTo: { expert: expertRef(writer), toolCallId: "call_d", toolName: "@acme/writer", query: "Write" },
        }),
        ...(delegated && {
          delegatedBy: { expert: expertRef(writer), toolCallId: "call_d", toolName: "@acme/helper", checkpointId: createId() },
        }),
      });
      const checkpoint = await posted(job.id, body);
      expect(checkpoint.status).toBe(status);
      expect((await jobOf(job.id)).status).toBe(jobStatus);
    });

    it("follows a delegation: parent stops, the delegate's checkpoints keep it running, the parent completes it", async () => {
      const job = await newJob();
      const parent = await posted(
        job.id,
        checkpointBody(tenant, {
          stepNumber: 1,
          status: "stoppedByDelegate",
          delegateTo: { expert: expertRef(writer), toolCallId: "call_d", toolName: "@acme/writer", query: "Write" },
        }),
      );
      expect((await jobOf(job.id)).status).toBe("requestDelegateResult");
      const delegatedBy = { expert: expertRef(tenant.expert), toolCallId: "call_d", toolName: "@acme/writer", checkpointId: parent.id };
      for (const [stepNumber, status] of [
        [2, "proceeding"],
        [3, "completed"],
      ] as const) {
        const checkpoint = await posted(job.id, checkpointBody(tenant, { stepNumber, status, expertKey: writer.key, delegatedBy }));
        expect(checkpoint.expert).toEqual(writer);
        expect((await jobOf(job.id)).status).toBe("processing");
      }
      await posted(job.id, checkpointBody(tenant, { stepNumber: 4, status: "completed" }));
      expect((await jobOf(job.id)).status).toBe("completed");
    });
  });

  describe("job counters", () => {
    it("sets currentStep and usage from the latest checkpoint and adds up steps and durations", async () => {
      const job = await newJob();
      expect(await jobOf(job.id)).toMatchObject({ currentStep: 0, totalSteps: 0, totalDuration: 0 });

      await posted(job.id, checkpointBody(tenant, { stepNumber: 1, totalTokens: 100, startedAt: 1_000_000, finishedAt: 1_002_000 }));
      expect(await jobOf(job.id)).toMatchObject({ currentStep: 1, totalSteps: 1, totalDuration: 2000, usage: { totalTokens: 100 } });

      const second = checkpointBody(tenant, { stepNumber: 2, totalTokens: 250, startedAt: 2_000_000, finishedAt: 2_003_500 });
      second.checkpoint.usage = { inputTokens: 200, outputTokens: 40, reasoningTokens: 7, totalTokens: 250, cachedInputTokens: 3 };
      await posted(job.id, second);
      expect(await jobOf(job.id)).toMatchObject({ currentStep: 2, totalSteps: 2, totalDuration: 5500, usage: second.checkpoint.usage });

      const unfinished: Json = checkpointBody(tenant, { stepNumber: 3, totalTokens: 400, startedAt: 3_000_000 });
      delete unfinished.step.finishedAt;
      await posted(job.id, unfinished);
      expect(await jobOf(job.id)).toMatchObject({ currentStep: 3, totalSteps: 3, totalDuration: 5500, usage: { totalTokens: 400 } });
    });

    it("takes currentStep from the checkpoint's step number, not from the count of checkpoints", async () => {
      const job = await newJob();
      await posted(job.id, checkpointBody(tenant, { stepNumber: 7 }));
      await posted(job.id, checkpointBody(tenant, { stepNumber: 8 }));
      expect(await jobOf(job.id)).toMatchObject({ currentStep: 8, totalSteps: 2 });
    });
  });

  describe("action", () => {
    const retryText = JSON.stringify({ error: "Error: No tool call generated", message: "You must generate a tool call. Try again." });
    const readCall = { id: "call_r", skillName: "@perstack/base", toolName: "readTextFile", args: { path: "notes.md" } };
    const askCall = { id: "call_a", skillName: "ui", toolName: "askUser", args: { question: "Which file?" } };
    const cases: Array<[string, () => { body: Body; expected: Json }]> = [
      ["init", () => ({ body: checkpointBody(tenant, { status: "init" }), expected: { type: "init" } })],
      [
        "retry (no tool call)",
        () => {
          const body = checkpointBody(tenant, { newMessages: [userMessage(retryText)] });
          delete (body.step as Json).toolCall;
          return {
            body,
            expected: { type: "retry", error: "Error: No tool call generated", message: "You must generate a tool call. Try again." },
          };
        },
      ],
      [
        "readTextFile through @perstack/base",
        () => ({
          body: checkpointBody(tenant, {
            toolCall: readCall,
            toolResult: toolResultFor(readCall, JSON.stringify({ path: "notes.md", content: "# Notes", from: 1, to: 3 })),
          }),
          expected: { type: "readTextFile", path: "notes.md", content: "# Notes", from: 1, to: 3 },
        }),
      ],
      [
        "delegate (the ExpertDigest shape)",
        () => ({
          body: checkpointBody(tenant, {
            status: "stoppedByDelegate",
            delegateTo: { expert: expertRef(writer), toolCallId: "call_d", toolName: "@acme/writer", query: "Write the summary" },
          }),
          expected: { type: "delegate", delegateTo: writer, query: "Write the summary" },
        }),
      ],
      [
        "interactiveTool",
        () => ({
          body: checkpointBody(tenant, { status: "stoppedByInteractiveTool", toolCall: askCall }),
          expected: { type: "interactiveTool", skillName: "ui", toolName: "askUser", args: { question: "Which file?" } },
        }),
      ],
    ];
    it.each(cases)("derives, stores and returns the action of a %s checkpoint", async (_name, build) => {
      const { body, expected } = build();
      const job = await newJob();
      const checkpoint = await posted(job.id, body);
      expect(checkpoint.action).toEqual(expected);
      const row = await t.app.prisma.checkpoint.findUniqueOrThrow({
        where: { expertJobId_id: { expertJobId: job.id, id: checkpoint.id } },
      });
      expect(row.action).toEqual(expected);
      expect((await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).json().data.checkpoint.action).toEqual(expected);
    });

    it("answers delegateTo as {expert, toolCallId, toolName} without the query", async () => {
      const job = await newJob();
      const checkpoint = await posted(
        job.id,
        checkpointBody(tenant, {
          status: "stoppedByDelegate",
          delegateTo: { expert: expertRef(writer), toolCallId: "call_d", toolName: "@acme/writer", query: "Write" },
        }),
      );
      expect(checkpoint.delegateTo).toEqual({ expert: writer, toolCallId: "call_d", toolName: "@acme/writer" });
    });
  });
});
