import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH } from "../../../src/lib/json-limits.ts";
import { startTestApp, ADMIN_TOKEN, type TestApp } from "../../helpers/app.ts";
import { databaseDigest } from "../../helpers/database-digest.ts";
import { openSse } from "../../helpers/sse.ts";
import {
  api,
  checkpointBody,
  expertMessage,
  expertRef,
  seedTenant,
  startJob,
  textPart,
  toolResultFor,
  userMessage,
  type Api,
  type Tenant,
} from "../../helpers/fixtures.ts";

type Json = Record<string, any>;

/** A cut-off emoji (a high surrogate alone), a low surrogate before a high one, and U+0000: runtime output Postgres' `jsonb` and `text` refuse. */
const LONE = "cut off \ud83d";
const REVERSED = "\udc00\ud83d backwards";
const NUL = "a\u0000b";

/** The body as JSON text with `"__RAW__"` replaced by raw JSON (numbers JSON.stringify cannot write, repeated keys). */
const withRaw = (body: unknown, raw: string) => JSON.stringify(body).replace('"__RAW__"', raw);

/** `levels` nested arrays, as JSON text (JSON.stringify itself overflows the stack on thousands of levels). */
const nestedText = (levels: number) => "[".repeat(levels) + '"bottom"' + "]".repeat(levels);
const nested = (levels: number): unknown => JSON.parse(nestedText(levels));

let t: TestApp;
let tenant: Tenant;
let runtime: Api;
let client: Api;

beforeAll(async () => {
  t = await startTestApp();
  tenant = await seedTenant(t.app);
  runtime = api(t.app, tenant.runtimeKey);
  client = api(t.app, tenant.clientKey);
});
afterAll(async () => t.close());

