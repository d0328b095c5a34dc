/**
 * The benchmark suite (issues 5 and 10): the server on real PostgreSQL, started the way README says,
 * driven over HTTP from this process, and raw `pg` doing the same work in the same run, so the ratios hold
 * even on a noisy shared machine. P1–P4 and startup are here; replay throughput and the measures on the
 * real-runtime corpus are in bench/measures/.
 *
 *   npm run bench                  full run (≈ 15 min on a quiet 2-core machine)
 *   npm run bench -- --quick       smaller sizes (≈ 4 min)
 *   npm run bench -- --only p1,p2  some measures only (startup p1 p2 p3 p4 p5 floor length replay corpus); JSON only, BENCHMARKS.md untouched
 *   npm run bench -- --notify after-commit,nats,off   P5's server notification designs (bench/measures/commit-scaling.ts; default: all)
 *   npm run bench -- --profile     writes the server's V8 CPU profile to bench/results/profiles/
 *   npm run bench -- --report bench/results/<run>.json   rewrites BENCHMARKS.md from a run, without measuring
 *
 * DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) is only used to create and drop a
 * throwaway database. Results: bench/results/<date>.json and .svg, and BENCHMARKS.md regenerated.
 */
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import { CpuMeter, perOperation } from "./lib/cpu.ts";
import {
  rawCheckpoint,
  RawListener,
  rawReadCheckpoints,
  rawSteps,
  seedLongJob,
  withDatabase,
  type RawJob,
  type RawStep,
} from "./lib/db.ts";
import { drive, jobsFor } from "./lib/drive.ts";
import { HttpClient } from "./lib/http.ts";
import { scrapeMetrics, streamTimings, streamWork } from "./lib/metrics.ts";
import { jobBodies, openingMessages, prose, RUN_ID, step as makeStep, usage } from "./lib/payloads.ts";
import { writeReport } from "./lib/report.ts";
import { startServer, watchMemory, type RunningServer } from "./lib/server.ts";
import { openStreams } from "./lib/sse-clients.ts";
import { seedTenant, startJobs, type Tenant } from "./lib/tenant.ts";
import { measureCorpus } from "./measures/corpus.ts";
import { measureReplay } from "./measures/replay.ts";
import { measureCommitScaling, SERVER_DESIGNS } from "./measures/commit-scaling.ts";
import { measureFloor, measureLength, startFloor } from "./measures/floor.ts";
import { median, nowMs, summarize, type Summary } from "./lib/stats.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-report": { type: "boolean", default: false },
    /** Rewrites BENCHMARKS.md from an existing results file, without measuring. */
    report: { type: "string" },
    /** P5's server notification designs, by name (SERVER_DESIGNS in bench/measures/commit-scaling.ts). */
    notify: { type: "string" },
  },
});
const quick = args.quick;
const MEASURES = ["startup", "p1", "p2", "p3", "p4", "p5", "floor", "length", "replay", "corpus"];
const only = new Set((args.only ?? MEASURES.join(",")).split(",").map((name) => name.trim()));
const unknown = [...only].filter((name) => !MEASURES.includes(name));
if (unknown.length > 0) throw new Error(`--only: unknown measure(s) ${unknown.join(", ")}; known: ${MEASURES.join(", ")}`);

const EVENT_SIZES = [
  { name: "~5 KB", conversationBytes: 0 },
  { name: "~100 KB", conversationBytes: 100_000 },
  { name: "~1 MB", conversationBytes: 1_000_000 },
];

/** P2's event counts at each size, by subscriber count. */
const withEvents = (...events: Array<Record<number, number>>) => EVENT_SIZES.map((size, index) => ({ ...size, events: events[index]! }));

