import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@expert-jobs/client";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, eventually, seedTenant, type Tenant } from "../../helpers/fixtures.ts";
import { INTERACTIVE_ANSWER, postGrownJob, replayTrace, traceLines, type TraceName } from "../../helpers/corpus.ts";
import { openSse, type SseEvent, type SseStream } from "../../helpers/sse.ts";

/*
 * Streams at the sizes agents produce: every checkpoint carries the whole conversation, so a job of n
 * steps streams about n²/2 × (bytes per step), and one file read can make an event of many megabytes.
 */

const streamPath = (jobId: string, query = "") => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream${query}`;
const messages = (stream: SseStream) => stream.events.filter((event) => event.event === "message");
const ids = (events: SseEvent[]) => events.map((event) => Number(event.id));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => from + index);
const MiB = 1024 * 1024;

/** The checkpoint JSON exactly as GET answers it (the envelope cut off, not re-serialised). */
async function getText(t: TestApp, tenant: Tenant, jobId: string, checkpointId: string, query = ""): Promise<string> {
  const response = await api(t.app, tenant.clientKey).get(`/expert_jobs/${jobId}/checkpoints/${checkpointId}${query}`);
  expect(response.statusCode).toBe(200);
  return response.body.slice('{"data":{"checkpoint":'.length, -2);
}

/** A raw HTTP stream whose socket the test reads or stops reading at will (kernel buffers fill, then the server's). */
function rawStream(base: string, path: string, key: string): { socket: Socket; received: () => string; closed: Promise<void> } {
  const url = new URL(base);
  const socket = connect(Number(url.port), url.hostname);
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n\r\n`);
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  return { socket, received: () => Buffer.concat(chunks).toString(), closed };
}

