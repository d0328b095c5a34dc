import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grownJobBodies } from "../helpers/corpus.ts";
import type { Tenant } from "../helpers/fixtures.ts";
import { createServerStore, seedThroughAdmin, startServerProcess, type ServerProcess, type ServerStore } from "./helpers/server-process.ts";

/*
 * The memory bound of stream delivery, measured on the server as its own process: 200 fresh streams replay
 * a 200-step job (~10 KB per step, full messages: ~200 MB of frames each) while 50 of them stop reading.
 *
 * The bound (README, "Streams"): above its idle RSS, the server holds at most its feed cache
 * (SSE_CACHE_BYTES), the read in progress (SSE_BATCH_BYTES, or one event if larger), one event per
 * blocked socket (shared when they wait on the same event) and a fixed ~64 KiB per subscriber, plus the
 * JavaScript heap's garbage between collections. For this job (events ≤ 2.1 MB) that is under
 * 32 + 4 + 50 × 2.1 + 200 × 0.064 + 64 ≈ 220 MiB in the worst case; the test holds it to that.
 */

const MiB = 1024 * 1024;
const STEPS = 200;
// Long enough that the 150 readers sharing this one test process are not taken for stalled on a busy
// machine (it costs nothing: the replay takes longer).
const STALL_TIMEOUT_MS = 20_000;

const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;

/**
 * Reads a stream as fast as it comes, keeping only counts: the ids of its events in order, bytes, and
 * whether it completed. Like a real client it resumes with Last-Event-ID when the stream ends before
 * `complete` or is refused (a 503 while the server sheds load), unless `resume` is off.
 */
function fastReader(url: string, path: string, key: string, { resume = true } = {}) {
  const { hostname, port } = new URL(url);
  const state = { bytes: 0, ids: [] as number[], completed: false, reconnects: 0 };
  // The id of the frame being received: it counts once the next frame (or `complete`) starts, as an
  // EventSource counts an event only once it is whole.
  let pending: number | undefined;
  const seen = (id: number) => {
    if (pending !== undefined) state.ids.push(pending);
    pending = id;
  };
  let socket!: Socket;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  // Event ids sit at a line start, and JSON data holds no raw newline: only frame starts match "\nid: ".
  const scan = (buffer: Buffer, accept: (start: number, end: number) => boolean) => {
    for (let at = buffer.indexOf("\nid: "); at !== -1; at = buffer.indexOf("\nid: ", at + 1)) {
      const end = buffer.indexOf("\n", at + 5);
      if (end !== -1 && accept(at, end)) seen(Number(buffer.toString("latin1", at + 5, end)));
    }
  };
  const open = () => {
    socket = connect(Number(port), hostname);
    const lastEventId = state.ids.at(-1);
    socket.write(
      `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n${lastEventId ? `Last-Event-ID: ${lastEventId}\r\n` : ""}\r\n`,
    );
    let carry = Buffer.alloc(0);
    let refused: boolean | undefined;
    socket.on("data", (chunk: Buffer) => {
      refused ??= !chunk.toString("latin1", 0, 12).startsWith("HTTP/1.1 200");
      state.bytes += chunk.length;
      if (refused) return;
      // An id split between two chunks: it starts in the previous one's tail and ends in this one.
      const seam = Buffer.concat([carry, chunk.subarray(0, 64)]);
      scan(seam, (start, end) => start < carry.length && end >= carry.length);
      scan(chunk, () => true);
      if (seam.includes("event: complete") || chunk.includes("event: complete")) {
        if (pending !== undefined) state.ids.push(pending);
        pending = undefined;
        state.completed = true;
        socket.destroy();
      }
      carry = Buffer.from(chunk.subarray(Math.max(0, chunk.length - 32)));
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      pending = undefined;
      if (state.completed || !resume || state.reconnects >= 20) return resolveDone();
      state.reconnects++;
      setTimeout(open, 500);
    });
  };
  open();
  return { socket: () => socket, state, done };
}

const env = { SSE_STALL_TIMEOUT_MS: String(STALL_TIMEOUT_MS), RATE_LIMIT_PER_MINUTE: "0", MAX_STREAMS_PER_KEY: "1000" };