const designs = args.notify ? args.notify.split(",").map((name) => name.trim()) : Object.keys(SERVER_DESIGNS);
const settings = quick
  ? {
      p1: {
        concurrency: [1, 8, 32],
        steps: 20,
        stepBytes: 8_192,
        postsPerLevel: { 1: 40, 8: 160, 32: 640 } as Record<number, number>,
        rounds: 1,
      },
      p2: {
        subscribers: [1, 100, 1_000],
        sizes: withEvents({ 1: 150, 100: 40, 1_000: 20 }, { 1: 60, 100: 20, 1_000: 10 }, { 1: 40, 100: 10, 1_000: 5 }),
      },
      p3: { streams: 2_000, events: 2, settleMs: 5_000, sizes: EVENT_SIZES },
      replay: { steps: 100, stepBytes: 10_000, subscribers: [1, 10, 100] },
      corpus: { ingestRounds: 1, readSamples: 8 },
      p4: { steps: 200, stepBytes: 2_048, checkpoints: 100_000, samples: 15 },
      p5: { concurrency: [16, 64, 128], steps: 10, stepBytes: 2_048, postsPerRuntime: 10, rounds: 1, designs },
      floor: { concurrency: 32, steps: 20, stepBytes: 8_192, posts: 640, rounds: 1 },
      length: { steps: 1_000, stepBytes: 2_048, at: [10, 100, 1_000], window: 5 },
      startup: { repeats: 1 },
    }
  : {
      p1: {
        concurrency: [1, 8, 32],
        steps: 30,
        stepBytes: 8_192,
        postsPerLevel: { 1: 150, 8: 480, 32: 1_920 } as Record<number, number>,
        rounds: 3,
      },
      p2: {
        subscribers: [1, 100, 1_000],
        // Fewer events where they grow the conversation most against its size (the ~100 KB events span ±50%).
        sizes: withEvents({ 1: 400, 100: 100, 1_000: 60 }, { 1: 100, 100: 60, 1_000: 30 }, { 1: 200, 100: 40, 1_000: 15 }),
      },
      p3: { streams: 10_000, events: 3, settleMs: 15_000, sizes: EVENT_SIZES },
      replay: { steps: 200, stepBytes: 10_000, subscribers: [1, 10, 100] },
      corpus: { ingestRounds: 3, readSamples: 30 },
      p4: { steps: 1_000, stepBytes: 2_048, checkpoints: 100_000, samples: 40 },
      p5: { concurrency: [16, 64, 128], steps: 20, stepBytes: 2_048, postsPerRuntime: 30, rounds: 3, designs },
      floor: { concurrency: 32, steps: 30, stepBytes: 8_192, posts: 1_920, rounds: 3 },
      length: { steps: 1_000, stepBytes: 2_048, at: [10, 100, 1_000], window: 10 },
      startup: { repeats: 3 },
    };

const adminUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const ADMIN_TOKEN = `bench-admin-${randomBytes(12).toString("hex")}`;
const SECRETS_KEY = randomBytes(32).toString("base64");
const stamp = new Date().toISOString().slice(0, 16).replace(/:/g, "");
const resultsDir = path.resolve("bench/results");
const scratch = await mkdtemp(path.join(os.tmpdir(), "ej-bench-"));
const log = (...parts: unknown[]) => console.log(`[${((nowMs() - t0) / 1000).toFixed(1).padStart(6)}s]`, ...parts);
const t0 = nowMs();

/** A client that a failed run's DROP DATABASE … WITH (FORCE) may cut off without crashing the bench. */
function connection(url: string): pg.Client {
  const client = new pg.Client({ connectionString: url });
  client.on("error", (error) => log("database connection lost:", error.message));
  return client;
}

const rawJob = (tenant: Tenant, id: string): RawJob => ({ id, expertId: tenant.expert.id, expertKey: tenant.expert.key });

