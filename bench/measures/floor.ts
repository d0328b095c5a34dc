import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { CpuMeter, perOperation, processCpuNs } from "../lib/cpu.ts";
import { rawCheckpoint, rawSteps } from "../lib/db.ts";
import { drive, jobsFor } from "../lib/drive.ts";
import { HttpClient } from "../lib/http.ts";
import { jobBodies, jobBodyStream } from "../lib/payloads.ts";
import { startServer, type RunningServer, type ServerOptions } from "../lib/server.ts";
import { median, nowMs, summarize } from "../lib/stats.ts";
import { startJobs, type Tenant } from "../lib/tenant.ts";
import type { BenchContext } from "./context.ts";

export interface FloorSettings {
  concurrency: number;
  steps: number;
  stepBytes: number;
  posts: number;
  rounds: number;
}

export interface LengthSettings {
  steps: number;
  stepBytes: number;
  /** The steps measured: each figure is the median of the `window` posts ending at that step. */
  at: number[];
  window: number;
}

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** The floor server (bench/floor-server.ts) on the bench database, notifying in its transaction as the server does. */
export function startFloor(context: BenchContext, serverOptions: ServerOptions): Promise<RunningServer> {
  return startServer({
    env: { DATABASE_URL: context.url, FLOOR_NOTIFY: "in-transaction" },
    logFile: path.join(path.dirname(serverOptions.logFile), "floor-server.log"),
    entry: "bench/floor-server.ts",
  });
}

type Run = Awaited<ReturnType<typeof drive>> & { cpu: ReturnType<typeof perOperation> };

/**
 * The floor of an HTTP ingest path (issue 14): P1's posts at one concurrency to the server, to the floor
 * server (plain node:http: read the body, JSON.parse it, run the raw transaction, answer the checkpoint)
 * and as the raw transaction with `pg`, in alternating rounds of the same run.
 */
export async function measureFloor(context: BenchContext, tenant: Tenant, settings: FloorSettings, floor: RunningServer) {
  const { concurrency, steps, stepBytes, posts, rounds } = settings;
  const bodies = jobBodies(tenant.expert, steps, stepBytes);
  const raw = rawSteps(steps, stepBytes);
  const floorHttp = new HttpClient(floor.url, concurrency);
  const pool = new pg.Pool({ connectionString: context.url, max: 10, idleTimeoutMillis: 0 });
  pool.on("error", () => {});
  let keys: string[] = [];
  const post = (http: HttpClient) => async (jobId: string, index: number, worker: number) => {
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, keys[worker]!, bodies[index]!);
    if (response.status !== 200) throw new Error(`floor measure post: ${response.status} ${response.body.toString().slice(0, 300)}`);
  };
  const rawJob = (id: string) => ({ id, expertId: tenant.expert.id, expertKey: tenant.expert.key });
  const variants = [
    { name: "server", pid: context.server.pid, post: post(context.http) },
    { name: "floor", pid: floor.pid, post: post(floorHttp) },
    {
      name: "raw",
      pid: undefined,
      post: async (jobId: string, index: number) => void (await rawCheckpoint(pool, rawJob(jobId), raw[index]!)),
    },
  ];
  try {
    keys = await tenant.runtimeKeys.many(4);
    for (const variant of variants) await drive(4, 4 * steps, steps, await startJobs(context.http, tenant, 4), variant.post);
    const runs = new Map<string, Run[]>(variants.map((variant) => [variant.name, []]));
    for (let index = 0; index < rounds; index++) {
      keys = await tenant.runtimeKeys.many(concurrency);
      for (const variant of variants) {
        const jobs = await startJobs(context.http, tenant, jobsFor(concurrency, posts, steps));
        const stop = await new CpuMeter(context.url, () => variant.pid).start();
        const run = await drive(concurrency, posts, steps, jobs, variant.post);
        runs.get(variant.name)!.push({ ...run, cpu: perOperation(await stop(), run.posts) });
      }
      context.log(
        `floor, ${concurrency} runtimes, round ${index + 1}: ${variants.map((variant) => `${variant.name} ${runs.get(variant.name)!.at(-1)!.perSecond}/s`).join(", ")}`,
      );
    }
    const pick = (name: string) => {
      const all = runs.get(name)!;
      const perSecond = round(median(all.map((run) => run.perSecond)), 1);
      const nearest = [...all].sort((a, b) => Math.abs(a.perSecond - perSecond) - Math.abs(b.perSecond - perSecond))[0]!;
      return { ...nearest, perSecond, rounds: all.map((run) => run.perSecond) };
    };
    const [server, floorRun, rawRun] = [pick("server"), pick("floor"), pick("raw")];
    return {
      concurrency,
      steps,
      stepBytes,
      bodyBytes: { min: bodies[0]!.length, max: bodies.at(-1)!.length },
      server,
      floor: floorRun,
      raw: rawRun,
      serverVsFloor: round(server.perSecond / floorRun.perSecond, 3),
      serverVsRaw: round(server.perSecond / rawRun.perSecond, 3),
      floorVsRaw: round(floorRun.perSecond / rawRun.perSecond, 3),
    };
  } finally {
    floorHttp.close();
    await pool.end();
  }
}