describe("stream memory with 200 subscribers replaying ~200 MB each, 50 of them stalled", () => {
  let store: ServerStore;
  let server: ServerProcess;
  let tenant: Tenant;
  let jobId: string;

  beforeAll(async () => {
    store = await createServerStore();
    server = await startServerProcess(store, env);
    tenant = await seedThroughAdmin(server);
    const started = await fetch(`${server.url}/api/studio/v1/expert_jobs`, {
      method: "POST",
      headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json" },
      body: JSON.stringify({ expertKey: tenant.expert.key, query: "Research", maxSteps: STEPS + 10 }),
    });
    jobId = (await started.json()).data.expertJob.id;
    for (const body of grownJobBodies(tenant, { steps: STEPS, bytesPerStep: 10_000 })) {
      const response = await fetch(`${server.url}/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.runtimeKey}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (response.status !== 200) throw new Error(`step ${body.step.stepNumber}: ${response.status} ${await response.text()}`);
      await response.arrayBuffer();
    }
    // A fresh process serves the streams: the one that ingested 200 MB of bodies keeps its heap's pages.
    server.child.kill("SIGTERM");
    await server.exited;
    server = await startServerProcess(store, env);
  }, 600_000);
  afterAll(async () => {
    server?.child.kill("SIGTERM");
    await server?.exited;
    await store?.drop();
  });

  it("keeps RSS under the stated bound while the others get everything and the stalled are cut off", async () => {
    const path = `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
    // What every reader must receive: each checkpoint exactly as GET answers it.
    let frameBytes = 0;
    let largestEvent = 0;
    const list = await fetch(`${server.url}/api/studio/v1/expert_jobs/${jobId}/checkpoints/?take=100&exclude=messages`, {
      headers: { authorization: `Bearer ${tenant.clientKey}` },
    });
    expect(list.status).toBe(200);
    for (let seq = 1; seq <= STEPS; seq += 100) {
      const page = await fetch(`${server.url}/api/studio/v1/expert_jobs/${jobId}/checkpoints/?take=100&skip=${seq - 1}`, {
        headers: { authorization: `Bearer ${tenant.clientKey}` },
      });
      for (const checkpoint of (await page.json()).data.checkpoints) {
        const bytes = Buffer.byteLength(JSON.stringify(checkpoint));
        largestEvent = Math.max(largestEvent, bytes);
        frameBytes += bytes;
      }
    }
    expect(frameBytes).toBeGreaterThan(200 * 1_000_000);

    const metric = async (name: string) => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? 0);
    };
    // Warm up with one full replay (code paths compiled, the database's caches filled), then take the
    // resting RSS: what 200 subscribers add is measured against one.
    const warmUp = fastReader(server.url, path, tenant.clientKey);
    await warmUp.done;
    expect(warmUp.state.ids).toHaveLength(STEPS);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const idle = rssBytes(server.child.pid!);
    let peak = idle;
    let heldPeak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(server.child.pid!))), 50);
    const heldSampler = setInterval(
      async () => (heldPeak = Math.max(heldPeak, await metric("expert_jobs_stream_held_bytes").catch(() => 0))),
      500,
    );
    const stalled = Array.from({ length: 50 }, () => {
      const reader = fastReader(server.url, path, tenant.clientKey, { resume: false });
      reader.socket().pause();
      return reader;
    });
    const started = Date.now();
    const readers = Array.from({ length: 150 }, () => fastReader(server.url, path, tenant.clientKey));
    await Promise.all(readers.map((reader) => reader.done));
    const replayMs = Date.now() - started;

    const deadline = Date.now() + STALL_TIMEOUT_MS * 3 + 10_000;
    while ((await metric('expert_jobs_stream_cutoffs_total\\{reason="stalled"\\}')) < 50 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    clearInterval(sampler);
    clearInterval(heldSampler);
    const openStreams = await metric("expert_jobs_open_streams");
    const reads = await metric("expert_jobs_stream_reads_total");
    const builtBytes = await metric("expert_jobs_stream_frame_bytes_total");
    const stalledCutOff = await metric('expert_jobs_stream_cutoffs_total\\{reason="stalled"\\}');
    // Reading what the kernel kept for them shows each stalled stream's end: the server closed it.
    for (const reader of stalled) reader.socket().resume();
    await Promise.all(stalled.map((reader) => reader.done));

    const bound = 32 * MiB + 4 * MiB + 50 * largestEvent + 200 * 64 * 1024 + 64 * MiB;
    console.log(
      `stream memory: ${STEPS} steps, ${(frameBytes / 1e6).toFixed(0)} MB of frames per stream, largest event ${(largestEvent / 1e6).toFixed(2)} MB; ` +
        `150 readers got it all in ${replayMs} ms (${((150 * frameBytes) / 1e6 / (replayMs / 1000)).toFixed(0)} MB/s delivered); ` +
        `RSS idle ${(idle / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB (+${((peak - idle) / MiB).toFixed(0)} MiB, bound +${(bound / MiB).toFixed(0)} MiB); ` +
        `readers reconnected ${readers.reduce((sum, reader) => sum + reader.state.reconnects, 0)} times; held by streams at most ${(heldPeak / MiB).toFixed(0)} MiB; stalled cut off: ${stalledCutOff}; ${reads} reads built ${(builtBytes / 1e6).toFixed(0)} MB of frames`,
    );
    for (const reader of readers) {
      expect(reader.state.completed).toBe(true);
      expect(reader.state.ids).toEqual(Array.from({ length: STEPS }, (_, index) => index + 1));
      // Headers, frame lines and the complete event come on top of the checkpoints' JSON.
      expect(reader.state.bytes).toBeGreaterThan(frameBytes);
    }
    // Readers sharing this process may be taken for stalled on a busy machine too; they resumed (above).
    expect(stalledCutOff).toBeGreaterThanOrEqual(50);
    for (const reader of stalled) {
      expect(reader.state.completed).toBe(false);
      expect(reader.state.ids.length).toBeLessThan(STEPS);
    }
    expect(openStreams).toBe(0);
    expect(peak - idle).toBeLessThan(bound);
  }, 600_000);
});
