import pg from "pg";
import { CpuMeter } from "../lib/cpu.ts";
import { rawReadCheckpoints, type RawRead } from "../lib/db.ts";
import { scrapeMetrics, streamWork } from "../lib/metrics.ts";
import { jobBodyStream } from "../lib/payloads.ts";
import { watchMemory } from "../lib/server.ts";
import { openStreams } from "../lib/sse-clients.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";
import { startJobs, type Tenant } from "../lib/tenant.ts";
import type { BenchContext } from "./context.ts";

export interface ReplaySettings {
  steps: number;
  stepBytes: number;
  subscribers: number[];
}

/** The server lets one key hold 100 open streams. */
const STREAMS_PER_KEY = 90;
const MB = 1e6;
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

/**
 * Replay throughput (issue 10): fresh subscribers, 1, 10 and 100 at once, each receiving the whole
 * history of a finished job with full messages, against raw `pg` reads of the same rows in the same run.
 *
 * The job is posted through the API: `steps` steps of ~`stepBytes` of new messages each (a file read per
 * step), each carrying the whole conversation so far; the last one completes the job, so every stream
 * ends with `complete`. Raw: `rawReadCheckpoints` (every checkpoint row, its conversation joined from the
 * job's stored message texts, read once, and one Buffer per row), taken before every level; and once, for
 * reference, the conversations built by Postgres itself (each row's messages aggregated in SQL, pages of
 * 10 rows), what the stream did before issue 10.
 */
export async function measureReplay(context: BenchContext, tenant: Tenant, settings: ReplaySettings) {
  const { http, url, log } = context;
  const [jobId] = await startJobs(http, tenant, 1, { maxSteps: settings.steps + 10 });
  let postedBytes = 0;
  const posting = nowMs();
  for (const body of jobBodyStream(tenant.expert, settings.steps, settings.stepBytes, { lastStatus: "completed" })) {
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, await tenant.runtimeKeys.next(), body);
    if (response.status !== 200) throw new Error(`replay job post: ${response.status} ${response.body.toString().slice(0, 300)}`);
    postedBytes += body.length;
  }
  log(`replay: ${settings.steps}-step job posted (${round(postedBytes / MB)} MB) in ${round((nowMs() - posting) / 1000)} s`);

  const db = new pg.Client({ connectionString: url });
  db.on("error", () => {});
  await db.connect();
  const raws: RawRead[] = [];
  const rawRead = async () => {
    const read = await rawReadCheckpoints(db, jobId!, { afterSeq: 0 });
    if (read.rows !== settings.steps) throw new Error(`raw read: ${read.rows} rows, expected ${settings.steps}`);
    raws.push(read);
    return read;
  };
  await rawRead(); // warms Postgres's cache: every measured read, raw or through the server, finds the rows in memory
  raws.length = 0;
  const inPostgres = await conversationsInPostgres(db, jobId!);

  const levels = [];
  for (const subscribers of settings.subscribers) {
    const raw = await rawRead();
    log(`replay raw read: ${round(raw.bytes / MB)} MB in ${round(raw.queryMs + raw.assembleMs)} ms (${round(rate(raw))} MB/s)`);
    levels.push(await replayLevel(context, tenant, jobId!, settings, subscribers));
  }
  const after = await rawRead();
  log(`replay raw read: ${round(after.bytes / MB)} MB in ${round(after.queryMs + after.assembleMs)} ms (${round(rate(after))} MB/s)`);
  await db.end();

  const rawMBps = median(raws.map(rate));
  const one = levels.find((level) => level.subscribers === 1);
  const most = levels.at(-1)!;
  return {
    steps: settings.steps,
    stepBytes: settings.stepBytes,
    postedBytes,
    historyBytes: raws[0]!.bytes,
    raw: {
      MBps: round(rawMBps),
      rounds: raws.map((read) => ({ MBps: round(rate(read)), queryMs: round(read.queryMs), assembleMs: round(read.assembleMs), bytes: read.bytes })),
      inPostgres,
    },
    levels,
    /** The targets: one subscriber at ≥ 0.5× the raw read; each of the most subscribers within 3× of one's time. */
    oneVsRaw: one && round(one.perSubscriber.MBps.p50 / rawMBps, 2),
    slowestVsOne: one && round(most.perSubscriber.seconds.max / one.perSubscriber.seconds.p50, 2),
  };
}

const rate = (read: RawRead) => read.bytes / MB / ((read.queryMs + read.assembleMs) / 1000);

