import { createHash } from "node:crypto";
import { createId } from "@paralleldrive/cuid2";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Sql } from "../../../src/db/sql.ts";
import type { Principal } from "../../../src/plugins/auth.ts";
import { CheckpointsService } from "../../../src/modules/checkpoints/checkpoints.service.ts";
import type { PostCheckpointBody } from "../../../src/modules/checkpoints/checkpoints.schemas.ts";
import { ConversationCache, hashConversation, PostedConversation, sameJson } from "../../../src/modules/checkpoints/message-store.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { grownJobBodies, registerTraceExperts, replayTrace, traceLines, type TraceName } from "../../helpers/corpus.ts";
import { api, seedTenant, startJob, textPart, userMessage, type Tenant } from "../../helpers/fixtures.ts";

type Json = Record<string, any>;

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/**
 * A post whose conversation is the previous checkpoint's plus new messages hashes and looks up only the new
 * ones (checked by recording what the post's read asks the real database for); any other conversation
 * takes the full path. Both must store and answer exactly what the full path always did.
 */
describe("posting a conversation that extends the previous one", () => {
  let t: TestApp;
  let tenant: Tenant;
  /** The hashes each post-context read looked up, per read, since the last `reads.length = 0`. */
  const reads: number[] = [];
  let service: CheckpointsService;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    const recording: Sql = {
      query(name, text, values) {
        if (name === "checkpoint_post_context") reads.push((values[3] as string[]).length);
        return t.app.sql.query(name, text, values);
      },
    };
    service = new CheckpointsService(t.app.prisma, t.app.experts, 60_000, recording, t.app.notifier);
  });
  afterAll(async () => t.close());

  const principalOf = (owner: Tenant): Principal => ({
    apiKeyId: "test",
    applicationId: owner.applicationId,
    organizationId: owner.organizationId,
    scope: "runtime" as Principal["scope"],
  });

  /** Posts through the recording service; returns the reply and the hashes each of its reads looked up. */
  async function post(expertJobId: string, body: unknown, owner = tenant) {
    reads.length = 0;
    const reply = await service.post(principalOf(owner), expertJobId, body as PostCheckpointBody);
    return { reply, reads: [...reads] };
  }

  const getOne = async (expertJobId: string, checkpointId: string, owner = tenant) => {
    const response = await api(t.app, owner.clientKey).get(`/expert_jobs/${expertJobId}/checkpoints/${checkpointId}`);
    expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
    return response;
  };
  /** The conversation's JSON text as GET answers it. */
  const messagesText = async (expertJobId: string, checkpointId: string, owner = tenant) =>
    JSON.stringify((await getOne(expertJobId, checkpointId, owner)).json().data.checkpoint.messages);
  const storedRow = (expertJobId: string, id: string) =>
    t.app.prisma.checkpoint.findUniqueOrThrow({ where: { expertJobId_id: { expertJobId, id } } });
  const messageCount = (expertJobId: string) => t.app.prisma.jobMessage.count({ where: { expertJobId } });

  it("a 1,000-step job (~2 KB a step): every post looks up only its new messages, once, and stores only them", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 1_100 });
    const checked = new Set([1, 2, 10, 100, 500, 1_000]);
    let last: Json | undefined;
    for (const body of grownJobBodies(tenant, { steps: 1_000, bytesPerStep: 2_000 })) {
      const { reply, reads: lookedUp } = await post(job.id, body);
      const step = body.checkpoint.stepNumber;
      const fresh = body.step.newMessages.length;
      // The first post has no previous conversation, and the job no messages yet: nothing more to look up.
      expect(lookedUp, `step ${step}`).toEqual([fresh]);
      expect(reply.messagesJson).toBe(JSON.stringify(body.checkpoint.messages));
      if (checked.has(step)) {
        expect(await messagesText(job.id, body.checkpoint.id)).toBe(reply.messagesJson);
        const row = await storedRow(job.id, body.checkpoint.id);
        expect(row.messageRuns).toEqual([[1, body.checkpoint.messages.length]]);
        expect(Buffer.from(row.conversationHash!).toString("hex")).toBe(sha256(reply.messagesJson!));
        expect(row.messagesBytes).toBe(Buffer.byteLength(reply.messagesJson!));
      }
      last = body;
    }
    expect(await messageCount(job.id)).toBe(last!.checkpoint.messages.length);
    expect(JSON.stringify(last!.checkpoint.messages).length).toBeGreaterThan(2_000_000);
  }, 600_000);

  it("two instances posting a job's steps by turns: each remembers a conversation the other has extended since, and stores every step exactly", async () => {
    // Another instance's service: its own remembered conversations, the same database.
    const other = new CheckpointsService(t.app.prisma, t.app.experts, 60_000, t.app.sql, t.app.notifier);
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 30, bytesPerStep: 10_000, lastStatus: "proceeding" })];
    for (const [index, body] of bodies.entries()) {
      const by = index % 3 === 2 ? service : other; // other, other, service, …: hits and misses on both
      const reply = await by.post(principalOf(tenant), job.id, body as PostCheckpointBody);
      expect(reply.messagesJson).toBe(JSON.stringify(body.checkpoint.messages));
      const row = await storedRow(job.id, body.checkpoint.id);
      expect(Buffer.from(row.conversationHash!).toString("hex"), `step ${index + 1}`).toBe(sha256(reply.messagesJson!));
      expect(row.messagesBytes).toBe(Buffer.byteLength(reply.messagesJson!));
      expect(row.messageRuns).toEqual([[1, body.checkpoint.messages.length]]);
    }
    expect(await messagesText(job.id, bodies.at(-1)!.checkpoint.id)).toBe(JSON.stringify(bodies.at(-1)!.checkpoint.messages));
    expect(await messageCount(job.id)).toBe(bodies.at(-1)!.checkpoint.messages.length);
  });

  it("an edit in the middle falls back to every message, stores the edited one, and the next step extends the edit", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 12, bytesPerStep: 2_000, lastStatus: "proceeding" })];
    for (const body of bodies.slice(0, 10)) await post(job.id, body);
    const before = await messageCount(job.id);

    const edited = structuredClone(bodies[10]!);
    edited.checkpoint.messages[7] = userMessage("An edit the runtime made in the middle of the conversation.");
    const { reply, reads: lookedUp } = await post(job.id, edited);
    expect(lookedUp).toEqual([edited.step.newMessages.length, edited.checkpoint.messages.length]);
    expect(await messagesText(job.id, edited.checkpoint.id)).toBe(JSON.stringify(edited.checkpoint.messages));
    expect(reply.messagesJson).toBe(JSON.stringify(edited.checkpoint.messages));
    // The edited message and the step's new ones; every other message was known.
    expect(await messageCount(job.id)).toBe(before + 1 + edited.step.newMessages.length);

    const next = structuredClone(bodies[11]!);
    next.checkpoint.messages = [...edited.checkpoint.messages, ...next.step.newMessages];
    const extended = await post(job.id, next);
    expect(extended.reads).toEqual([next.step.newMessages.length]);
    expect(await messagesText(job.id, next.checkpoint.id)).toBe(JSON.stringify(next.checkpoint.messages));
    const runs = (await storedRow(job.id, next.checkpoint.id)).messageRuns as Array<[number, number]>;
    expect(runs.length).toBeGreaterThan(1);
  }, 120_000);

  it("a conversation shorter than the previous one, or one with a message removed, takes the full path and reads back as posted", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 8, bytesPerStep: 500, lastStatus: "proceeding" })];
    for (const body of bodies.slice(0, 6)) await post(job.id, body);
    const shorter = structuredClone(bodies[6]!);
    shorter.checkpoint.messages = [...shorter.checkpoint.messages.slice(0, 4), ...shorter.step.newMessages];
    const first = await post(job.id, shorter);
    expect(first.reads).toEqual([shorter.step.newMessages.length, shorter.checkpoint.messages.length]);
    expect(await messagesText(job.id, shorter.checkpoint.id)).toBe(JSON.stringify(shorter.checkpoint.messages));
    const removed = structuredClone(bodies[7]!);
    removed.checkpoint.messages = [...shorter.checkpoint.messages.slice(1), ...removed.step.newMessages];
    await post(job.id, removed);
    expect(await messagesText(job.id, removed.checkpoint.id)).toBe(JSON.stringify(removed.checkpoint.messages));
  });

  it("after resume_from, a conversation extending the resume point's looks up only its new messages; the job records the resume", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 10, bytesPerStep: 2_000 })];
    for (const body of bodies) await post(job.id, body);
    const from = bodies[4]!.checkpoint;
    const resumed = await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/resume_from`, {
      checkpointId: from.id,
      query: "Go on.",
    });
    expect(resumed.statusCode, resumed.body).toBe(200);

    const answer = [userMessage("Go on.")];
    const next = structuredClone(bodies[5]!);
    next.checkpoint.id = createId();
    next.checkpoint.messages = [...from.messages, ...answer, ...next.step.newMessages];
    next.step.newMessages = [...answer, ...next.step.newMessages];
    const { reads: lookedUp } = await post(job.id, next);
    expect(lookedUp).toEqual([next.step.newMessages.length]);
    const row = await storedRow(job.id, next.checkpoint.id);
    expect(row.resumedFromCheckpointId).toBe(from.id);
    expect(await messagesText(job.id, next.checkpoint.id)).toBe(JSON.stringify(next.checkpoint.messages));

    // The job's last checkpoint now is the resumed one: the next step extends it.
    const after = structuredClone(bodies[6]!);
    after.checkpoint.id = createId();
    after.checkpoint.messages = [...next.checkpoint.messages, ...after.step.newMessages];
    expect((await post(job.id, after)).reads).toEqual([after.step.newMessages.length]);
    expect(await messagesText(job.id, after.checkpoint.id)).toBe(JSON.stringify(after.checkpoint.messages));
  });

  it("a checkpoint stored before conversations were hashed (no hash) makes the next post take the full path", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 4, bytesPerStep: 500 })];
    for (const body of bodies.slice(0, 3)) await post(job.id, body);
    await t.app.prisma.checkpoint.update({
      where: { expertJobId_id: { expertJobId: job.id, id: bodies[2]!.checkpoint.id } },
      data: { conversationHash: null },
    });
    const { reads: lookedUp } = await post(job.id, bodies[3]);
    expect(lookedUp).toEqual([bodies[3]!.step.newMessages.length, bodies[3]!.checkpoint.messages.length]);
    expect(await messagesText(job.id, bodies[3]!.checkpoint.id)).toBe(JSON.stringify(bodies[3]!.checkpoint.messages));
    expect(await messageCount(job.id)).toBe(bodies[3]!.checkpoint.messages.length);
  });

  it("re-posts: the same body answers the same bytes, other content is a conflict, and a content hash stored the old way still matches", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const runtime = api(t.app, tenant.runtimeKey);
    const url = `/expert_jobs/${job.id}/checkpoints/`;
    const bodies = [...grownJobBodies(tenant, { steps: 3, bytesPerStep: 2_000, lastStatus: "proceeding" })];
    const answers = [];
    for (const body of bodies) {
      const response = await runtime.post(url, body);
      expect(response.statusCode, response.body.slice(0, 300)).toBe(200);
      answers.push(response.body);
    }
    const again = await runtime.post(url, bodies[1]);
    expect(again.statusCode).toBe(200);
    expect(again.body).toBe(answers[1]);
    expect(again.body).toBe((await getOne(job.id, bodies[1]!.checkpoint.id)).body);

    const changed = structuredClone(bodies[1]!);
    changed.checkpoint.messages[1] = userMessage("Something else");
    const conflict = await runtime.post(url, changed);
    expect(conflict.statusCode).toBe(409);
    expect(conflict.json()).toMatchObject({ code: 409 });

    // Stored before this change: the body with each message replaced by the hash of its JSON text.
    const body = bodies[2]!;
    const legacy = sha256(
      JSON.stringify({
        ...body,
        checkpoint: { ...body.checkpoint, messages: body.checkpoint.messages.map((m: unknown) => sha256(JSON.stringify(m))) },
      }),
    );
    await t.app.prisma.checkpoint.update({
      where: { expertJobId_id: { expertJobId: job.id, id: body.checkpoint.id } },
      data: { contentHash: Buffer.from(legacy, "hex") },
    });
    const legacyRepost = await runtime.post(url, body);
    expect(legacyRepost.statusCode, legacyRepost.body.slice(0, 300)).toBe(200);
    expect(legacyRepost.body).toBe(answers[2]);
  });

  it.each<TraceName>(["long-research", "delegation", "interactive", "exceeded-max-steps"])(
    "the %s trace: every POST answer is GET's bytes, and the job stores each distinct message once",
    async (name) => {
      const owner = await seedTenant(t.app);
      const replayed = await replayTrace(t.app, owner, name);
      const lines = traceLines(name);
      const distinct = new Set<string>();
      for (const [index, line] of lines.entries()) {
        const body = JSON.parse(line);
        for (const message of body.checkpoint.messages) distinct.add(JSON.stringify(message));
        const got = await getOne(replayed.expertJobId, replayed.checkpoints[index]!.id, owner);
        expect(got.json().data.checkpoint).toEqual(replayed.checkpoints[index]);
        expect(JSON.stringify(got.json().data.checkpoint.messages)).toBe(JSON.stringify(body.checkpoint.messages));
      }
      expect(await messageCount(replayed.expertJobId)).toBe(distinct.size);
    },
    120_000,
  );

  it("the delegation trace through the recording service: the delegate's first step and the return to the delegator take the full path", async () => {
    const owner = await seedTenant(t.app);
    await registerTraceExperts(t.app, owner);
    const job = await startJob(t.app, owner, { expertKey: JSON.parse(traceLines("delegation")[0]!).checkpoint.expert.key, maxSteps: 100 });
    let fullPaths = 0;
    let previousExpert: string | undefined;
    for (const line of traceLines("delegation")) {
      const body = JSON.parse(line);
      const { reply, reads: lookedUp } = await post(job.id, body, owner);
      expect(reply.messagesJson).toBe(JSON.stringify(body.checkpoint.messages));
      if (lookedUp.length > 1) fullPaths++;
      // Every post the same expert makes after its previous one extends that conversation.
      if (previousExpert === body.checkpoint.expert.key && lookedUp.length > 1) {
        throw new Error(`step ${body.checkpoint.stepNumber} of ${previousExpert} did not extend its previous conversation`);
      }
      previousExpert = body.checkpoint.expert.key;
    }
    expect(fullPaths).toBeGreaterThan(0);
  });

  it("a message list of odd values (text parts with U+0000, a lone surrogate) extends the same way and reads back exactly", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 100 });
    const bodies = [...grownJobBodies(tenant, { steps: 3, bytesPerStep: 200, lastStatus: "proceeding" })];
    await post(job.id, bodies[0]);
    const odd = structuredClone(bodies[1]!);
    const message = { id: createId(), type: "userMessage", contents: [textPart("nul \u0000 and lone \ud83d, 東京")] };
    odd.step.newMessages = [message, ...odd.step.newMessages];
    odd.checkpoint.messages = [...bodies[0]!.checkpoint.messages, ...odd.step.newMessages];
    expect((await post(job.id, odd)).reads).toEqual([odd.step.newMessages.length]);
    const after = structuredClone(bodies[2]!);
    after.checkpoint.messages = [...odd.checkpoint.messages, ...after.step.newMessages];
    expect((await post(job.id, after)).reads).toEqual([after.step.newMessages.length]);
    expect(await messagesText(job.id, after.checkpoint.id)).toBe(JSON.stringify(after.checkpoint.messages));
  });
});

describe("hashConversation", () => {
  const messages = [
    { type: "instructionMessage", text: "You help." },
    { type: "userMessage", text: "nul \u0000, lone \ud83d, 東京" },
    { type: "expertMessage", text: "ok" },
  ];
  const previousOf = (list: unknown[], runs: Array<[number, number]>) => ({ hash: sha256(JSON.stringify(list)), runs });

  it("is the SHA-256 of the conversation's JSON text, and finds the previous conversation as its first messages", () => {
    const conversation = new PostedConversation([...messages, { type: "toolMessage", text: "more" }]);
    expect(hashConversation(conversation, undefined).hash).toBe(sha256(conversation.json));
    expect(hashConversation(conversation, undefined).prefixLength).toBeUndefined();
    expect(hashConversation(conversation, previousOf(messages, [[1, 3]]))).toMatchObject({
      hash: sha256(conversation.json),
      prefixLength: 3,
    });
    // The UTF-8 length, and the hash state of the text without its `]`.
    expect(hashConversation(conversation, undefined).bytes).toBe(Buffer.byteLength(conversation.json));
    expect(hashConversation(conversation, undefined).open.update("]").digest("hex")).toBe(sha256(conversation.json));
    // Runs count messages, wherever their ordinals are.
    expect(
      hashConversation(
        conversation,
        previousOf(messages, [
          [4, 4],
          [1, 2],
        ]),
      ).prefixLength,
    ).toBe(3);
    expect(hashConversation(conversation, previousOf([], [])).prefixLength).toBe(0);
    expect(hashConversation(new PostedConversation(messages), previousOf(messages, [[1, 3]])).prefixLength).toBe(3);
  });

  it("finds no prefix when a first message differs, when counts disagree, or when the previous conversation is longer", () => {
    const edited = new PostedConversation([messages[0], { ...messages[1], text: "changed" }, messages[2], { type: "x" }]);
    expect(hashConversation(edited, previousOf(messages, [[1, 3]])).prefixLength).toBeUndefined();
    const conversation = new PostedConversation([...messages, { type: "x" }]);
    expect(hashConversation(conversation, previousOf(messages, [[1, 2]])).prefixLength).toBeUndefined();
    expect(hashConversation(new PostedConversation(messages.slice(0, 2)), previousOf(messages, [[1, 3]])).prefixLength).toBeUndefined();
  });
});

describe("sameJson", () => {
  it("holds exactly when two parsed JSON values serialise to the same text", () => {
    const parsedTwice = fc.jsonValue().map((value) => [JSON.parse(JSON.stringify(value)), JSON.parse(JSON.stringify(value))] as const);
    fc.assert(fc.property(parsedTwice, ([left, right]) => sameJson(left, right)));
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (left, right) => {
        const [a, b] = [JSON.parse(JSON.stringify(left)), JSON.parse(JSON.stringify(right))];
        expect(sameJson(a, b)).toBe(JSON.stringify(a) === JSON.stringify(b));
      }),
    );
    const cases: Array<[string, string, boolean]> = [
      ['{"a":1,"b":2}', '{"b":2,"a":1}', false],
      ["[-0]", "[0]", true],
      ['{"__proto__":{"x":1}}', '{"__proto__":{"x":1}}', true],
      ['{"__proto__":{"x":1}}', '{"__proto__":{"x":2}}', false],
      ['{"a":null}', '{"a":{}}', false],
      ['{"a":[]}', '{"a":{}}', false],
      ['{"0":"x"}', '["x"]', false],
      ['{"a":"1"}', '{"a":1}', false],
      ['{"a":1}', '{"a":1,"b":null}', false],
    ];
    for (const [left, right, same] of cases)
      expect([left, right, sameJson(JSON.parse(left), JSON.parse(right))]).toEqual([left, right, same]);
  });
});

describe("ConversationCache", () => {
  const previousOf = (list: unknown[]) => ({
    hash: sha256(JSON.stringify(list)),
    runs: list.length > 0 ? ([[1, list.length]] as Array<[number, number]>) : [],
  });
  /** Each field as the whole path computes it, for any cache. */
  const expectLikeWholePath = (cache: ConversationCache, jobId: string, list: unknown[], previous: unknown[]) => {
    const conversation = new PostedConversation(list);
    const hashed = cache.hash(jobId, conversation, previousOf(previous));
    const whole = hashConversation(conversation, previousOf(previous));
    expect({ hash: hashed.hash, prefixLength: hashed.prefixLength, bytes: hashed.bytes }).toEqual({
      hash: whole.hash,
      prefixLength: whole.prefixLength,
      bytes: whole.bytes,
    });
    expect(hashed.open.copy().update("]").digest("hex")).toBe(sha256(conversation.json));
    // An extension builds the text from the remembered one and the new messages': it is still exactly this.
    expect(conversation.json).toBe(JSON.stringify(list));
    // What the cache keeps for the next post: the text without its `]`, built without slicing the whole.
    expect(conversation.open).toBe(JSON.stringify(list).slice(0, -1));
    cache.remember(jobId, conversation, hashed);
    return hashed;
  };
  const message = (index: number, size: number) => ({ type: "toolMessage", index, text: `東京 ${"x".repeat(size)} \u0000` });

  it("hashes a 300-step conversation post after post as the whole path does, from `[]` on", { timeout: 60_000 }, () => {
    const cache = new ConversationCache(64 * 1024 * 1024);
    let previous: unknown[] = [];
    expectLikeWholePath(cache, "job", [], []);
    for (let step = 0; step < 300; step++) {
      const list = [...previous, message(step, 2_000)];
      expect(expectLikeWholePath(cache, "job", list, previous).prefixLength).toBe(previous.length);
      previous = list;
    }
    // The same conversation again (a re-post of the last step) is its own prefix.
    expect(expectLikeWholePath(cache, "job", previous, previous).prefixLength).toBe(300);
  });

  it("finds no prefix for an edited, shortened or other-instance conversation, and forgets the oldest past its bound", () => {
    const cache = new ConversationCache(10_000);
    const first = [message(0, 10), message(1, 10)];
    expectLikeWholePath(cache, "job", first, []);
    // An edit of a remembered message: no prefix, the right hash.
    expect(expectLikeWholePath(cache, "job", [message(0, 11), message(1, 10), message(2, 10)], first).prefixLength).toBeUndefined();
    // Read with another previous conversation than the remembered one (another instance posted in between).
    const elsewhere = [message(5, 10)];
    expect(expectLikeWholePath(cache, "job", [...elsewhere, message(6, 10)], elsewhere).prefixLength).toBe(1);
    // Shorter than the previous conversation; and a message whose text extends the last remembered one's.
    const remembered = [...elsewhere, message(6, 10)];
    expect(expectLikeWholePath(cache, "job", [message(5, 10)], remembered).prefixLength).toBeUndefined();
    expectLikeWholePath(cache, "job", remembered, remembered);
    const longer = [message(5, 10), { ...message(6, 10), more: 1 }];
    expect(expectLikeWholePath(cache, "job", longer, remembered).prefixLength).toBeUndefined();
    // The same values with their keys in another order write another text: not the remembered messages.
    const { type, index, text } = message(6, 10);
    const reordered = [message(5, 10), { index, type, text }, message(7, 10)];
    expectLikeWholePath(cache, "job", longer, longer);
    expect(expectLikeWholePath(cache, "job", reordered, longer).prefixLength).toBeUndefined();
    // The bound: each text is ~70 characters, so 10,000 characters keep the newest ~140 jobs.
    for (let job = 0; job < 300; job++) expectLikeWholePath(cache, `job-${job}`, [message(job, 10)], []);
    expect(cache.size).toBeLessThan(160);
    expect(cache.size).toBeGreaterThan(100);
    // A text over the bound is not kept at all.
    cache.remember(
      "huge",
      new PostedConversation([message(0, 20_000)]),
      hashConversation(new PostedConversation([message(0, 20_000)]), undefined),
    );
    expect(cache.size).toBeLessThan(160);
  });
});
