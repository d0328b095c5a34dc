import path from "node:path";
import pg from "pg";
import { CpuMeter, perOperation } from "../lib/cpu.ts";
import { RAW_NOTIFY, rawCheckpoint, rawSteps, type RawNotify } from "../lib/db.ts";
import { drive, jobsFor } from "../lib/drive.ts";
import { HttpClient } from "../lib/http.ts";
import { jobBodies } from "../lib/payloads.ts";
import { startServer, type RunningServer, type ServerOptions } from "../lib/server.ts";
import { median } from "../lib/stats.ts";
import { startJobs, type Tenant } from "../lib/tenant.ts";
import type { BenchContext } from "./context.ts";

export interface CommitScalingSettings {
  concurrency: number[];
  /** Posts per job (each runtime posts whole jobs, then a fresh one) and new bytes per step. */
  steps: number;
  stepBytes: number;
  /** Posts per runtime at each level. */
  postsPerRuntime: number;
  rounds: number;
  /** Server notification designs to run (names in SERVER_DESIGNS). */
  designs: string[];
}

/**
 * How the server instances notify, each a way to start them. A design is a name and the environment (and
 * database preparation) its instances need; `--notify a,b` picks designs.
 */
export const SERVER_DESIGNS: Record<
  string,
  {
    describe: string;
    env: (url: string) => Record<string, string>;
    prepare?: (db: pg.Client) => Promise<void>;
    /** Runs on each round's jobs once they are started, before the round is measured. */
    started?: (db: pg.Client, jobIds: string[]) => Promise<void>;
    /** Reported beside the target, not held to it. */
    reportOnly?: true;
    /** Runs on that design's instances when it runs too (the same settings; fewer connections to Postgres). */
    sharesInstancesWith?: string;
  }
> = {
  "after-commit": {
    describe:
      "the server as it ships (issue 14): each instance's publisher sends the notifications after the commit, one `pg_notify` transaction per batch (`NOTIFY_BACKEND=postgres`); nobody streams these jobs, so only their status changes are announced (src/modules/expert-jobs/watch-marks.ts)",
    env: (url) => ({ DATABASE_URL: url, NOTIFY_BACKEND: "postgres" }),
  },
  "after-commit-all-streamed": {
    describe:
      "the same, with every job marked as streamed (`watched_until` set by the bench, as a stream open on each job would): every checkpoint is announced too. The streams' own reads are not part of it. Reported, not held to the target",
    env: (url) => ({ DATABASE_URL: url, NOTIFY_BACKEND: "postgres" }),
    reportOnly: true,
    sharesInstancesWith: "after-commit",
    started: async (db, jobIds) => {
      await db.query("UPDATE expert_job SET watched_until = 'infinity' WHERE id = ANY($1::text[])", [jobIds]);
    },
  },
  nats: {
    describe: "the same publisher over core NATS at 127.0.0.1:4222 (`NOTIFY_BACKEND=nats`): no notification goes through Postgres",
    env: (url) => ({
      DATABASE_URL: url,
      NOTIFY_BACKEND: "nats",
      NATS_URL: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      NATS_SUBJECT_PREFIX: `bench_${process.pid}`,
    }),
  },
  off: {
    describe:
      "the same server with notifications off: its connections' `search_path` is `public, pg_catalog`, where `public.pg_notify(text, text)` does nothing " +
      "(a bench-only shim: no setting of the server turns them off)",
    env: (url) => ({ DATABASE_URL: withOptions(url, "-c search_path=public,pg_catalog") }),
    prepare: async (db) => {
      await db.query(
        "CREATE OR REPLACE FUNCTION public.pg_notify(channel text, payload text) RETURNS void LANGUAGE plpgsql AS 'BEGIN END'",
      );
    },
  },
};

const withOptions = (url: string, options: string) => {
  const parsed = new URL(url);
  parsed.searchParams.set("options", options);
  return parsed.toString();
};

const INSTANCES = 2;
/** The raw pool: as many connections as the server instances have together (10 each). */
const RAW_POOL = 10 * INSTANCES;

type Run = Awaited<ReturnType<typeof drive>> & { cpu: ReturnType<typeof perOperation> };

/**
 * P5 commit scaling (issue 14): 16, 64 and 128 concurrent runtimes posting checkpoints over two server
 * instances on one Postgres (runtime i posts to instance i mod 2), for each notification design of the
 * server, next to raw `pg` doing the same write with `pg_notify` in the transaction, after the commit,
 * and without one; every variant runs at every level, in alternating rounds, in the same run.
 */