async function measureIngest(server: RunningServer, http: HttpClient, tenant: Tenant, url: string) {
  const { concurrency, steps, stepBytes, postsPerLevel, rounds } = settings.p1;
  const bodies = jobBodies(tenant.expert, steps, stepBytes);
  const raw = rawSteps(steps, stepBytes);
  // idleTimeoutMillis 0: the pool keeps its connections, so the CPU meter sees the same backends throughout.
  const pool = new pg.Pool({ connectionString: url, max: 10, idleTimeoutMillis: 0 });
  pool.on("error", () => {});
  const meter = new CpuMeter(url, () => server.pid);
  // One runtime key per concurrent runtime and run, each well under the per-key rate limit.
  let keys: string[] = [];
  const serverPost = async (jobId: string, index: number, worker: number) => {
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, keys[worker]!, bodies[index]!);
    if (response.status !== 200) throw new Error(`checkpoint post: ${response.status} ${response.body.toString().slice(0, 300)}`);
  };
  const rawPost = async (jobId: string, index: number) => void (await rawCheckpoint(pool, rawJob(tenant, jobId), raw[index]!));

  log("P1 warm-up");
  keys = await tenant.runtimeKeys.many(4);
  await drive(4, 4 * steps, steps, await startJobs(http, tenant, 4), serverPost);
  await drive(4, 4 * steps, steps, await startJobs(http, tenant, 4), rawPost);

  const levels = [];
  for (const workers of concurrency) {
    const posts = postsPerLevel[workers]!;
    type Run = Awaited<ReturnType<typeof drive>> & { cpu: ReturnType<typeof perOperation> };
    const serverRuns: Run[] = [];
    const rawRuns: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      // Server and raw alternate, so drift in the machine's load hits both alike.
      const serverJobs = await startJobs(http, tenant, jobsFor(workers, posts, steps));
      const rawJobs = await startJobs(http, tenant, jobsFor(workers, posts, steps));
      keys = await tenant.runtimeKeys.many(workers);
      let stop = await meter.start();
      const serverRun = await drive(workers, posts, steps, serverJobs, serverPost);
      serverRuns.push({ ...serverRun, cpu: perOperation(await stop(), serverRun.posts) });
      stop = await meter.start();
      const rawRun = await drive(workers, posts, steps, rawJobs, rawPost);
      rawRuns.push({ ...rawRun, cpu: perOperation(await stop(), rawRun.posts) });
      const [s, r] = [serverRuns.at(-1)!, rawRuns.at(-1)!];
      log(
        `P1 c=${workers} round ${round + 1}: server ${s.perSecond}/s (CPU ms each: server ${s.cpu.serverMs}, postgres ${s.cpu.postgresMs}, bench ${s.cpu.benchMs}; machine ${s.cpu.machineBusyShare * 100}% busy), ` +
          `raw ${r.perSecond}/s (postgres ${r.cpu.postgresMs}, bench ${r.cpu.benchMs}; machine ${r.cpu.machineBusyShare * 100}% busy)`,
      );
    }
    // The median round's throughput (the mean of the middle two for an even count); latency and CPU of the round nearest to it.
    const pick = (runs: typeof serverRuns) => {
      const perSecond = Math.round(median(runs.map((run) => run.perSecond)) * 10) / 10;
      const nearest = [...runs].sort((a, b) => Math.abs(a.perSecond - perSecond) - Math.abs(b.perSecond - perSecond))[0]!;
      return { ...nearest, perSecond };
    };
    const serverRun = pick(serverRuns);
    const rawRun = pick(rawRuns);
    levels.push({
      concurrency: workers,
      server: serverRun,
      raw: rawRun,
      ratio: Math.round((serverRun.perSecond / rawRun.perSecond) * 1000) / 1000,
      rounds: { server: serverRuns.map((run) => run.perSecond), raw: rawRuns.map((run) => run.perSecond) },
    });
  }
  await pool.end();
  const sizes = bodies.map((body) => body.length);
  return {
    stepsPerJob: steps,
    stepBytes,
    bodyBytes: { min: sizes[0], mean: Math.round(sizes.reduce((a, b) => a + b, 0) / sizes.length), max: sizes.at(-1) },
    rawPoolSize: 10,
    levels,
    serverRssKiB: server.rssKiB(),
  };
}

/** The server lets one key hold 100 open streams; many subscribers use many keys, as many dashboards would. */
const STREAMS_PER_KEY = 90;

interface EventSize {
  name: string;
  /** The whole conversation each event carries, about (0: the events of one-step runs; the clients measure each event's bytes). */
  conversationBytes: number;
}

/**
 * A job whose events carry their whole conversation, about `size.conversationBytes` of it: a history of
 * ~10 KB steps committed before anyone subscribes, then `events` steps of ~1 KB each, as a long run goes
 * on. The history stops half the events' growth short of the size, so the events sit around it. The
 * smallest size is a job of one-step runs (each event a run of its own: its instruction, query and step).
 */
function sizedSteps(size: EventSize, events: number): { history: RawStep[]; events: RawStep[] } {
  const measuredStepBytes = 1_024;
  if (size.conversationBytes === 0) return { history: [], events: rawSteps(events, measuredStepBytes, { runLength: 1 }) };
  const historySteps = Math.max(0, Math.round((size.conversationBytes - (events * measuredStepBytes) / 2 - 1_600) / 10_000));
  const steps = rawSteps(historySteps + events, (n) => (n <= historySteps ? 10_000 : measuredStepBytes));
  return { history: steps.slice(0, historySteps), events: steps.slice(historySteps) };
}

async function commitAll(db: pg.Client, job: RawJob, steps: RawStep[]) {
  for (const step of steps) await rawCheckpoint(db, job, step);
}

const streamPath = (jobId: string, after = 0) =>
  `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream${after > 0 ? `?after=${after}` : ""}`;