/**
 * Cost against length (issue 14): one job of `steps` steps, each adding ~`stepBytes` of new messages and
 * carrying the whole conversation, posted one step at a time to the server and, step by step in turn, to
 * the floor server. Server CPU per post (its threads' run time from just before the request to 25 ms after
 * the answer, so its after-work counts) at the steps measured, and the floor's the same way.
 */
export async function measureLength(context: BenchContext, tenant: Tenant, settings: LengthSettings, floor: RunningServer) {
  const { steps, stepBytes, at, window } = settings;
  const floorHttp = new HttpClient(floor.url, 1);
  const [serverJob, floorJob] = await startJobs(context.http, tenant, 2, { maxSteps: steps + 10 });
  const measured = new Set(at.flatMap((step) => Array.from({ length: window }, (_, index) => step - index)));
  const samples = new Map<number, { server: number; floor: number; serverMs: number; floorMs: number; bytes: number }>();
  try {
    let step = 0;
    // A key allows 1,200 requests a minute: a fresh one every 500 posts.
    let keyUses = 0;
    let currentKey = await tenant.runtimeKeys.fresh();
    for (const body of jobBodyStream(tenant.expert, steps, stepBytes)) {
      step++;
      if (++keyUses > 500) {
        currentKey = await tenant.runtimeKeys.fresh();
        keyUses = 0;
      }
      const timed = measured.has(step);
      const withKey = async (http: HttpClient, pid: number, jobId: string) => {
        const before = timed ? processCpuNs(pid) : 0;
        const started = nowMs();
        const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, currentKey, body);
        const ms = nowMs() - started;
        if (response.status !== 200)
          throw new Error(`length measure, step ${step}: ${response.status} ${response.body.toString().slice(0, 300)}`);
        if (!timed) return { cpuMs: 0, ms };
        await sleep(25);
        return { cpuMs: (processCpuNs(pid) - before) / 1e6, ms };
      };
      const server = await withKey(context.http, context.server.pid, serverJob!);
      const floorPost = await withKey(floorHttp, floor.pid, floorJob!);
      if (timed)
        samples.set(step, { server: server.cpuMs, floor: floorPost.cpuMs, serverMs: server.ms, floorMs: floorPost.ms, bytes: body.length });
    }
    const rows = at.map((step) => {
      const window_ = Array.from({ length: window }, (_, index) => samples.get(step - index)!).filter(Boolean);
      const serverCpuMs = round(median(window_.map((sample) => sample.server)));
      const floorCpuMs = round(median(window_.map((sample) => sample.floor)));
      return {
        step,
        bodyBytes: samples.get(step)!.bytes,
        serverCpuMs,
        floorCpuMs,
        beyondFloorMs: round(serverCpuMs - floorCpuMs),
        serverLatency: summarize(window_.map((sample) => sample.serverMs)),
        floorLatency: summarize(window_.map((sample) => sample.floorMs)),
        samples: window_.length,
      };
    });
    const first = rows[0]!;
    const last = rows.at(-1)!;
    return { steps, stepBytes, window, rows, beyondFloorGrowth: round(last.beyondFloorMs / first.beyondFloorMs) };
  } finally {
    floorHttp.close();
  }
}