export async function measureCommitScaling(
  context: BenchContext,
  tenant: Tenant,
  settings: CommitScalingSettings,
  serverOptions: ServerOptions,
) {
  const { concurrency, steps, stepBytes, postsPerRuntime, rounds } = settings;
  const unknown = settings.designs.filter((name) => !SERVER_DESIGNS[name]);
  if (unknown.length > 0)
    throw new Error(`--notify: unknown design(s) ${unknown.join(", ")}; known: ${Object.keys(SERVER_DESIGNS).join(", ")}`);
  const admin = new pg.Client({ connectionString: context.url });
  await admin.connect();
  const designs: Array<{ name: string; servers: RunningServer[]; clients: HttpClient[]; owned: boolean }> = [];
  try {
    for (const name of settings.designs) {
      const design = SERVER_DESIGNS[name]!;
      const shared = designs.find((started) => started.name === design.sharesInstancesWith);
      if (shared) {
        designs.push({ ...shared, name, owned: false });
        continue;
      }
      await design.prepare?.(admin);
      const servers: RunningServer[] = [];
      for (let instance = 0; instance < INSTANCES; instance++) {
        servers.push(
          await startServer({
            ...serverOptions,
            env: { ...serverOptions.env, ...design.env(context.url) },
            logFile: path.join(path.dirname(serverOptions.logFile), `server-p5-${name}-${instance}.log`),
          }),
        );
      }
      designs.push({ name, servers, clients: servers.map((server) => new HttpClient(server.url, Math.max(...concurrency))), owned: true });
    }
    const bodies = jobBodies(tenant.expert, steps, stepBytes);
    const raw = rawSteps(steps, stepBytes);
    const pool = new pg.Pool({ connectionString: context.url, max: RAW_POOL, idleTimeoutMillis: 0 });
    pool.on("error", () => {});
    const rawJob = (id: string) => ({ id, expertId: tenant.expert.id, expertKey: tenant.expert.key });
    let keys: string[] = [];
    const serverPost = (clients: HttpClient[]) => async (jobId: string, index: number, worker: number) => {
      const response = await clients[worker % clients.length]!.request(
        "POST",
        `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`,
        keys[worker]!,
        bodies[index]!,
      );
      if (response.status !== 200) throw new Error(`P5 post: ${response.status} ${response.body.toString().slice(0, 300)}`);
    };
    const rawPost = (notify: RawNotify) => async (jobId: string, index: number) =>
      void (await rawCheckpoint(pool, rawJob(jobId), raw[index]!, undefined, notify));
    const variants = [
      ...designs.map((design) => ({
        name: `server, ${design.name}`,
        kind: "server" as const,
        design: design.name,
        pids: design.servers.map((server) => server.pid),
        post: serverPost(design.clients),
        started: SERVER_DESIGNS[design.name]!.started,
      })),
      ...RAW_NOTIFY.map((notify) => ({
        name: `raw pg, ${notify}`,
        kind: "raw" as const,
        design: notify,
        pids: [],
        post: rawPost(notify),
        started: undefined,
      })),
    ];

    context.log("P5 warm-up");
    keys = await tenant.runtimeKeys.many(8);
    for (const variant of variants) await drive(8, 8 * steps, steps, await startJobs(context.http, tenant, 8), variant.post);

    const levels = [];
    for (const workers of concurrency) {
      const posts = workers * postsPerRuntime;
      const runs = new Map<string, Run[]>(variants.map((variant) => [variant.name, []]));
      for (let round = 0; round < rounds; round++) {
        keys = await tenant.runtimeKeys.many(workers);
        // Every variant once per round, in turn, so drift in the machine's load hits them alike.
        for (const variant of variants) {
          const jobs = await startJobs(context.http, tenant, jobsFor(workers, posts, steps));
          await variant.started?.(admin, jobs);
          const meter = new CpuMeter(context.url, () => variant.pids);
          const stop = await meter.start();
          const run = await drive(workers, posts, steps, jobs, variant.post);
          runs.get(variant.name)!.push({ ...run, cpu: perOperation(await stop(), run.posts) });
        }
        context.log(
          `P5 ${workers} runtimes, round ${round + 1}: ` +
            variants
              .map(
                (variant) =>
                  `${variant.name} ${runs.get(variant.name)!.at(-1)!.perSecond}/s (p99 ${runs.get(variant.name)!.at(-1)!.latency.p99} ms)`,
              )
              .join("; "),
        );
      }
      const results = variants.map((variant) => {
        const all = runs.get(variant.name)!;
        const perSecond = Math.round(median(all.map((run) => run.perSecond)) * 10) / 10;
        const nearest = [...all].sort((a, b) => Math.abs(a.perSecond - perSecond) - Math.abs(b.perSecond - perSecond))[0]!;
        return {
          name: variant.name,
          kind: variant.kind,
          design: variant.design,
          ...nearest,
          perSecond,
          rounds: all.map((run) => run.perSecond),
        };
      });
      const off = results.find((result) => result.kind === "server" && result.design === "off");
      levels.push({
        concurrency: workers,
        variants: results.map((result) => ({
          ...result,
          // The target: with notifications on, ≥ 0.9× the same server with them off.
          ...(off &&
            result.kind === "server" &&
            result !== off && {
              vsOff: Math.round((result.perSecond / off.perSecond) * 1000) / 1000,
              target: !SERVER_DESIGNS[result.design]?.reportOnly,
            }),
        })),
      });
    }
    await pool.end();
    return {
      instances: INSTANCES,
      rawPoolSize: RAW_POOL,
      steps,
      stepBytes,
      postsPerRuntime,
      designs: Object.fromEntries(designs.map((design) => [design.name, SERVER_DESIGNS[design.name]!.describe])),
      bodyBytes: { min: bodies[0]!.length, max: bodies.at(-1)!.length },
      levels,
    };
  } finally {
    for (const design of designs) {
      if (!design.owned) continue;
      for (const client of design.clients) client.close();
      for (const server of design.servers) await server.stop();
    }
    await admin.end();
  }
}