describe("streams at real sizes", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 60_000 }, streamDelivery: { stallTimeoutMs: 1_500 }, captureLogs: true });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  const open = (jobId: string, query = "", headers: Record<string, string> = {}) =>
    openSse(base + streamPath(jobId, query), { authorization: `Bearer ${tenant.clientKey}`, ...headers });

  it("replays a 60-step job of ~10 KB per step with full messages, fresh and from a Last-Event-ID, byte for byte as GET", async () => {
    const job = await postGrownJob(t.app, tenant, { steps: 60, bytesPerStep: 10_000 });
    expect(job.bodyBytes.at(-1)).toBeGreaterThan(600_000);

    const fresh = await open(job.expertJobId);
    await fresh.ended;
    expect(ids(messages(fresh))).toEqual(range(1, 60));
    expect(fresh.events.at(-1)).toMatchObject({ event: "complete" });
    expect(JSON.parse(fresh.events.at(-1)!.data)).toEqual({ status: "completed", expertJobId: job.expertJobId });
    const frames = messages(fresh);
    for (const [index, checkpoint] of job.checkpoints.entries()) {
      expect(frames[index]!.data).toBe(await getText(t, tenant, job.expertJobId, checkpoint.id));
    }
    expect(frames.reduce((bytes, event) => bytes + event.data.length, 0)).toBeGreaterThan(18 * 1_000_000);

    const resumed = await open(job.expertJobId, "", { "last-event-id": "37" });
    await resumed.ended;
    expect(ids(messages(resumed))).toEqual(range(38, 60));
    expect(messages(resumed).map((event) => event.data)).toEqual(frames.slice(37).map((event) => event.data));
    expect(resumed.events.at(-1)!.event).toBe("complete");
    expect(t.logs.filter((line) => line.includes("cut off"))).toEqual([]);
  }, 120_000);

  it("streams a ≥ 12 MB event (a 3 MB file read) whole: fresh, from Last-Event-ID 0, with exclude=messages, live, and everything after it", async () => {
    const live = await (async () => {
      const { id } = (
        await api(t.app, tenant.clientKey).post("/expert_jobs", { expertKey: tenant.expert.key, query: "Read the log" })
      ).json().data.expertJob;
      return { id: id as string, stream: await open(id) };
    })();
    const job = await postGrownJob(t.app, tenant, {
      expertJobId: live.id,
      steps: 6,
      bytesPerStep: 8_000,
      largeRead: { step: 4, bytes: 3 * MiB },
    });
    const bigId = job.checkpoints[3]!.id;
    const big = await getText(t, tenant, job.expertJobId, bigId);
    expect(Buffer.byteLength(big)).toBeGreaterThanOrEqual(12 * MiB);

    for (const stream of [live.stream, await open(job.expertJobId), await open(job.expertJobId, "", { "last-event-id": "0" })]) {
      await stream.ended;
      expect(ids(messages(stream))).toEqual(range(1, 6));
      expect(messages(stream)[3]!.data).toBe(big);
      expect(stream.events.at(-1)!.event).toBe("complete");
    }
    const light = await open(job.expertJobId, "?exclude=messages");
    await light.ended;
    expect(ids(messages(light))).toEqual(range(1, 6));
    expect(messages(light)[3]!.data).toBe(await getText(t, tenant, job.expertJobId, bigId, "?exclude=messages"));
    const timeline = await open(job.expertJobId, "?exclude=messages,newMessages,toolCall,toolResult,actionContent");
    await timeline.ended;
    expect(ids(messages(timeline))).toEqual(range(1, 6));
    expect(messages(timeline)[3]!.data.length).toBeLessThan(2_000);
  }, 120_000);

  it.each<TraceName>(["long-research", "delegation", "exceeded-max-steps"])(
    "replays the %s trace to a fresh stream exactly as GET answers each checkpoint",
    async (name) => {
      const replayed = await replayTrace(t.app, tenant, name);
      const stream = await open(replayed.expertJobId);
      await stream.ended;
      const lines = traceLines(name);
      expect(ids(messages(stream))).toEqual(range(1, lines.length));
      for (const [index, checkpoint] of replayed.checkpoints.entries()) {
        expect(messages(stream)[index]!.data).toBe(JSON.stringify(checkpoint));
      }
      expect(stream.events.at(-1)!.event).toBe("complete");
    },
    120_000,
  );

  it("follows the interactive trace live across its pause and continue: complete at the pause, the rest after a resume", async () => {
    let first: SseStream | undefined;
    const replayed = await replayTrace(t.app, tenant, "interactive", {
      afterPost: async (line, checkpoint) => {
        if (line === 1) {
          first = await open(checkpoint.expertJobId, "", { "last-event-id": "0" });
          await first.waitFor(1);
        }
        if (line === 4) {
          await first!.ended;
          expect(ids(messages(first!))).toEqual(range(1, 4));
          expect(JSON.parse(first!.events.at(-1)!.data)).toEqual({
            status: "requestInteractiveToolResult",
            expertJobId: checkpoint.expertJobId,
          });
        }
      },
    });
    const resumed = await open(replayed.expertJobId, "", { "last-event-id": "4" });
    await resumed.ended;
    expect(ids(messages(resumed))).toEqual(range(5, 9));
    expect(messages(resumed).map((event) => event.data)).toEqual(
      replayed.checkpoints.slice(4).map((checkpoint) => JSON.stringify(checkpoint)),
    );
    expect(JSON.parse(resumed.events.at(-1)!.data)).toEqual({ status: "completed", expertJobId: replayed.expertJobId });
    expect(INTERACTIVE_ANSWER.interactiveToolCallResult).toBe(true);
  }, 60_000);

  it("serves fast subscribers everything while stalled ones are cut off after the stall timeout, then resume with Last-Event-ID", async () => {
    const job = await postGrownJob(t.app, tenant, { steps: 40, bytesPerStep: 20_000 });
    const cutOffsBefore = t.logs.filter((line) => line.includes("cut off")).length;
    const stalled = [0, 1].map(() => rawStream(base, streamPath(job.expertJobId), tenant.clientKey));
    for (const { socket } of stalled) socket.pause();
    const fast = await Promise.all([open(job.expertJobId), open(job.expertJobId, "?exclude=messages"), open(job.expertJobId)]);
    for (const stream of fast) {
      await stream.ended;
      expect(ids(messages(stream))).toEqual(range(1, 40));
      expect(stream.events.at(-1)!.event).toBe("complete");
    }
    // ~16 MB of history: more than loopback's socket buffers take, so both stalled sockets are blocked.
    await eventually(async () => t.app.streamHub.openStreams === 0, 15_000);
    const cutOffs = t.logs
      .slice()
      .filter((line) => line.includes("cut off"))
      .slice(cutOffsBefore);
    expect(cutOffs).toHaveLength(2);
    for (const line of cutOffs) expect(JSON.parse(line)).toMatchObject({ reason: "stalled", expertJobId: job.expertJobId });

    for (const { socket, closed, received } of stalled) {
      socket.resume();
      await closed;
      // What the kernel had taken arrives; the last whole event in it is where the client resumes.
      const delivered = [...received().matchAll(/\nid: (\d+)\nevent: message\ndata: [^\n]*\n\n/g)].map((match) => Number(match[1]));
      expect(delivered.length).toBeGreaterThan(0);
      expect(delivered).toEqual(range(1, delivered.length));
      expect(delivered.length).toBeLessThan(40);
      const resumed = await open(job.expertJobId, "", { "last-event-id": String(delivered.at(-1)) });
      await resumed.ended;
      expect(ids(messages(resumed))).toEqual(range(delivered.length + 1, 40));
    }
  }, 120_000);

  it("the typed client follows a 100-step job with a 12 MB checkpoint from the start and from a Last-Event-ID, losing and repeating nothing", async () => {
    const client = createClient({ baseUrl: base, apiKey: tenant.clientKey });
    const start = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Go", maxSteps: 200 });
    const live = (async () => {
      const seen: number[] = [];
      let status: string | undefined;
      for await (const event of client.expertJobs.checkpoints.stream(start.id)) {
        if (event.type === "checkpoint") seen.push(event.id);
        else status = event.status;
      }
      return { seen, status };
    })();
    const job = await postGrownJob(t.app, tenant, {
      expertJobId: start.id,
      steps: 100,
      bytesPerStep: 10_000,
      largeRead: { step: 50, bytes: 3 * MiB },
    });
    expect(Buffer.byteLength(await getText(t, tenant, start.id, job.checkpoints[49]!.id))).toBeGreaterThan(12 * MiB);
    expect(await live).toEqual({ seen: range(1, 100), status: "completed" });

    const resumed: Array<{ id: number; checkpointId: string; messages: number }> = [];
    for await (const event of client.expertJobs.checkpoints.stream(start.id, { after: 42 })) {
      if (event.type === "checkpoint")
        resumed.push({ id: event.id, checkpointId: event.checkpoint.id, messages: event.checkpoint.messages!.length });
    }
    expect(resumed.map((event) => event.id)).toEqual(range(43, 100));
    expect(resumed.map((event) => event.checkpointId)).toEqual(job.checkpoints.slice(42).map((checkpoint) => checkpoint.id));
    expect(resumed.map((event) => event.messages)).toEqual(job.checkpoints.slice(42).map((checkpoint) => checkpoint.messages.length));
  }, 180_000);
});