describe("text Postgres cannot hold as it is, in a checkpoint: stored and answered exactly as posted", () => {
  /** Posts, then reads it back by id and in the list: all three must carry the same checkpoint; then the job takes its next step. */
  async function postAndReadBack(jobId: string, body: Json): Promise<Json> {
    const posted = await runtime.post(`/expert_jobs/${jobId}/checkpoints/`, body);
    expect(posted.statusCode, posted.body).toBe(200);
    const checkpoint = posted.json().data.checkpoint;
    const got = await client.get(`/expert_jobs/${jobId}/checkpoints/${checkpoint.id}`);
    expect(got.body).toBe(posted.body);
    const listed = await client.get(`/expert_jobs/${jobId}/checkpoints?take=100`);
    expect(listed.json().data.checkpoints.find((item: Json) => item.id === checkpoint.id)).toEqual(checkpoint);
    return checkpoint;
  }

  async function expectNextStepPosts(jobId: string, stepNumber: number) {
    const next = await runtime.post(`/expert_jobs/${jobId}/checkpoints/`, checkpointBody(tenant, { stepNumber }));
    expect(next.statusCode, next.body).toBe(200);
  }

  it.each([LONE, REVERSED, NUL])(
    "in toolCall.args, toolResult.result and the tool's names (%j): the generalTool action keeps them",
    async (text) => {
      const job = await startJob(t.app, tenant);
      const toolCall = { id: "call_1", skillName: `skill ${text}`, toolName: `tool ${text}`, args: { q: text, [text]: [text] } };
      const body = checkpointBody(tenant, { toolCall, toolResult: toolResultFor(toolCall, `result ${text}`) });
      const checkpoint = await postAndReadBack(job.id, body);
      expect(checkpoint.toolCall).toEqual(toolCall);
      expect(checkpoint.skillName).toBe(toolCall.skillName);
      expect(checkpoint.toolName).toBe(toolCall.toolName);
      expect(checkpoint.toolResult.result).toEqual(body.step.toolResult!.result);
      expect(checkpoint.action).toEqual({
        type: "generalTool",
        skillName: toolCall.skillName,
        toolName: toolCall.toolName,
        args: toolCall.args,
        result: body.step.toolResult!.result,
      });
      // The list's filter still finds it by the rest of the name.
      const found = await client.get(`/expert_jobs/${job.id}/checkpoints?filter=skill`);
      expect(found.json().data.checkpoints.map((item: Json) => item.id)).toEqual([checkpoint.id]);
      await expectNextStepPosts(job.id, 2);
    },
  );

  it.each([LONE, NUL])("in delegateTo (query, tool call id and name) and delegatedBy (%j)", async (text) => {
    const job = await startJob(t.app, tenant);
    const delegateTo = {
      expert: expertRef(tenant.expert),
      toolCallId: `call ${text}`,
      toolName: `helper ${text}`,
      query: `Sub task ${text}`,
    };
    const delegating = await postAndReadBack(job.id, checkpointBody(tenant, { status: "stoppedByDelegate", delegateTo }));
    expect(delegating.delegateTo).toMatchObject({ toolCallId: delegateTo.toolCallId, toolName: delegateTo.toolName });
    expect(delegating.action).toEqual({ type: "delegate", delegateTo: tenant.expert, query: delegateTo.query });

    const delegatedBy = {
      expert: expertRef(tenant.expert),
      toolCallId: `call ${text}`,
      toolName: `helper ${text}`,
      checkpointId: `cp ${text}`,
    };
    const returning = await postAndReadBack(job.id, checkpointBody(tenant, { stepNumber: 2, status: "completed", delegatedBy }));
    expect(returning.delegatedBy).toMatchObject({
      toolCallId: delegatedBy.toolCallId,
      toolName: delegatedBy.toolName,
      checkpointId: delegatedBy.checkpointId,
    });
    expect(returning.delegatedBy.expert).toEqual(tenant.expert);
    await expectNextStepPosts(job.id, 3);
  });

  it.each([LONE, NUL])("in the text a retry or attemptCompletion action is derived from (%j)", async (text) => {
    const job = await startJob(t.app, tenant);
    const retryMessage = expertMessage(textPart(JSON.stringify({ error: `error ${text}`, message: `message ${text}` })));
    const retry = await postAndReadBack(job.id, {
      ...checkpointBody(tenant, { newMessages: [retryMessage] }),
      step: { ...checkpointBody(tenant, { newMessages: [retryMessage] }).step, toolCall: undefined },
    });
    expect(retry.action).toEqual({ type: "retry", error: `error ${text}`, message: `message ${text}` });

    const completion = { id: "call_done", skillName: "@perstack/base", toolName: "attemptCompletion", args: {} };
    const last = expertMessage(textPart(`All done ${text}`));
    const completed = await postAndReadBack(
      job.id,
      checkpointBody(tenant, {
        stepNumber: 2,
        status: "completed",
        toolCall: completion,
        toolResult: toolResultFor(completion, "ok"),
        messages: [userMessage("Do it"), last],
        newMessages: [last],
      }),
    );
    expect(completed.action).toEqual({ type: "attemptCompletion", result: `All done ${text}` });
  });

  it("streams them exactly as GET answers them", async () => {
    const job = await startJob(t.app, tenant);
    const toolCall = { id: "call_1", skillName: `skill ${LONE}`, toolName: `tool ${NUL}`, args: { q: REVERSED } };
    const first = await postAndReadBack(job.id, checkpointBody(tenant, { toolCall, toolResult: toolResultFor(toolCall, LONE) }));
    const delegateTo = { expert: expertRef(tenant.expert), toolCallId: `call ${NUL}`, toolName: `helper ${LONE}`, query: `Sub ${LONE}` };
    const second = await postAndReadBack(job.id, checkpointBody(tenant, { stepNumber: 2, status: "stoppedByDelegate", delegateTo }));
    const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    try {
      const events = await stream.waitFor(2);
      expect(events.map((event) => JSON.parse(event.data))).toEqual([first, second]);
    } finally {
      stream.close();
    }
  });

  it("keeps __proto__ and constructor keys in tool arguments and messages as data, and pollutes nothing", async () => {
    const job = await startJob(t.app, tenant);
    const body = checkpointBody(tenant, { toolCall: { id: "call_1", skillName: "code", toolName: "eval", args: { q: "__RAW__" } } });
    const raw = withRaw(body, '{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}').replace(
      '"contents":[',
      '"__proto__":{"isAdmin":true},"contents":[',
    );
    const posted = await runtime.request({
      method: "POST",
      url: `/expert_jobs/${job.id}/checkpoints/`,
      payload: raw,
      headers: { "content-type": "application/json" },
    });
    expect(posted.statusCode, posted.body).toBe(200);
    expect(posted.body).toContain('"args":{"q":{"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}}}}');
    expect(posted.body).toContain('"__proto__":{"isAdmin":true},"contents":[');
    const checkpoint = posted.json().data.checkpoint;
    expect((await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`)).body).toBe(posted.body);
    expect(({} as Json).polluted).toBeUndefined();
    expect(({} as Json).isAdmin).toBeUndefined();
  });

  it("keeps __proto__ keys a start body sends as unknown keys: ignored like any other", async () => {
    const response = await client.request({
      method: "POST",
      url: "/expert_jobs",
      payload: `{"__proto__":{"query":""},"expertKey":${JSON.stringify(tenant.expert.key)},"query":"Do it"}`,
      headers: { "content-type": "application/json" },
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().data.expertJob.query).toBe("Do it");
  });
});

describe("what cannot be stored as posted: 422 naming the path, nothing stored", () => {
  async function expectRejected(
    post: () => Promise<{ statusCode: number; body: string; json(): any }>,
    path: string | RegExp,
    message: RegExp,
  ) {
    const before = await databaseDigest(t.app);
    const response = await post();
    expect(response.statusCode, response.body).toBe(422);
    const [issue] = response.json().reason;
    if (typeof path === "string") expect(issue.path).toBe(path);
    else expect(issue.path).toMatch(path);
    expect(issue.message).toMatch(message);
    expect(await databaseDigest(t.app)).toEqual(before);
  }

  const postRaw = (url: string, payload: string) =>
    runtime.request({ method: "POST", url, payload, headers: { "content-type": "application/json" } });

  it(`nesting past ${MAX_JSON_DEPTH} levels, in messages or tool arguments (5,000 levels overflowed the stack: 500)`, async () => {
    const job = await startJob(t.app, tenant);
    const url = `/expert_jobs/${job.id}/checkpoints/`;
    const deepMessages = checkpointBody(tenant, { messages: [userMessage("x"), "__RAW__"] });
    await expectRejected(
      () => postRaw(url, withRaw(deepMessages, nestedText(5_000))),
      /^\/checkpoint\/messages\/1(\/0)+$/,
      new RegExp(`deeper than ${MAX_JSON_DEPTH} levels`),
    );
    const deepArgs = checkpointBody(tenant, {
      newMessages: [userMessage("x")],
      toolCall: { id: "c", skillName: "s", toolName: "t", args: { deep: "__RAW__" } },
    });
    await expectRejected(() => postRaw(url, withRaw(deepArgs, nestedText(5_000))), /^\/step\/toolCall\/args\/deep(\/0)+$/, /deeper than/);
    // The body is level 1, step 2, toolCall 3, args 4: args may nest 124 more levels, not 125.
    const atLimit = checkpointBody(tenant, {
      newMessages: [userMessage("x")],
      toolCall: { id: "c", skillName: "s", toolName: "t", args: { deep: nested(MAX_JSON_DEPTH - 4) } },
    });
    const accepted = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, atLimit);
    expect(accepted.statusCode, accepted.body).toBe(200);
    expect(accepted.json().data.checkpoint.toolCall.args).toEqual(atLimit.step.toolCall!.args);
    const overLimit = checkpointBody(tenant, {
      stepNumber: 2,
      newMessages: [userMessage("x")],
      toolCall: { id: "c", skillName: "s", toolName: "t", args: { deep: nested(MAX_JSON_DEPTH - 3) } },
    });
    await expectRejected(
      () => runtime.post(`/expert_jobs/${job.id}/checkpoints/`, overLimit),
      /^\/step\/toolCall\/args\/deep/,
      /deeper than/,
    );
    // Every JSON body: a start too.
    await expectRejected(
      () => client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "x", files: nested(200) }),
      /^\/files/,
      /deeper than/,
    );
  });

  it.each(["1e400", "-1e400", "1" + "0".repeat(400)])(
    "a number past a double's range (%s) in messages or arguments, instead of storing null",
    async (number) => {
      const job = await startJob(t.app, tenant);
      const url = `/expert_jobs/${job.id}/checkpoints/`;
      const inMessage = checkpointBody(tenant, { messages: [userMessage("x"), { type: "userMessage", contents: [], n: "__RAW__" }] });
      await expectRejected(() => postRaw(url, withRaw(inMessage, number)), "/checkpoint/messages/1/n", /too large/);
      const inArgs = checkpointBody(tenant, {
        newMessages: [userMessage("x")],
        toolCall: { id: "c", skillName: "s", toolName: "t", args: { n: "__RAW__" } },
      });
      await expectRejected(() => postRaw(url, withRaw(inArgs, number)), "/step/toolCall/args/n", /too large/);
      await expectRejected(() => postRaw(url, withRaw({ ...checkpointBody(tenant), extra: "__RAW__" }, number)), "/extra", /too large/);
      await expectRejected(() => postRaw("/expert_jobs/claim", `{"waitMs":${number}}`), "/waitMs", /too large/);
    },
  );

  it.each([
    ["a lone surrogate", LONE, /lone UTF-16 surrogate/],
    ["U+0000", NUL, /U\+0000/],
  ])("%s in a field stored as text (a job's query and files, names, keys)", async (_label, text, message) => {
    const job = await startJob(t.app, tenant);
    await expectRejected(() => client.post("/expert_jobs", { expertKey: tenant.expert.key, query: text }), "/query", message);
    await expectRejected(() => client.post("/expert_jobs", { expertKey: tenant.expert.key, files: ["a.txt", text] }), "/files", message);
    await expectRejected(() => client.post(`/expert_jobs/${job.id}/continue`, { query: text }), "/query", message);
    const admin = (method: "POST" | "PUT", url: string, payload: object) => () =>
      t.app.inject({ method, url: `/api/admin/v1${url}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, payload });
    await expectRejected(
      admin("POST", `/applications/${tenant.applicationId}/api_keys`, { scope: "client", name: text }),
      "/name",
      message,
    );
    await expectRejected(
      admin("PUT", `/applications/${tenant.applicationId}/provider_keys/openai`, { key: `sk-${text}` }),
      "/key",
      message,
    );
    await expectRejected(
      admin("POST", `/organizations/${tenant.organizationId}/experts`, { name: "@acme/other", version: "1.0.0", description: text }),
      "/description",
      message,
    );
  });
});