async function replayLevel(context: BenchContext, tenant: Tenant, jobId: string, settings: ReplaySettings, subscribers: number) {
  const { server, http, url, log } = context;
  const port = Number(new URL(server.url).port);
  const tokens = await tenant.clientKeys.many(Math.ceil(subscribers / STREAMS_PER_KEY));
  const meter = new CpuMeter(url, () => server.pid);
  const metricsBefore = await scrapeMetrics(http);
  const memory = watchMemory(server, async () => (await scrapeMetrics(http)).get("expert_jobs_stream_held_bytes") ?? 0);
  const stop = await meter.start();
  const crowd = await openStreams({
    port,
    path: `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`,
    tokens,
    count: subscribers,
    perWorker: 50,
    parallel: subscribers,
    mode: "replay",
  });
  if (crowd.failed > 0) throw new Error(`replay: ${crowd.failed} streams failed to open: ${crowd.errors.join("; ")}`);
  const streams = await crowd.replayed(900_000);
  const cpu = await stop();
  const clientMs = crowd.clientCpuMs();
  const held = memory.stop();
  await crowd.close();
  const work = streamWork(metricsBefore, await scrapeMetrics(http));

  const complete = streams.filter((stream) => stream.completedAt !== undefined && stream.events === settings.steps);
  const incomplete = streams.length - complete.length;
  const seconds = complete.map((stream) => (stream.completedAt! - stream.startedAt) / 1000);
  const perStreamMBps = complete.map((stream) => stream.bytes / MB / ((stream.completedAt! - stream.startedAt) / 1000));
  const firstEventMs = complete.map((stream) => stream.firstEventAt! - stream.startedAt);
  const started = Math.min(...streams.map((stream) => stream.startedAt));
  const finished = Math.max(...streams.map((stream) => stream.completedAt ?? stream.closedAt ?? stream.startedAt));
  const deliveredBytes = streams.reduce((sum, stream) => sum + stream.bytes, 0);
  const oneStreamBytes = complete[0]?.bytes ?? 0;
  const wallSeconds = (finished - started) / 1000;
  const result = {
    subscribers,
    incomplete,
    ...(incomplete > 0 && {
      incompleteStreams: streams
        .filter((stream) => !complete.includes(stream))
        .slice(0, 5)
        .map((stream) => ({ events: stream.events, lastSeq: stream.lastSeq, bytes: stream.bytes, closed: stream.closedAt !== undefined })),
    }),
    streamBytes: oneStreamBytes,
    wallSeconds: round(wallSeconds, 2),
    totalMBps: round(deliveredBytes / MB / wallSeconds),
    perSubscriber: { seconds: summarize(seconds), MBps: summarize(perStreamMBps), firstEventMs: summarize(firstEventMs) },
    cpu: {
      serverMs: cpu.serverMs,
      postgresMs: cpu.postgresMs,
      clientsMs: Math.round(clientMs),
      serverMsPerMB: round(cpu.serverMs / (deliveredBytes / MB), 2),
      machineBusyShare: round(cpu.machineBusy / Math.max(1, cpu.machineTotal), 2),
    },
    server: {
      ...work,
      /** Frames built per frame a subscriber got: 1 when every frame was built once and shared by all. */
      buildsPerEvent: oneStreamBytes > 0 ? round(work.frameBytesBuilt / oneStreamBytes, 2) : undefined,
      ...held,
    },
  };
  log(
    `replay ${subscribers} subscriber(s): ${result.perSubscriber.MBps.p50} MB/s each (p50; slowest ${result.perSubscriber.MBps.min}), ` +
      `${result.totalMBps} MB/s in all, ${result.wallSeconds} s; ${incomplete} incomplete; server CPU ${cpu.serverMs} ms, ${work.reads} reads, ` +
      `frames built ${round(work.frameBytesBuilt / MB)} MB (${result.server.buildsPerEvent}× one stream), RSS max ${Math.round(held.rssMaxKiB / 1024)} MiB, ` +
      `held max ${round((held.heldMaxBytes ?? 0) / MB)} MB, cut off ${work.cutOffs.stalled + work.cutOffs.lagging}`,
  );
  return result;
}

/** The conversations built by Postgres (each row's messages aggregated in SQL), 10 rows a statement: the read before issue 10. */
async function conversationsInPostgres(db: pg.Client, jobId: string) {
  const started = nowMs();
  let bytes = 0;
  let afterSeq = 0;
  for (;;) {
    const { rows } = await db.query<{ seq: number; messages: string; rest: string }>(
      `SELECT c.seq,
         (SELECT '[' || string_agg(m.body::text, ',' ORDER BY m.ordinal) || ']' FROM jsonb_array_elements(c.message_runs) AS r(run)
           JOIN job_message m ON m.expert_job_id = c.expert_job_id AND m.ordinal BETWEEN (r.run->>0)::int AND (r.run->>1)::int) AS messages,
         concat_ws(',', c.action::text, c.new_messages::text, c.tool_call::text, c.tool_result::text, c.usage::text) AS rest
       FROM checkpoint c WHERE c.expert_job_id = $1 AND c.seq > $2 ORDER BY c.seq LIMIT 10`,
      [jobId, afterSeq],
    );
    if (rows.length === 0) break;
    for (const row of rows) bytes += Buffer.byteLength(row.messages) + Buffer.byteLength(row.rest);
    afterSeq = rows.at(-1)!.seq;
  }
  const ms = nowMs() - started;
  return { bytes, ms: round(ms), MBps: round(bytes / MB / (ms / 1000)) };
}
