/**
 * The benchmark suite (issue 5): the server on real PostgreSQL, started the way README says, driven over
 * HTTP from this process, and raw `pg` doing the same work in the same run, so the ratios hold even on a
 * noisy shared machine.
 *
 *   npm run bench                  full run (≈ 10 min)
 *   npm run bench -- --quick       smaller sizes (< 2 min)
 *   npm run bench -- --only p1,p2  some measures only (p1 p2 p3 p4 startup); JSON only, BENCHMARKS.md untouched
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
import { rawCheckpoint, RawListener, rawSteps, seedLongJob, withDatabase, type RawJob } from "./lib/db.ts";
import { HttpClient } from "./lib/http.ts";
import { jobBodies, openingMessages, prose, RUN_ID, step as makeStep, usage, type Expert } from "./lib/payloads.ts";
import { writeReport } from "./lib/report.ts";
import { startServer, type RunningServer } from "./lib/server.ts";
import { openStreams } from "./lib/sse-clients.ts";
import { median, nowMs, summarize, type Summary } from "./lib/stats.ts";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    "no-report": { type: "boolean", default: false },
    /** Rewrites BENCHMARKS.md from an existing results file, without measuring. */
    report: { type: "string" },
  },
});
const quick = args.quick;
const only = new Set((args.only ?? "startup,p1,p2,p3,p4").split(",").map((name) => name.trim()));

const settings = quick
  ? {
      p1: {
        concurrency: [1, 8, 32],
        steps: 20,
        stepBytes: 8_192,
        postsPerLevel: { 1: 40, 8: 160, 32: 640 } as Record<number, number>,
        rounds: 1,
      },
      p2: { subscribers: [1, 100, 1_000], events: { 1: 150, 100: 40, 1_000: 20 } as Record<number, number> },
      p3: { streams: 2_000, events: 2, settleMs: 5_000 },
      p4: { steps: 200, stepBytes: 2_048, checkpoints: 100_000, samples: 15 },
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
      p2: { subscribers: [1, 100, 1_000], events: { 1: 400, 100: 100, 1_000: 60 } as Record<number, number> },
      p3: { streams: 10_000, events: 3, settleMs: 15_000 },
      p4: { steps: 1_000, stepBytes: 2_048, checkpoints: 100_000, samples: 40 },
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

/**
 * API keys of one scope. The server limits requests (1,200 a minute) and open streams (100) per key, so
 * the bench spreads its load over keys like a fleet of runtimes and dashboards would, and never runs into
 * a limit: a key is retired after `maxUses` requests.
 */
class KeyRing {
  #current: string | undefined;
  #uses = 0;

  constructor(
    /** Swapped when the bench restarts the server. */
    public http: HttpClient,
    private readonly applicationId: string,
    private readonly scope: "client" | "runtime",
    private readonly maxUses = 1_000,
  ) {}

  async fresh(): Promise<string> {
    const response = await this.http.json("POST", `/api/admin/v1/applications/${this.applicationId}/api_keys`, ADMIN_TOKEN, {
      scope: this.scope,
    });
    return response.data.apiKey.key as string;
  }

  async many(count: number): Promise<string[]> {
    return Promise.all(Array.from({ length: count }, () => this.fresh()));
  }

  /** A key with `uses` requests left in it. */
  async next(uses = 1): Promise<string> {
    if (!this.#current || this.#uses + uses > this.maxUses) {
      this.#current = await this.fresh();
      this.#uses = 0;
    }
    this.#uses += uses;
    return this.#current;
  }
}

interface Tenant {
  organizationId: string;
  applicationId: string;
  clientKeys: KeyRing;
  runtimeKeys: KeyRing;
  expert: Expert & { id: string };
}

async function seedTenant(http: HttpClient): Promise<Tenant> {
  const admin = (method: string, url: string, body?: unknown) => http.json(method, `/api/admin/v1${url}`, ADMIN_TOKEN, body);
  const { organization } = (await admin("POST", "/organizations", { name: `bench-${randomBytes(3).toString("hex")}` })).data;
  const { application } = (await admin("POST", `/organizations/${organization.id}/applications`, { name: "bench" })).data;
  const { expert } = (
    await admin("POST", `/organizations/${organization.id}/experts`, { name: "@bench/agent", version: "1.0.0", description: "Bench" })
  ).data;
  await admin("PUT", `/applications/${application.id}/provider_keys/anthropic`, { key: "sk-ant-bench" });
  return {
    organizationId: organization.id,
    applicationId: application.id,
    clientKeys: new KeyRing(http, application.id, "client"),
    runtimeKeys: new KeyRing(http, application.id, "runtime"),
    expert: { id: expert.id, key: expert.key, name: expert.name, version: expert.version },
  };
}

async function startJobs(http: HttpClient, tenant: Tenant, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let index = 0; index < count; index += 16) {
    const size = Math.min(16, count - index);
    const key = await tenant.clientKeys.next(size);
    const batch = await Promise.all(
      Array.from({ length: size }, () =>
        http.json("POST", "/api/studio/v1/expert_jobs", key, { expertKey: tenant.expert.key, query: "Fix the failing test" }),
      ),
    );
    ids.push(...batch.map((response) => response.data.expertJob.id as string));
  }
  return ids;
}