async function measureDelivery(server: RunningServer, http: HttpClient, tenant: Tenant, url: string) {
  const port = Number(new URL(server.url).port);
  const sender = connection(url);
  await sender.connect();
  const reader = connection(url);
  await reader.connect();
  const sizes = [];
  for (const size of settings.p2.sizes) {
    const levels = [];
    let raw: { notify: Summary; read: Summary } | undefined;
    const eventBytes: number[] = [];
    for (const subscribers of settings.p2.subscribers) {
      const events = size.events[subscribers]!;
      const [jobId, rawJobId] = await startJobs(http, tenant, 2);
      // One more event than measured: the first warms the feed (its first read brings the whole conversation).
      const steps = sizedSteps(size, events + 1);
      await commitAll(sender, rawJob(tenant, jobId!), steps.history);
      const listener = subscribers === 1 ? new RawListener(url, rawJobId!) : undefined;
      if (listener) await commitAll(sender, rawJob(tenant, rawJobId!), steps.history);
      const crowd = await openStreams({
        port,
        path: streamPath(jobId!, steps.history.length),
        tokens: await tenant.clientKeys.many(Math.ceil(subscribers / STREAMS_PER_KEY)),
        count: subscribers,
        perWorker: 500,
      });
      if (crowd.failed > 0) throw new Error(`P2: ${crowd.failed} streams failed to open: ${crowd.errors.join("; ")}`);
      await listener?.start();
      const samples: number[] = [];
      const slowest: number[] = [];
      const rawSamples: number[] = [];
      const rawReadSamples: number[] = [];
      let missing = 0;
      const metricsBefore = await scrapeMetrics(http);
      const memory = watchMemory(server, async () => (await scrapeMetrics(http)).get("expert_jobs_stream_held_bytes") ?? 0);
      for (let index = 0; index <= events; index++) {
        let committedAt = 0;
        const seq = await rawCheckpoint(sender, rawJob(tenant, jobId!), steps.events[index]!, () => (committedAt = nowMs()));
        const arrived = await crowd.arrivals(seq, 120_000);
        if (listener) {
          // The same transaction on another job, watched by one plain LISTEN connection that then reads the event's row and whole conversation.
          let rawCommittedAt = 0;
          const arrival = listener.arrival(seq);
          await rawCheckpoint(sender, rawJob(tenant, rawJobId!), steps.events[index]!, () => (rawCommittedAt = nowMs()));
          const notifiedAt = await arrival;
          await rawReadCheckpoints(reader, rawJobId!, { seqs: [seq] });
          if (index > 0) {
            rawSamples.push(notifiedAt - rawCommittedAt);
            rawReadSamples.push(nowMs() - rawCommittedAt);
          }
        }
        if (index === 0) continue;
        missing += arrived.missing;
        if (arrived.eventBytes !== undefined) eventBytes.push(arrived.eventBytes);
        for (const time of arrived.times) samples.push(time - committedAt);
        if (arrived.times.length > 0) slowest.push(Math.max(...arrived.times) - committedAt);
        await sleep(2 + Math.random() * 8);
      }
      const held = memory.stop();
      await listener?.stop();
      await crowd.close();
      if (listener) raw = { notify: summarize(rawSamples), read: summarize(rawReadSamples) };
      const metricsAfter = await scrapeMetrics(http);
      const result = {
        subscribers,
        events,
        latency: summarize(samples),
        lastSubscriber: summarize(slowest),
        missing,
        server: { ...streamTimings(metricsBefore, metricsAfter), ...streamWork(metricsBefore, metricsAfter), ...held },
      };
      log(
        `P2 ${size.name}, ${subscribers} subscriber(s): p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, missed ${missing} (server: read ${result.server.readMsMean} ms mean, RSS max ${Math.round(held.rssMaxKiB / 1024)} MiB)${raw && subscribers === 1 ? `; raw p99 ${raw.notify.p99} ms, raw with read ${raw.read.p99} ms` : ""}`,
      );
      levels.push(result);
    }
    sizes.push({
      name: size.name,
      conversationBytes: size.conversationBytes,
      eventBytes: summarize(eventBytes),
      raw: raw!.notify,
      rawRead: raw!.read,
      levels,
    });
  }
  await sender.end();
  await reader.end();
  return { sizes };
}