describe("a stream that falls behind a job posting faster than it reads", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 60_000 }, streamDelivery: { maxLagEvents: 5 }, captureLogs: true });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("is cut off past SSE_MAX_LAG_EVENTS and the typed client resumes where it was, missing and repeating nothing", async () => {
    const client = createClient({ baseUrl: base, apiKey: tenant.clientKey });
    const start = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Go", maxSteps: 200 });
    const reconnects: unknown[] = [];
    const reading = (async () => {
      const seen: number[] = [];
      for await (const event of client.expertJobs.checkpoints.stream(start.id, {
        retry: { initialDelayMs: 50, maxDelayMs: 200 },
        onReconnect: (info) => reconnects.push(info),
      })) {
        if (event.type !== "checkpoint") break;
        seen.push(event.id);
        // A reader much slower than the runtime: each ~1 MB event takes it 150 ms.
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      return seen;
    })();
    await postGrownJob(t.app, tenant, { expertJobId: start.id, steps: 40, bytesPerStep: 25_000 });
    expect(await reading).toEqual(range(1, 40));
    const cutOffs = t.logs.filter((line) => line.includes("cut off")).map((line) => JSON.parse(line));
    expect(cutOffs.length).toBeGreaterThan(0);
    expect(cutOffs.every((line) => line.reason === "lagging" && line.behind > 5)).toBe(true);
    expect(reconnects.length).toBeGreaterThanOrEqual(cutOffs.length);
  }, 120_000);
});
