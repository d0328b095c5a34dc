import { randomBytes } from "node:crypto";
import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import {
  api,
  checkpointBody,
  expertMessage,
  instructionMessage,
  seedTenant,
  startJob,
  textPart,
  toolCallPart,
  toolMessage,
  toolResultFor,
  userMessage,
  type Api,
  type Tenant,
} from "../../helpers/fixtures.ts";

type Json = Record<string, any>;

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value));

/** Deterministic prose of about `length` characters, different for every seed. */
function prose(seed: number, length: number): string {
  const words = ["agent", "step", "file", "résumé", "checkpoint", "tool", "result", "naïve", "plan", "context", "東京", "data"];
  let text = "";
  for (let index = 0; text.length < length; index++) text += `${words[(seed * 7 + index * 13) % words.length]}${(seed + index) % 10} `;
  return text.slice(0, length);
}

describe("message storage", () => {
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

  async function post(jobId: string, body: unknown): Promise<Json> {
    const response = await runtime.post(`/expert_jobs/${jobId}/checkpoints/`, body);
    expect(response.statusCode, response.body.slice(0, 500)).toBe(200);
    return response.json().data.checkpoint;
  }
  const getOne = (jobId: string, checkpointId: string) => client.get(`/expert_jobs/${jobId}/checkpoints/${checkpointId}`);
  async function messagesOf(jobId: string, checkpointId: string): Promise<unknown[]> {
    const response = await getOne(jobId, checkpointId);
    expect(response.statusCode).toBe(200);
    return response.json().data.checkpoint.messages;
  }
  const storedMessageCount = (jobId: string) => t.app.prisma.jobMessage.count({ where: { expertJobId: jobId } });
  async function runsOf(jobId: string, checkpointId: string): Promise<unknown> {
    const row = await t.app.prisma.checkpoint.findUniqueOrThrow({ where: { expertJobId_id: { expertJobId: jobId, id: checkpointId } } });
    return row.messageRuns;
  }

  it("rebuilds messages exactly as posted: same values and the same JSON text, key order, unicode and a large base64 string included", async () => {
    const job = await startJob(t.app, tenant);
    const image = randomBytes(1_500_000).toString("base64");
    const messages = [
      instructionMessage("You help."),
      {
        type: "userMessage",
        zeta: "last key first",
        id: createId(),
        contents: [
          {
            type: "textPart",
            text: 'héllo 世界 🌍 עברית e\u0301 \u2028\u2029 "quoted" back\\slash \t tab \n newline \u0000 nul \ud83d lone',
            id: createId(),
          },
        ],
        alpha: { z: 1, a: [0.1, -2.5e-7, 1e21, { y: true, b: false, m: null }], "key with spaces": {}, "": "" },
      },
      {
        id: createId(),
        type: "userMessage",
        contents: [{ id: createId(), type: "imageInlinePart", mimeType: "image/png", encodedData: image }],
      },
      expertMessage(textPart("Ünïcödé ✓ 🚀")),
    ];
    const newMessages = messages.slice(1);
    const body = checkpointBody(tenant, { messages, newMessages, inputMessages: [messages[1]] });
    const text = JSON.stringify(messages);

    const created = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, body);
    expect(created.statusCode).toBe(200);
    const posted = created.json().data.checkpoint;
    expect(posted.messages).toEqual(messages);
    expect(JSON.stringify(posted.messages)).toBe(text);

    const got = await getOne(job.id, posted.id);
    const checkpoint = got.json().data.checkpoint;
    expect(checkpoint.messages).toEqual(messages);
    expect(JSON.stringify(checkpoint.messages)).toBe(text);
    expect(got.body).toContain(`"messages":${text}`);
    expect(got.body).toContain(`"newMessages":${JSON.stringify(newMessages)}`);
    expect(got.body).toContain(`"inputMessages":${JSON.stringify([messages[1]])}`);
    expect(checkpoint.messages[2].contents[0].encodedData).toBe(image);
    const listed = await client.get(`/expert_jobs/${job.id}/checkpoints/`);
    expect(listed.body).toContain(`"messages":${text}`);
  });

  it("keeps messages that differ only in key order apart", async () => {
    const job = await startJob(t.app, tenant);
    const messages = [
      { a: 1, b: 2 },
      { b: 2, a: 1 },
      { a: 1, b: 2 },
    ];
    const checkpoint = await post(job.id, checkpointBody(tenant, { messages }));
    const response = await getOne(job.id, checkpoint.id);
    expect(response.body).toContain('"messages":[{"a":1,"b":2},{"b":2,"a":1},{"a":1,"b":2}]');
    expect(await storedMessageCount(job.id)).toBe(2);
  });

  it("rebuilds null and non-object messages", async () => {
    const job = await startJob(t.app, tenant);
    const messages = [null, "text", "null", "", 42, 3.5, -1, 0, true, false, [], {}, [null, { k: null }], null, { deep: [[[]]] }];
    const checkpoint = await post(job.id, checkpointBody(tenant, { messages, newMessages: [null, "text"] }));
    expect(checkpoint.messages).toEqual(messages);
    const got = (await getOne(job.id, checkpoint.id)).json().data.checkpoint;
    expect(got.messages).toEqual(messages);
    expect(JSON.stringify(got.messages)).toBe(JSON.stringify(messages));
    expect(got.newMessages).toEqual([null, "text"]);
    expect(await storedMessageCount(job.id)).toBe(messages.length - 1);
  });

  it("rebuilds an empty conversation", async () => {
    const job = await startJob(t.app, tenant);
    const checkpoint = await post(job.id, checkpointBody(tenant, { messages: [], newMessages: [] }));
    expect(checkpoint.messages).toEqual([]);
    expect(await messagesOf(job.id, checkpoint.id)).toEqual([]);
    expect(await storedMessageCount(job.id)).toBe(0);
  });

  it("rebuilds identical messages repeated within one conversation, storing each once", async () => {
    const job = await startJob(t.app, tenant);
    const instruction = instructionMessage("You help.");
    const nudge = userMessage("Keep going");
    const reply = expertMessage(textPart("ok"));
    const messages = [instruction, nudge, nudge, reply, nudge, reply, reply, reply, instruction];
    const checkpoint = await post(job.id, checkpointBody(tenant, { messages }));
    expect(await messagesOf(job.id, checkpoint.id)).toEqual(messages);
    expect(await storedMessageCount(job.id)).toBe(3);

    const next = [...messages, userMessage("new")];
    const second = await post(job.id, checkpointBody(tenant, { stepNumber: 2, messages: next }));
    expect(await messagesOf(job.id, second.id)).toEqual(next);
    expect(await messagesOf(job.id, checkpoint.id)).toEqual(messages);
    expect(await storedMessageCount(job.id)).toBe(4);
  });

  it("rebuilds a conversation resumed from an earlier prefix, and every checkpoint before it", async () => {
    const job = await startJob(t.app, tenant);
    const [system, user] = [instructionMessage("You help."), userMessage("Do it")];
    const turns = [1, 2, 3, 4].map((n) => [
      expertMessage(toolCallPart(`call_${n}`, "webSearch", { n })),
      toolMessage(`call_${n}`, "webSearch", `result ${n}`),
    ]);
    const turn = (n: number) => turns[n - 1]!;
    const conversations: unknown[][] = [[system, user, ...turn(1)]];
    conversations.push([...conversations[0]!, ...turn(2)]);
    conversations.push([...conversations[1]!, ...turn(3)]);
    // Resumed from the first checkpoint: its messages, then new ones.
    const resumed = [...conversations[0]!, userMessage("Try another way"), expertMessage(textPart("Retrying"))];
    conversations.push(resumed);
    conversations.push([...resumed, ...turn(4)]);
    // A conversation reusing messages of the abandoned branch in another order.
    conversations.push([system, user, ...turn(1), ...turn(3), ...turn(2)]);

    const checkpoints: Json[] = [];
    for (const [index, messages] of conversations.entries()) {
      checkpoints.push(await post(job.id, checkpointBody(tenant, { stepNumber: index + 1, messages, newMessages: messages.slice(-2) })));
    }
    expect(await storedMessageCount(job.id)).toBe(4 + 2 + 2 + 2 + 2);
    expect(await runsOf(job.id, checkpoints[3]!.id)).toEqual([
      [1, 4],
      [9, 10],
    ]);
    for (const [index, messages] of conversations.entries()) {
      expect(await messagesOf(job.id, checkpoints[index]!.id), `checkpoint ${index + 1}`).toEqual(messages);
    }
    const listed = await client.get(`/expert_jobs/${job.id}/checkpoints/?take=100`);
    expect(listed.json().data.checkpoints.map((checkpoint: Json) => checkpoint.messages)).toEqual(conversations);
  });

  it("keeps each job's messages to itself although two jobs post the same messages", async () => {
    const messages = [instructionMessage("You help."), userMessage("Same")];
    const [first, second] = [await startJob(t.app, tenant), await startJob(t.app, tenant)];
    const a = await post(first.id, checkpointBody(tenant, { messages }));
    const b = await post(second.id, checkpointBody(tenant, { messages: [...messages, userMessage("Only here")] }));
    expect(await storedMessageCount(first.id)).toBe(2);
    expect(await storedMessageCount(second.id)).toBe(3);
    expect(await messagesOf(first.id, a.id)).toEqual(messages);
    expect(await messagesOf(second.id, b.id)).toEqual([...messages, expect.objectContaining({ type: "userMessage" })]);
  });

  it("stores a 150-step job in O(n) bytes while every checkpoint carries the whole conversation", { timeout: 240_000 }, async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 200 });
    const steps = 150;
    const conversation: unknown[] = [instructionMessage("You are a meticulous research assistant."), userMessage("Survey the files.")];
    let newMessageBytes = conversation.reduce<number>((sum, message) => sum + bytes(message), 0);
    let naiveBytes = 0;
    const snapshots = new Map<number, { id: string; messages: unknown[] }>();
    for (let stepNumber = 1; stepNumber <= steps; stepNumber++) {
      const toolCall = { id: `call_${stepNumber}`, skillName: "files", toolName: "summarise", args: { file: `doc-${stepNumber}.md` } };
      const output = prose(stepNumber, 600);
      const newMessages = [
        expertMessage(textPart(prose(stepNumber + 1000, 1300)), toolCallPart(toolCall.id, toolCall.toolName, toolCall.args)),
        toolMessage(toolCall.id, toolCall.toolName, output),
      ];
      conversation.push(...newMessages);
      newMessageBytes += newMessages.reduce<number>((sum, message) => sum + bytes(message), 0);
      naiveBytes += bytes(conversation);
      const checkpoint = await post(
        job.id,
        checkpointBody(tenant, {
          stepNumber,
          messages: conversation,
          newMessages,
          toolCall,
          toolResult: toolResultFor(toolCall, output),
        }),
      );
      if (stepNumber === 1 || stepNumber === 75 || stepNumber === steps)
        snapshots.set(stepNumber, { id: checkpoint.id, messages: [...conversation] });
    }

    const [measured] = await t.app.prisma.$queryRaw<Array<{ messages: number; runs: number; new_messages: number; tools: number }>>`
      SELECT
        (SELECT COALESCE(SUM(octet_length(body::text)), 0)::float8 FROM job_message WHERE expert_job_id = ${job.id}) AS messages,
        COALESCE(SUM(octet_length(message_runs::text)), 0)::float8 AS runs,
        COALESCE(SUM(octet_length(new_messages::text) + COALESCE(octet_length(input_messages::text), 0)), 0)::float8 AS new_messages,
        COALESCE(SUM(COALESCE(octet_length(tool_call::text), 0) + COALESCE(octet_length(tool_result::text), 0) + octet_length(action::text)), 0)::float8 AS tools
      FROM checkpoint WHERE expert_job_id = ${job.id}`;
    const messageColumns = measured!.messages + measured!.runs + measured!.new_messages;
    const stored = messageColumns + measured!.tools;
    const report = {
      newMessageBytes,
      jobMessageBytes: measured!.messages,
      messageRunsBytes: measured!.runs,
      checkpointNewMessagesBytes: measured!.new_messages,
      toolCallResultActionBytes: measured!.tools,
      storedBytes: stored,
      naiveBytes,
      storedRatio: +(stored / newMessageBytes).toFixed(2),
      messageColumnsRatio: +(messageColumns / newMessageBytes).toFixed(2),
      naiveRatio: +(naiveBytes / newMessageBytes).toFixed(1),
    };
    console.log(`150-step job storage: ${JSON.stringify(report)}`);

    expect(measured!.messages).toBe(newMessageBytes);
    expect(await storedMessageCount(job.id)).toBe(2 + 2 * steps);
    expect(stored).toBeLessThanOrEqual(3 * newMessageBytes);
    expect(naiveBytes).toBeGreaterThan(60 * newMessageBytes);
    expect(naiveBytes).toBeGreaterThan(20 * stored);
    const runs = await t.app.prisma.checkpoint.findMany({
      where: { expertJobId: job.id },
      select: { messageRuns: true, stepNumber: true },
    });
    for (const { messageRuns, stepNumber } of runs) expect(messageRuns).toEqual([[1, 2 + 2 * stepNumber]]);

    for (const [stepNumber, snapshot] of snapshots) {
      expect(await messagesOf(job.id, snapshot.id), `step ${stepNumber}`).toEqual(snapshot.messages);
    }
    const tail = await client.get(`/expert_jobs/${job.id}/checkpoints/?take=3&skip=${steps - 3}`);
    const lastThree = tail.json().data.checkpoints;
    expect(lastThree.map((checkpoint: Json) => checkpoint.messages.length)).toEqual([2 + 2 * 148, 2 + 2 * 149, 2 + 2 * 150]);
    expect(lastThree[2].messages).toEqual(conversation);
    const trimmed = await client.get(`/expert_jobs/${job.id}/checkpoints/?take=100&exclude=messages`);
    expect(trimmed.json().data.checkpoints).toHaveLength(100);
    expect(trimmed.body.length).toBeLessThan(100 * 10_000);
  });
});