/** P3 at one event size, on a fresh server process of its own (memory per stream is measured on it). */
async function measureConnections(server: RunningServer, http: HttpClient, tenant: Tenant, url: string, size: EventSize) {
  const { streams, events, settleMs } = settings.p3;
  const port = Number(new URL(server.url).port);
  const [jobId, warmJobId] = await startJobs(http, tenant, 2);
  const steps = sizedSteps(size, events);
  const sender = connection(url);
  await sender.connect();
  await commitAll(sender, rawJob(tenant, jobId!), steps.history);
  const tokens = await tenant.clientKeys.many(Math.ceil(streams / STREAMS_PER_KEY));
  // A fresh server process: warm its code paths with a few streams first, so the baseline is a running server.
  const warm = await openStreams({ port, path: streamPath(warmJobId!), tokens: tokens.slice(0, 2), count: 100, perWorker: 500 });
  await warm.close();
  await sleep(2_000);
  const rssBefore = server.rssKiB();
  const opening = nowMs();
  const crowd = await openStreams({
    port,
    path: streamPath(jobId!, steps.history.length),
    tokens,
    count: streams,
    perWorker: 2_500,
    parallel: 32,
  });
  const openMs = nowMs() - opening;
  await sleep(1_000);
  const rssOpened = server.rssKiB();
  // The garbage of 10,000 request handlings is collected once the burst is over (V8's memory reducer).
  await sleep(settleMs);
  const rssAfter = server.rssKiB();
  log(
    `P3 ${size.name}: ${crowd.open} streams open in ${(openMs / 1000).toFixed(1)} s (${crowd.failed} failed); RSS ${rssBefore} → ${rssOpened} (just opened) → ${rssAfter} KiB (settled)`,
  );
  const perEvent = [];
  const all: number[] = [];
  const eventBytes: number[] = [];
  let missing = 0;
  const metricsBefore = await scrapeMetrics(http);
  const memory = watchMemory(server);
  for (let index = 0; index < events; index++) {
    let committedAt = 0;
    const seq = await rawCheckpoint(sender, rawJob(tenant, jobId!), steps.events[index]!, () => (committedAt = nowMs()));
    const arrived = await crowd.arrivals(seq, 180_000);
    missing += arrived.missing;
    if (arrived.eventBytes !== undefined) eventBytes.push(arrived.eventBytes);
    const latencies = arrived.times.map((time) => time - committedAt);
    all.push(...latencies);
    perEvent.push({ ...summarize(latencies), eventBytes: arrived.eventBytes });
    log(
      `P3 ${size.name} event ${index + 1} (${arrived.eventBytes} bytes): p50 ${perEvent.at(-1)!.p50} ms, p99 ${perEvent.at(-1)!.p99} ms, max ${perEvent.at(-1)!.max} ms, missing ${arrived.missing}`,
    );
    await sleep(500);
  }
  await sender.end();
  const rssDuringEvents = memory.stop();
  const stream = streamWork(metricsBefore, await scrapeMetrics(http));
  await crowd.close();
  return {
    name: size.name,
    conversationBytes: size.conversationBytes,
    eventBytes: summarize(eventBytes),
    streams,
    open: crowd.open,
    failed: crowd.failed,
    openSeconds: Math.round(openMs / 100) / 10,
    serverOpenFilesLimit: server.openFilesLimit(),
    settleSeconds: settleMs / 1000,
    rssBeforeKiB: rssBefore,
    rssOpenedKiB: rssOpened,
    rssAfterKiB: rssAfter,
    perStreamJustOpenedKiB: Math.round(((rssOpened - rssBefore) / Math.max(1, crowd.open)) * 10) / 10,
    rssMaxDuringEventsKiB: rssDuringEvents.rssMaxKiB,
    rssAfterEventsKiB: rssDuringEvents.rssEndKiB,
    perStreamKiB: Math.round(((rssAfter - rssBefore) / Math.max(1, crowd.open)) * 10) / 10,
    latency: summarize(all),
    perEvent,
    missing,
    server: stream,
  };
}