/** Sum and count of the server's own stream-read histograms (GET /metrics), for where delivery time goes. */
async function streamMetrics(http: HttpClient): Promise<Record<string, number>> {
  const text = (await http.request("GET", "/metrics", undefined)).body.toString();
  const values: Record<string, number> = {};
  for (const name of ["expert_jobs_stream_read_duration_seconds", "expert_jobs_notification_lag_seconds"]) {
    for (const suffix of ["sum", "count"]) {
      const match = new RegExp(`^${name}_${suffix}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, "m").exec(text);
      values[`${name}_${suffix}`] = match ? Number(match[1]) : 0;
    }
  }
  return values;
}

function metricsDelta(before: Record<string, number>, after: Record<string, number>) {
  const mean = (name: string) => {
    const count = after[`${name}_count`]! - before[`${name}_count`]!;
    return count > 0 ? Math.round(((after[`${name}_sum`]! - before[`${name}_sum`]!) / count) * 1e5) / 100 : undefined;
  };
  return {
    readMsMean: mean("expert_jobs_stream_read_duration_seconds"),
    notificationLagMsMean: mean("expert_jobs_notification_lag_seconds"),
  };
}

/** A client that a failed run's DROP DATABASE … WITH (FORCE) may cut off without crashing the bench. */
function connection(url: string): pg.Client {
  const client = new pg.Client({ connectionString: url });
  client.on("error", (error) => log("database connection lost:", error.message));
  return client;
}

/** The server lets one key hold 100 open streams; many subscribers use many keys, as many dashboards would. */
const STREAMS_PER_KEY = 90;

const rawJob = (tenant: Tenant, id: string): RawJob => ({ id, expertId: tenant.expert.id, expertKey: tenant.expert.key });

/** Runs `workers` loops over their own jobs, `perWorker` posts each (whole jobs of `steps` posts, then a fresh job). */
async function drive(
  workers: number,
  posts: number,
  steps: number,
  jobs: string[],
  post: (jobId: string, stepIndex: number, worker: number) => Promise<void>,
): Promise<{ posts: number; ms: number; perSecond: number; latency: Summary }> {
  const latencies: number[] = [];
  const perWorker = Math.ceil(posts / workers);
  const started = nowMs();
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      for (let index = 0; index < perWorker; index++) {
        const job = jobs[worker * Math.ceil(perWorker / steps) + Math.floor(index / steps)]!;
        const before = nowMs();
        await post(job, index % steps, worker);
        latencies.push(nowMs() - before);
      }
    }),
  );
  const ms = nowMs() - started;
  return {
    posts: latencies.length,
    ms: Math.round(ms),
    perSecond: Math.round((latencies.length / ms) * 10_000) / 10,
    latency: summarize(latencies),
  };
}

async function measureIngest(server: RunningServer, http: HttpClient, tenant: Tenant, url: string) {
  const { concurrency, steps, stepBytes, postsPerLevel, rounds } = settings.p1;
  const bodies = jobBodies(tenant.expert, steps, stepBytes);
  const raw = rawSteps(steps, stepBytes);
  // idleTimeoutMillis 0: the pool keeps its connections, so the CPU meter sees the same backends throughout.
  const pool = new pg.Pool({ connectionString: url, max: 10, idleTimeoutMillis: 0 });
  pool.on("error", () => {});
  const meter = new CpuMeter(url, () => server.pid);
  const jobsFor = (workers: number, posts: number) => workers * Math.ceil(Math.ceil(posts / workers) / steps);
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
      const serverJobs = await startJobs(http, tenant, jobsFor(workers, posts));
      const rawJobs = await startJobs(http, tenant, jobsFor(workers, posts));
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

async function measureDelivery(server: RunningServer, http: HttpClient, tenant: Tenant, url: string) {
  const port = Number(new URL(server.url).port);
  const sender = connection(url);
  await sender.connect();
  const levels = [];
  let rawSummary: Summary | undefined;
  for (const subscribers of settings.p2.subscribers) {
    const events = settings.p2.events[subscribers]!;
    const [jobId, rawJobId] = await startJobs(http, tenant, 2);
    const steps = rawSteps(events + 1, 1_024, { window: true });
    const crowd = await openStreams({
      port,
      path: `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`,
      tokens: await tenant.clientKeys.many(Math.ceil(subscribers / STREAMS_PER_KEY)),
      count: subscribers,
      perWorker: 500,
    });
    if (crowd.failed > 0) throw new Error(`P2: ${crowd.failed} streams failed to open: ${crowd.errors.join("; ")}`);
    const listener = subscribers === 1 ? new RawListener(url, rawJobId!) : undefined;
    await listener?.start();
    const samples: number[] = [];
    const slowest: number[] = [];
    const rawSamples: number[] = [];
    let missing = 0;
    const metricsBefore = await streamMetrics(http);
    for (let index = 0; index < events; index++) {
      let committedAt = 0;
      const seq = await rawCheckpoint(sender, rawJob(tenant, jobId!), steps[index]!, () => (committedAt = nowMs()));
      const { times, missing: lost } = await crowd.arrivals(seq, 15_000);
      missing += lost;
      for (const time of times) samples.push(time - committedAt);
      if (times.length > 0) slowest.push(Math.max(...times) - committedAt);
      if (listener) {
        // The same transaction on another job, watched by one plain LISTEN connection.
        let rawCommittedAt = 0;
        const arrival = listener.arrival(index + 1);
        await rawCheckpoint(sender, rawJob(tenant, rawJobId!), steps[index]!, () => (rawCommittedAt = nowMs()));
        rawSamples.push((await arrival) - rawCommittedAt);
      }
      await sleep(2 + Math.random() * 8);
    }
    await listener?.stop();
    await crowd.close();
    if (listener) rawSummary = summarize(rawSamples);
    const server = metricsDelta(metricsBefore, await streamMetrics(http));
    const result = { subscribers, events, latency: summarize(samples), lastSubscriber: summarize(slowest), missing, server };
    log(
      `P2 ${subscribers} subscriber(s): p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms (server: read ${server.readMsMean} ms, lag ${server.notificationLagMsMean} ms mean)${rawSummary && subscribers === 1 ? `; raw p99 ${rawSummary.p99} ms` : ""}`,
    );
    levels.push(result);
  }
  await sender.end();
  return { eventBytes: undefined as number | undefined, raw: rawSummary!, levels };
}

async function measureConnections(server: RunningServer, http: HttpClient, tenant: Tenant, url: string) {
  const { streams, events, settleMs } = settings.p3;
  const port = Number(new URL(server.url).port);
  const path = (jobId: string) => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
  const [jobId, warmJobId] = await startJobs(http, tenant, 2);
  const steps = rawSteps(events, 1_024, { window: true });
  const tokens = await tenant.clientKeys.many(Math.ceil(streams / STREAMS_PER_KEY));
  // A fresh server process: warm its code paths with a few streams first, so the baseline is a running server.
  const warm = await openStreams({ port, path: path(warmJobId!), tokens: tokens.slice(0, 2), count: 100, perWorker: 500 });
  await warm.close();
  await sleep(2_000);
  const rssBefore = server.rssKiB();
  const opening = nowMs();
  const crowd = await openStreams({ port, path: path(jobId!), tokens, count: streams, perWorker: 2_500, parallel: 32 });
  const openMs = nowMs() - opening;
  await sleep(1_000);
  const rssOpened = server.rssKiB();
  // The garbage of 10,000 request handlings is collected once the burst is over (V8's memory reducer).
  await sleep(settleMs);
  const rssAfter = server.rssKiB();
  log(
    `P3 ${crowd.open} streams open in ${(openMs / 1000).toFixed(1)} s (${crowd.failed} failed); RSS ${rssBefore} → ${rssOpened} (just opened) → ${rssAfter} KiB (settled)`,
  );
  const sender = connection(url);
  await sender.connect();
  const perEvent = [];
  const all: number[] = [];
  let missing = 0;
  for (let index = 0; index < events; index++) {
    let committedAt = 0;
    const seq = await rawCheckpoint(sender, rawJob(tenant, jobId!), steps[index]!, () => (committedAt = nowMs()));
    const { times, missing: lost } = await crowd.arrivals(seq, 60_000);
    missing += lost;
    const latencies = times.map((time) => time - committedAt);
    all.push(...latencies);
    perEvent.push(summarize(latencies));
    log(
      `P3 event ${index + 1}: p50 ${perEvent.at(-1)!.p50} ms, p99 ${perEvent.at(-1)!.p99} ms, max ${perEvent.at(-1)!.max} ms, missing ${lost}`,
    );
    await sleep(500);
  }
  await sender.end();
  const rssWithEvents = server.rssKiB();
  await crowd.close();
  return {
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
    rssAfterEventsKiB: rssWithEvents,
    perStreamKiB: Math.round(((rssAfter - rssBefore) / Math.max(1, crowd.open)) * 10) / 10,
    latency: summarize(all),
    perEvent,
    missing,
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
    try {
      const tenant = await seedTenant(http);
      results.server = { idleRssKiB: server.rssKiB(), openFilesLimit: server.openFilesLimit() };
      if (only.has("p1")) {
        results.p1 = await measureIngest(server, http, tenant, url);
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
      if (only.has("p3")) {
        // Memory per stream is measured on a server process of its own, started for it.
        http.close();
        await server.stop();
        server = await startServer({ ...serverOptions, logFile: path.join(scratch, "server-p3.log") });
        http = new HttpClient(server.url, 64);
        tenant.clientKeys.http = tenant.runtimeKeys.http = http;
        results.p3 = await measureConnections(server, http, tenant, url);
        results.conditions.push(conditions());
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
