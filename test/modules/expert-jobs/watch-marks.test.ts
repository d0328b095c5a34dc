import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channels } from "../../../src/db/channels.ts";
import type { Notification } from "../../../src/notify/publisher.ts";
import { createTestDatabase, startTestApp, usingPostgres, type TestApp } from "../../helpers/app.ts";
import {
  eventually,
  expertMessage,
  instructionMessage,
  postCheckpoint,
  seedTenant,
  startJob,
  textPart,
  userMessage,
  type Tenant,
} from "../../helpers/fixtures.ts";
import { backendCases } from "../../helpers/nats.ts";
import { openSse, type SseStream } from "../../helpers/sse.ts";

const streamPath = (jobId: string) => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
const changesPath = "/api/studio/v1/expert_jobs/stream";
const messageIds = (stream: SseStream) => stream.events.filter((event) => event.event === "message").map((event) => event.id);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => String(from + index));
// Long enough that no test here is rescued by the periodic safety re-read: what arrives was announced.
const NO_SAFETY_READ = { notifySafetyIntervalMs: 600_000 };

/** Every notification an instance sends, by channel and job. */
function recorder() {
  const sent: Array<{ channel: string; expertJobId: string; seq?: number }> = [];
  const sendFilter = (notification: Notification) => {
    const payload = JSON.parse(notification.payload);
    sent.push({ channel: notification.channel, expertJobId: payload.expertJobId, seq: payload.seq });
    return true;
  };
  const announced = (expertJobId: string) =>
    sent.filter((entry) => entry.channel === channels.checkpointCreated && entry.expertJobId === expertJobId).map((entry) => entry.seq);
  return { sent, sendFilter, announced };
}

async function watchedUntil(t: TestApp, expertJobId: string): Promise<string | null> {
  const [row] = await t.app.sql.query<{ watched_until: string | null }>(
    undefined,
    "SELECT watched_until::text FROM expert_job WHERE id = $1",
    [expertJobId],
  );
  return row!.watched_until;
}

describe("watch marks: a checkpoint is announced only while someone streams its job", () => {
  const record = recorder();
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp({ config: NO_SAFETY_READ, notifications: { sendFilter: record.sendFilter } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("a job nobody streams: its checkpoints are not announced, its status changes are", async () => {
    const job = await startJob(t.app, tenant);
    for (const stepNumber of [1, 2, 3])
      await postCheckpoint(t.app, tenant, job.id, { stepNumber, status: stepNumber === 1 ? "init" : "proceeding" });
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 4, status: "completed" });
    // Handed to the publisher before each write answered: queued (the start), processing (step 1), completed (step 4).
    const statusChanges = record.sent.filter((entry) => entry.expertJobId === job.id && entry.channel === channels.expertJobChanged);
    expect(statusChanges).toHaveLength(3);
    expect(record.announced(job.id)).toEqual([]);
    expect(await watchedUntil(t, job.id)).toBeNull();
  });

  it("a stream opened on a running job: every later checkpoint is announced and arrives without a safety re-read", async () => {
    const job = await startJob(t.app, tenant);
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
    const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
    try {
      await stream.waitFor(1);
      expect(await watchedUntil(t, job.id)).not.toBeNull();
      for (const stepNumber of [2, 3, 4]) await postCheckpoint(t.app, tenant, job.id, { stepNumber });
      await stream.waitFor(4);
      expect(messageIds(stream)).toEqual(range(1, 4));
      expect(record.announced(job.id)).toEqual([2, 3, 4]);
      expect(t.app.streamHub.safetyWakes).toBe(0);
    } finally {
      stream.close();
    }
  });

  it("a stream opened on a queued job: the job is not marked while queued (a claim never meets the mark's lock), and is once it runs", async () => {
    const job = await startJob(t.app, tenant);
    const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
    try {
      await eventually(async () => t.app.streamHub.feedReads > 0 && t.app.streamHub.openStreams > 0);
      expect(await watchedUntil(t, job.id)).toBeNull();
      // Step 1 moves the job to processing: its status change wakes the stream, whose next read marks the job.
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
      await stream.waitFor(1);
      await eventually(async () => (await watchedUntil(t, job.id)) !== null);
      for (const stepNumber of [2, 3]) await postCheckpoint(t.app, tenant, job.id, { stepNumber });
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 4, status: "completed" });
      await stream.ended;
      expect(messageIds(stream)).toEqual(range(1, 4));
      // Step 1 found the job queued, so unmarked: the stream's read after its status change brought it.
      expect(record.announced(job.id)).toEqual([2, 3, 4]);
      expect(t.app.streamHub.safetyWakes).toBe(0);
    } finally {
      stream.close();
    }
  });

  it("the application's job-change stream: a job running before it opened, and one started after, have their steps announced", async () => {
    const before = await startJob(t.app, tenant);
    await postCheckpoint(t.app, tenant, before.id, { stepNumber: 1, status: "init" });
    const stream = await openSse(base + changesPath, { authorization: `Bearer ${tenant.clientKey}` });
    try {
      // The stream's first comment follows the marks.
      await eventually(async () => stream.comments.length > 0);
      expect(await watchedUntil(t, before.id)).not.toBeNull();
      await postCheckpoint(t.app, tenant, before.id, { stepNumber: 2 });
      const after = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, after.id, { stepNumber: 1, status: "init" });
      await eventually(async () => (await watchedUntil(t, after.id)) !== null);
      await postCheckpoint(t.app, tenant, after.id, { stepNumber: 2 });
      const steps = () => stream.events.map((event) => JSON.parse(event.data)).map((job) => [job.id, job.currentStep]);
      await eventually(async () => JSON.stringify(steps()).includes(JSON.stringify([after.id, 2])));
      expect(steps()).toEqual(
        expect.arrayContaining([
          [before.id, 2],
          [after.id, 2],
        ]),
      );
      expect(record.announced(before.id)).toEqual([2]);
      expect(record.announced(after.id)).toEqual([2]);
    } finally {
      stream.close();
    }
  });
});