async function measureHistory(http: HttpClient, tenant: Tenant, url: string) {
  const { steps, stepBytes, checkpoints, samples } = settings.p4;
  const db = connection(url);
  await db.connect();
  const tableBytes = async () =>
    Number(
      (await db.query<{ bytes: string }>("SELECT pg_total_relation_size('job_message') + pg_total_relation_size('checkpoint') AS bytes"))
        .rows[0]!.bytes,
    );

  // (a) Stored bytes of one long job, posted through the API step by step.
  const [jobId] = await startJobs(http, tenant, 1);
  const before = await tableBytes();
  const messageTexts = openingMessages().map((message) => JSON.stringify(message));
  let naiveBytes = 0;
  let postedBytes = 0;
  const postMs: number[] = [];
  for (let n = 1; n <= steps; n++) {
    const s = makeStep(n, stepBytes);
    for (const message of s.newMessages) messageTexts.push(JSON.stringify(message));
    const messagesJson = `[${messageTexts.join(",")}]`;
    naiveBytes += Buffer.byteLength(messagesJson);
    const startedAt = 1_766_570_400_000 + n * 10_000;
    const body = `{"checkpoint":{"id":"${s.checkpointId}","runId":"${RUN_ID}","status":"proceeding","stepNumber":${n},"messages":${messagesJson},"expert":${JSON.stringify({ key: tenant.expert.key, name: tenant.expert.name, version: tenant.expert.version })},"usage":${JSON.stringify(usage(n))}},"step":${JSON.stringify({ stepNumber: n, newMessages: s.newMessages, toolCall: s.toolCall, toolResult: s.toolResult, usage: usage(1), startedAt, finishedAt: startedAt + 2_000 })}}`;
    postedBytes += Buffer.byteLength(body);
    const key = await tenant.runtimeKeys.next();
    const started = nowMs();
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, key, body);
    postMs.push(nowMs() - started);
    if (response.status !== 200) throw new Error(`P4 post ${n}: ${response.status} ${response.body.toString().slice(0, 300)}`);
  }
  const storedBytes = (await tableBytes()) - before;
  const lastMessagesBytes = Buffer.byteLength(`[${messageTexts.join(",")}]`);
  log(`P4 ${steps}-step job: stored ${(storedBytes / 2 ** 20).toFixed(2)} MiB; naive ${(naiveBytes / 2 ** 20).toFixed(0)} MiB`);

  // (b) Listing a job of 100,000 checkpoints.
  const [longJobId] = await startJobs(http, tenant, 1);
  const first = { id: "m00000000000000000000001", type: "toolMessage", contents: [{ id: "t1", type: "textPart", text: prose(7, 300) }] };
  const seedStep = makeStep(1, 300);
  const seedBody = {
    checkpoint: {
      status: "proceeding",
      stepNumber: 1,
      messages: [first],
      expert: { key: tenant.expert.key, name: tenant.expert.name, version: tenant.expert.version },
      usage: usage(1),
    },
    step: {
      stepNumber: 1,
      newMessages: [first],
      toolCall: seedStep.toolCall,
      toolResult: seedStep.toolResult,
      usage: usage(1),
      startedAt: 1_766_570_400_000,
      finishedAt: 1_766_570_402_000,
    },
  };
  await http.json("POST", `/api/studio/v1/expert_jobs/${longJobId}/checkpoints/`, await tenant.runtimeKeys.next(), seedBody);
  const seeding = nowMs();
  await seedLongJob(db, longJobId!, checkpoints);
  const seedSeconds = Math.round((nowMs() - seeding) / 100) / 10;
  log(`P4 seeded ${checkpoints} checkpoints in ${seedSeconds} s`);

  const list = `/api/studio/v1/expert_jobs/${longJobId}/checkpoints/`;
  const cases = [
    { name: "skip=0, exclude=messages", query: "?take=100&exclude=messages", target: 30, skip: 0, order: "ASC" },
    {
      name: `skip=${checkpoints / 2}, exclude=messages`,
      query: `?take=100&skip=${checkpoints / 2}&exclude=messages`,
      target: 30,
      skip: checkpoints / 2,
      order: "ASC",
    },
    {
      name: `skip=${checkpoints - 100} (last page), exclude=messages`,
      query: `?take=100&skip=${checkpoints - 100}&exclude=messages`,
      target: 30,
      skip: checkpoints - 100,
      order: "ASC",
    },
    { name: "order=desc (newest), exclude=messages", query: "?take=100&order=desc&exclude=messages", target: 30, skip: 0, order: "DESC" },
    { name: "skip=0, with messages", query: "?take=100", target: undefined, skip: 0, order: "ASC" },
    {
      name: `skip=${checkpoints - 100} (last page), with messages`,
      query: `?take=100&skip=${checkpoints - 100}`,
      target: undefined,
      skip: checkpoints - 100,
      order: "ASC",
    },
  ];
  // Straight from Postgres: the statements the server runs for the page (the job's last_seq is the total,
  // the page's keys from the index, read from the nearer end, then its rows), and the obvious ones (OFFSET
  // over rows, count(*)).
  const sameSql = async (skip: number, order: string) => {
    const { rows } = await db.query<{ last_seq: number }>("SELECT last_seq FROM expert_job WHERE id = $1", [longJobId]);
    const total = rows[0]!.last_seq;
    const fromEnd = skip > total / 2;
    const [pageSkip, pageOrder] = fromEnd ? [Math.max(0, total - skip - 100), order === "ASC" ? "DESC" : "ASC"] : [skip, order];
    await db.query(
      `SELECT c.* FROM (SELECT seq FROM checkpoint WHERE expert_job_id = $1 AND seq <= $3
         ORDER BY created_at ${pageOrder}, step_number ${pageOrder}, seq ${pageOrder} OFFSET $2 LIMIT 100) page
       JOIN checkpoint c ON c.expert_job_id = $1 AND c.seq = page.seq ORDER BY c.created_at ${pageOrder}, c.step_number ${pageOrder}, c.seq ${pageOrder}`,
      [longJobId, pageSkip, total],
    );
  };
  const naiveSql = async (skip: number, order: string) => {
    await db.query(
      `SELECT * FROM checkpoint WHERE expert_job_id = $1 ORDER BY created_at ${order}, step_number ${order}, seq ${order} OFFSET $2 LIMIT 100`,
      [longJobId, skip],
    );
    await db.query("SELECT count(*) FROM checkpoint WHERE expert_job_id = $1", [longJobId]);
  };
  const results = [];
  for (const testCase of cases) {
    const times: number[] = [];
    const rawTimes: number[] = [];
    const naiveTimes: number[] = [];
    let bytes = 0;
    for (let index = 0; index < samples + 2; index++) {
      const key = await tenant.clientKeys.next();
      const started = nowMs();
      const response = await http.request("GET", list + testCase.query, key);
      const elapsed = nowMs() - started;
      if (response.status !== 200) throw new Error(`P4 list: ${response.status} ${response.body.toString().slice(0, 300)}`);
      bytes = response.body.length;
      const rawStarted = nowMs();
      await sameSql(testCase.skip, testCase.order);
      const naiveStarted = nowMs();
      await naiveSql(testCase.skip, testCase.order);
      if (index >= 2) {
        times.push(elapsed);
        rawTimes.push(naiveStarted - rawStarted);
        naiveTimes.push(nowMs() - naiveStarted);
      }
    }
    const result = {
      name: testCase.name,
      target: testCase.target,
      responseBytes: bytes,
      latency: summarize(times),
      raw: summarize(rawTimes),
      naive: summarize(naiveTimes),
    };
    log(
      `P4 list ${testCase.name}: p50 ${result.latency.p50} ms (same SQL ${result.raw.p50} ms, naive SQL ${result.naive.p50} ms), ${(bytes / 1024).toFixed(0)} KiB`,
    );
    results.push(result);
  }
  await db.end();
  return {
    longJob: {
      steps,
      stepBytes,
      storedBytes,
      naiveBytes,
      postedBytes,
      lastConversationBytes: lastMessagesBytes,
      post: summarize(postMs),
      lastPostMs: Math.round(postMs.at(-1)! * 10) / 10,
    },
    list: { checkpoints, seedSeconds, cases: results },
  };
}

