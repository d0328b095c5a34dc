import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { Exclusion } from "../../src/modules/checkpoints/checkpoints.schemas.ts";
import { traceLines } from "../../test/helpers/corpus.ts";
import { processCpuNs } from "../lib/cpu.ts";
import { rawReadCheckpoints } from "../lib/db.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";
import { seedTenant, startJobs } from "../lib/tenant.ts";
import type { BenchContext } from "./context.ts";

export interface CorpusSettings {
  /** Replays of the trace, each into a job of its own (per-post figures are medians over them). */
  ingestRounds: number;
  /** Timed requests per read and variant (after 2 untimed ones). */
  readSamples: number;
}

const TRACE = "long-research";
/** The trace's expert (its README's replay table). */
const EXPERT = { name: "@fixtures/analyst", version: "2.3.0" };
const TIMELINE = "messages,newMessages,toolCall,toolResult,actionContent";
/** Every variant of `exclude` measured: none, the contract's light read, the heavy parts one by one, and a timeline's list. */
export const EXCLUDE_VARIANTS = [
  "",
  "messages",
  "messages,newMessages",
  "messages,newMessages,toolResult",
  "messages,newMessages,toolResult,actionContent",
  TIMELINE,
];
/** Body size buckets of the ingest table (upper bounds, bytes): the trace's lines are 7.6 KB to 4.2 MB, half of them 0.5–1 MB. */
const BUCKETS = [100_000, 500_000, 800_000, 1_500_000, 3_000_000, Number.POSITIVE_INFINITY];
const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Ingest and reads on the real-runtime corpus (issue 10): the long-research trace (79 checkpoint bodies
 * as the Perstack runtime posted them, 7.6 KB to 4.2 MB) replayed as its README says: a tenant of its own
 * with the trace's expert, a job started and claimed, then every line POSTed unchanged, in order.
 */
export async function measureCorpus(context: BenchContext, settings: CorpusSettings) {
  const lines = traceLines(TRACE).map((line) => Buffer.from(line));
  const db = new pg.Client({ connectionString: context.url });
  db.on("error", () => {});
  await db.connect();
  try {
    const rounds = [];
    for (let round = 0; round < settings.ingestRounds; round++) rounds.push(await ingestRound(context, db, lines));
    const ingest = summarizeIngest(lines, rounds);
    context.log(
      `corpus ingest: p50 ${ingest.latency.p50} ms, p99 ${ingest.latency.p99} ms per post; server CPU line 1 ${ingest.first.serverCpuMs} ms, line ${lines.length} ${ingest.last.serverCpuMs} ms`,
    );
    const reads = await measureReads(context, db, rounds[0]!, settings.readSamples);
    return { trace: TRACE, lines: lines.length, totalBytes: lines.reduce((sum, line) => sum + line.length, 0), ingest, reads };
  } finally {
    await db.end();
  }
}

interface IngestRound {
  jobId: string;
  clientKey: string;
  /** Per line: the round trip and the CPU the server and its Postgres connections used for it (ms). */
  posts: Array<{ ms: number; serverCpuMs: number; postgresCpuMs: number }>;
  checkpoints: Array<{ id: string; seq: number }>;
}

async function ingestRound(context: BenchContext, db: pg.Client, lines: Buffer[]): Promise<IngestRound> {
  const { http, server, adminToken } = context;
  const tenant = await seedTenant(http, adminToken, EXPERT);
  const [jobId] = await startJobs(http, tenant, 1, { maxSteps: Math.max(100, lines.length) });
  const runtimeKey = await tenant.runtimeKeys.fresh();
  const claim = await http.json("POST", "/api/studio/v1/expert_jobs/claim", runtimeKey, {});
  if (claim.data.claim.expertJob.id !== jobId) throw new Error(`claim took job ${claim.data.claim.expertJob.id}, not ${jobId}`);
  const backends = async () =>
    (
      await db.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
      )
    ).rows.map((row) => row.pid);
  let pids = await backends();
  const cpu = () => ({ server: processCpuNs(server.pid), postgres: pids.reduce((sum, pid) => sum + processCpuNs(pid), 0) });
  const posts: IngestRound["posts"] = [];
  const checkpoints: IngestRound["checkpoints"] = [];
  for (const [index, line] of lines.entries()) {
    const before = cpu();
    const started = nowMs();
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, runtimeKey, line);
    const ms = nowMs() - started;
    if (response.status !== 200) throw new Error(`${TRACE} line ${index + 1}: ${response.status} ${response.body.toString().slice(0, 300)}`);
    // What the post costs after its answer (the log line, collecting its garbage) is counted with it.
    await sleep(25);
    const after = cpu();
    posts.push({ ms, serverCpuMs: (after.server - before.server) / 1e6, postgresCpuMs: (after.postgres - before.postgres) / 1e6 });
    const { checkpoint } = JSON.parse(response.body.toString()).data;
    checkpoints.push({ id: checkpoint.id, seq: index + 1 });
    // The pool may open connections while the job runs.
    if (index % 10 === 0) pids = [...new Set([...pids, ...(await backends())])];
  }
  const { data } = await http.json("GET", `/api/studio/v1/expert_jobs/${jobId}`, await tenant.clientKeys.next());
  if (data.expertJob.status !== "completed") throw new Error(`${TRACE} job ended ${data.expertJob.status}, expected completed`);
  context.log(`corpus ingest round: ${lines.length} posts, p50 ${median(posts.map((post) => post.ms)).toFixed(1)} ms`);
  return { jobId: jobId!, clientKey: await tenant.clientKeys.fresh(), posts, checkpoints };
}