describe("watch marks are leases", () => {
  it("renewed by the safety re-reads while the stream is open, lapsed once it closed: then nothing is announced", async () => {
    const record = recorder();
    const t = await startTestApp({
      config: { notifySafetyIntervalMs: 100 },
      watchLeaseMs: 600,
      notifications: { sendFilter: record.sendFilter },
    });
    try {
      const tenant = await seedTenant(t.app);
      const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const job = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
      const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
      await stream.waitFor(1);
      // Three leases long: without renewals the mark would lapse twice over.
      for (const stepNumber of [2, 3, 4]) {
        await new Promise((resolve) => setTimeout(resolve, 600));
        await postCheckpoint(t.app, tenant, job.id, { stepNumber });
      }
      await stream.waitFor(4);
      expect(record.announced(job.id)).toEqual([2, 3, 4]);
      stream.close();
      await eventually(async () => t.app.streamHub.openStreams === 0);
      await new Promise((resolve) => setTimeout(resolve, 700));
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 5 });
      expect(record.announced(job.id)).toEqual([2, 3, 4]);
    } finally {
      await t.close();
    }
  });
});

/** A conversation that grows by ~10 KB of text a step, as the runtime posts it: the previous one plus the step's message. */
function grownConversation(steps: number) {
  const conversation: unknown[] = [instructionMessage("You help."), userMessage("Research it")];
  for (let step = 1; step <= steps; step++) conversation.push(expertMessage(textPart(`step ${step} `.padEnd(10_000, "x"))));
  return (stepNumber: number) => {
    const messages = conversation.slice(0, 2 + stepNumber);
    return {
      stepNumber,
      status: stepNumber === 1 ? ("init" as const) : ("proceeding" as const),
      messages,
      newMessages: [messages.at(-1)!],
    };
  };
}

for (const backend of backendCases) {
  describe.skipIf(!usingPostgres() || backend.skip !== undefined)(
    `two instances, notifications over ${backend.name} (${backend.skip ?? "Postgres only: PGlite is one process"})`,
    () => {
      it("a stream on B of a 100-step job of ~10 KB a step posted to A: A announces every checkpoint after B's mark", async () => {
        const db = await createTestDatabase();
        const record = recorder();
        const config = { notify: backend.notify(db), ...NO_SAFETY_READ };
        const a = await startTestApp({ db, config, notifications: { sendFilter: record.sendFilter } });
        const b = await startTestApp({ db, config });
        try {
          const grownCheckpoint = grownConversation(100);
          const tenant = await seedTenant(a.app);
          const job = await startJob(a.app, tenant);
          await postCheckpoint(a.app, tenant, job.id, grownCheckpoint(1));
          const baseB = await b.app.listen({ port: 0, host: "127.0.0.1" });
          const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
          await stream.waitFor(1);
          for (let stepNumber = 2; stepNumber <= 100; stepNumber++)
            await postCheckpoint(a.app, tenant, job.id, grownCheckpoint(stepNumber));
          await stream.waitFor(100, 30_000);
          expect(messageIds(stream)).toEqual(range(1, 100));
          expect(JSON.parse(stream.events.at(-1)!.data).messages).toHaveLength(102);
          // Step 1 came before the stream, so before the mark: the stream's first read brought it.
          expect(record.announced(job.id)).toEqual(range(2, 100).map(Number));
          expect(b.app.streamHub.safetyWakes).toBe(0);
          stream.close();
        } finally {
          await a.close();
          await b.close();
          await db.drop();
        }
      }, 60_000);
    },
  );
}