async function measureStartup(url: string) {
  const fresh: number[] = [];
  const existing: number[] = [];
  const postgres: number[] = [];
  for (let index = 0; index < settings.startup.repeats; index++) {
    const dataDir = path.join(scratch, `pglite-${index}`);
    const env = { DATA_DIR: dataDir, LOG_LEVEL: "info", DATABASE_URL: "" };
    const first = await startServer({ env, logFile: path.join(scratch, "startup.log") });
    fresh.push(first.readyMs);
    await first.stop();
    const second = await startServer({ env, logFile: path.join(scratch, "startup.log") });
    existing.push(second.readyMs);
    await second.stop();
    const onPostgres = await startServer({
      env: { DATABASE_URL: url, SECRETS_KEY, LOG_LEVEL: "info" },
      logFile: path.join(scratch, "startup.log"),
    });
    postgres.push(onPostgres.readyMs);
    await onPostgres.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  const round = (value: number) => Math.round(value);
  const result = {
    pgliteFreshMs: round(median(fresh)),
    pgliteExistingMs: round(median(existing)),
    postgresExistingMs: round(median(postgres)),
    samples: { fresh: fresh.map(round), existing: existing.map(round), postgres: postgres.map(round) },
  };
  log(`startup: PGlite fresh ${result.pgliteFreshMs} ms, existing ${result.pgliteExistingMs} ms; Postgres ${result.postgresExistingMs} ms`);
  return result;
}

function machine() {
  const run = (command: string, commandArgs: string[]) => {
    try {
      return execFileSync(command, commandArgs, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return undefined;
    }
  };
  return {
    cpu: os.cpus()[0]?.model,
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version,
    commit: run("git", ["rev-parse", "HEAD"]),
  };
}

/** Load and the busiest other processes: the machine is shared, so every result records what else ran. */
function conditions() {
  const [one, five, fifteen] = os.loadavg();
  let busy: string[] = [];
  try {
    busy = execFileSync("ps", ["-eo", "pcpu=,args=", "--sort=-pcpu"], { encoding: "utf8" })
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line && Number.parseFloat(line) >= 5 && !line.includes("ps -eo"))
      .slice(0, 6)
      .map((line) => line.slice(0, 140));
  } catch {
    // no ps
  }
  return { at: new Date().toISOString(), loadavg: [one, five, fifteen].map((value) => Math.round(value! * 100) / 100), busy };
}

async function main() {
  const results: Record<string, any> = {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    settings,
    machine: machine(),
    conditions: [conditions()],
  };
  const postgresVersion = async (url: string) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const version = (await client.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
    await client.end();
    return version;
  };
  results.machine.postgres = await postgresVersion(adminUrl);
  log(`bench (${results.mode}) on ${results.machine.cores} cores, load ${results.conditions[0].loadavg.join(" ")}`);

  await withDatabase(adminUrl, async (url) => {
    const profileDir = args.profile ? path.join(resultsDir, "profiles") : undefined;
    if (profileDir) await mkdir(profileDir, { recursive: true });
    const serverOptions = {
      env: { DATABASE_URL: url, SECRETS_KEY, ADMIN_TOKEN, LOG_LEVEL: "info" },
      logFile: path.join(scratch, "server.log"),
      openFiles: settings.p3.streams + 2_048,
      cpuProfileDir: profileDir,
    };
    let server = await startServer(serverOptions);
    results.startup = { postgresFreshMs: Math.round(server.readyMs) };
    let http = new HttpClient(server.url, 64);
    const tenant = await seedTenant(http, ADMIN_TOKEN);
    /** Measures of memory start on a server process of their own. */
    const restart = async (name: string) => {
      http.close();
      await server.stop();
      server = await startServer({ ...serverOptions, logFile: path.join(scratch, `server-${name}.log`) });
      http = new HttpClient(server.url, 64);
      tenant.clientKeys.http = tenant.runtimeKeys.http = http;
    };
    const context = () => ({ server, http, url, adminToken: ADMIN_TOKEN, log });
    try {
      results.server = { idleRssKiB: server.rssKiB(), openFilesLimit: server.openFilesLimit() };
      if (only.has("p1")) {
        results.p1 = await measureIngest(server, http, tenant, url);
        results.conditions.push(conditions());
      }
      if (only.has("floor") || only.has("length")) {
        const floor = await startFloor(context(), serverOptions);
        try {
          if (only.has("floor")) {
            results.floor = await measureFloor(context(), tenant, settings.floor, floor);
            results.conditions.push(conditions());
          }
          if (only.has("length")) {
            results.length = await measureLength(context(), tenant, settings.length, floor);
            results.conditions.push(conditions());
          }
        } finally {
          await floor.stop();
        }
      }
      if (only.has("p5")) {
        results.p5 = await measureCommitScaling(context(), tenant, settings.p5, serverOptions);
        results.conditions.push(conditions());
      }
      if (only.has("p2")) {
        results.p2 = await measureDelivery(server, http, tenant, url);
        results.conditions.push(conditions());
      }
      if (only.has("p4")) {
        results.p4 = await measureHistory(http, tenant, url);
        results.conditions.push(conditions());
      }
      if (only.has("corpus")) {
        results.corpus = await measureCorpus(context(), settings.corpus);
        results.conditions.push(conditions());
      }
      if (only.has("replay")) {
        await restart("replay");
        results.replay = await measureReplay(context(), tenant, settings.replay);
        results.conditions.push(conditions());
      }
      if (only.has("p3")) {
        const sizes = [];
        for (const size of settings.p3.sizes) {
          await restart(`p3-${sizes.length + 1}`);
          sizes.push(await measureConnections(server, http, tenant, url, size));
          results.conditions.push(conditions());
        }
        results.p3 = { sizes };
      }
    } finally {
      http.close();
      await server.stop();
    }
    if (only.has("startup")) results.startup = { ...results.startup, ...(await measureStartup(url)) };
  });
  results.conditions.push(conditions());
  results.durationSeconds = Math.round((nowMs() - t0) / 1000);

  await mkdir(resultsDir, { recursive: true });
  // A run of some measures only is kept apart (`-partial`): the history compares whole runs.
  const base = path.join(resultsDir, `${stamp}${quick ? "-quick" : ""}${args.only ? "-partial" : ""}`);
  await writeFile(`${base}.json`, JSON.stringify(results, null, 2) + "\n");
  const report = !args["no-report"] && !args.only;
  if (report) await writeReport(results, `${base}.json`, `${base}.svg`);
  log(
    `results: ${path.relative(process.cwd(), base)}.json${report ? ", BENCHMARKS.md" : " (BENCHMARKS.md is written by whole runs only)"}`,
  );
}

try {
  if (args.report) {
    const file = path.resolve(args.report);
    await writeReport(JSON.parse(await readFile(file, "utf8")), file, file.replace(/\.json$/, ".svg"));
    console.log(`BENCHMARKS.md rewritten from ${args.report}`);
  } else await main();
} finally {
  await rm(scratch, { recursive: true, force: true });
}