function summarizeIngest(lines: Buffer[], rounds: IngestRound[]) {
  const perLine = lines.map((line, index) => ({
    line: index + 1,
    bytes: line.length,
    ms: round(median(rounds.map((r) => r.posts[index]!.ms))),
    serverCpuMs: round(median(rounds.map((r) => r.posts[index]!.serverCpuMs))),
    postgresCpuMs: round(median(rounds.map((r) => r.posts[index]!.postgresCpuMs))),
  }));
  const all = rounds.flatMap((r) => r.posts.map((post) => post.ms));
  let lower = 0;
  const buckets = BUCKETS.map((upper) => {
    const inBucket = lines.flatMap((line, index) => (line.length > lower && line.length <= upper ? [index] : []));
    const bucket = {
      fromBytes: lower,
      toBytes: Number.isFinite(upper) ? upper : undefined,
      lines: inBucket.length,
      meanBytes: inBucket.length ? Math.round(inBucket.reduce((sum, index) => sum + lines[index]!.length, 0) / inBucket.length) : undefined,
      latency: summarize(rounds.flatMap((r) => inBucket.map((index) => r.posts[index]!.ms))),
      serverCpuMs: summarize(rounds.flatMap((r) => inBucket.map((index) => r.posts[index]!.serverCpuMs))),
      postgresCpuMs: summarize(rounds.flatMap((r) => inBucket.map((index) => r.posts[index]!.postgresCpuMs))),
    };
    lower = upper;
    return bucket;
  }).filter((bucket) => bucket.lines > 0);
  return {
    rounds: rounds.length,
    latency: summarize(all),
    buckets,
    first: perLine[0]!,
    last: perLine.at(-1)!,
    perLine,
  };
}

/** The reads measured: the list (take=100: all 79) and GET of the last checkpoint and of the largest (the 1 MB file read). */
async function measureReads(context: BenchContext, db: pg.Client, job: IngestRound, samples: number) {
  const { http } = context;
  const base = `/api/studio/v1/expert_jobs/${job.jobId}/checkpoints/`;
  const sizes = traceLines(TRACE).map((line) => line.length);
  const largest = sizes.indexOf(Math.max(...sizes));
  const reads = [
    { name: "list, take=100", path: base, query: "take=100", raw: { afterSeq: 0, limit: 100 } },
    {
      name: `GET line ${job.checkpoints.length} (the last: attemptCompletion)`,
      path: `${base}${job.checkpoints.at(-1)!.id}`,
      query: "",
      raw: { seqs: [job.checkpoints.at(-1)!.seq] },
    },
    {
      name: `GET line ${largest + 1} (the largest: a 1 MB file read)`,
      path: `${base}${job.checkpoints[largest]!.id}`,
      query: "",
      raw: { seqs: [job.checkpoints[largest]!.seq] },
    },
  ];
  const results = [];
  for (const read of reads) {
    for (const variant of EXCLUDE_VARIANTS) {
      const query = [read.query, variant && `exclude=${variant}`].filter(Boolean).join("&");
      const exclude = new Set((variant ? variant.split(",") : []) as Exclusion[]);
      const times: number[] = [];
      const rawTimes: number[] = [];
      let bytes = 0;
      let rawBytes = 0;
      for (let index = 0; index < samples + 2; index++) {
        const started = nowMs();
        const response = await http.request("GET", `${read.path}${query ? `?${query}` : ""}`, job.clientKey);
        const elapsed = nowMs() - started;
        if (response.status !== 200) throw new Error(`corpus read ${read.name}: ${response.status} ${response.body.toString().slice(0, 300)}`);
        bytes = response.body.length;
        const rawStarted = nowMs();
        rawBytes = (await rawReadCheckpoints(db, job.jobId, read.raw, exclude)).bytes;
        if (index >= 2) {
          times.push(elapsed);
          rawTimes.push(nowMs() - rawStarted);
        }
      }
      const result = {
        read: read.name,
        exclude: variant || "(none)",
        responseBytes: bytes,
        latency: summarize(times),
        rawBytes,
        raw: summarize(rawTimes),
        ...(variant === TIMELINE && read.path === base && { target: { bytes: 100_000, p50Ms: 30 } }),
      };
      context.log(
        `corpus ${read.name}, exclude=${result.exclude}: p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${Math.round(bytes / 1024)} KiB (raw p50 ${result.raw.p50} ms, ${Math.round(rawBytes / 1024)} KiB)`,
      );
      results.push(result);
    }
  }
  return results;
}
