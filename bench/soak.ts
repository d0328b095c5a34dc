/**
 * Soak: many runtimes post checkpoints while many stream clients follow the jobs, and every few seconds
 * a share of the stream clients is killed (they reconnect with Last-Event-ID, as EventSource does) and,
 * on PostgreSQL, the server's LISTEN connection is terminated. Every event every client receives is
 * checked: each job's events must arrive exactly once, in order, then `complete`.
 *
 *   npm run soak               # 100 runtimes × 1,000 streams for 60 s, kills every 10 s
 *   npm run soak -- --quick    # the CI size: 10 × 100 for 15 s, kills every 3 s
 *
 * Runs the real server (`node --import tsx src/server.ts`) on a fresh database: with DATABASE_URL, a new
 * database on that server (dropped afterwards; the role needs CREATEDB), else PGlite in a temporary
 * DATA_DIR. Prints one JSON summary; exits 1 on any lost, duplicated or out-of-order event, a stream
 * that never completed, or a runtime that gave up.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    runtimes: { type: "string" },
    streams: { type: "string" },
    seconds: { type: "string" },
    "kill-every": { type: "string" },
    steps: { type: "string" },
  },
});

const config = {
  runtimes: Number(args.runtimes ?? (args.quick ? 10 : 100)),
  streams: Number(args.streams ?? (args.quick ? 100 : 1000)),
  seconds: Number(args.seconds ?? (args.quick ? 15 : 60)),
  killEverySeconds: Number(args["kill-every"] ?? (args.quick ? 3 : 10)),
  /** Checkpoints per job (the last one completes it). */
  steps: Number(args.steps ?? 12),
  /** Share of the stream clients killed at each kill. */
  killShare: 0.2,
  /** Pause between a runtime's steps (an LLM step takes seconds; this keeps the server busy, not saturated). */
  stepPauseMs: 40,
};

const ADMIN_TOKEN = `soak-admin-${randomBytes(12).toString("hex")}`;
// Below the server's per-key limits (1,200 requests a minute, 100 open streams): one key per 10 streams.
const STREAMS_PER_KEY = 10;

interface Counts {
  jobsStarted: number;
  jobsCompleted: number;
  checkpointsPosted: number;
  postRetries: number;
  rateLimited: number;
  eventsReceived: number;
  eventsChecked: number;
  jobsFollowed: number;
  streamKills: number;
  listenerKills: number;
  /** Listener kills planned (PostgreSQL only), and those that terminated no connection or failed: any of these fails the soak. */
  listenerKillsPlanned: number;
  listenerKillsMissed: number;
  reconnects: number;
  errorEvents: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  wrongPayload: number;
  streamsIncomplete: number;
  runtimeFailures: number;
}

const counts: Counts = {
  jobsStarted: 0,
  jobsCompleted: 0,
  checkpointsPosted: 0,
  postRetries: 0,
  rateLimited: 0,
  eventsReceived: 0,
  eventsChecked: 0,
  jobsFollowed: 0,
  streamKills: 0,
  listenerKills: 0,
  listenerKillsPlanned: 0,
  listenerKillsMissed: 0,
  reconnects: 0,
  errorEvents: 0,
  lost: 0,
  duplicated: 0,
  outOfOrder: 0,
  wrongPayload: 0,
  streamsIncomplete: 0,
  runtimeFailures: 0,
};
const problems: string[] = [];

// ---------------------------------------------------------------------------------------------- database

interface Store {
  env: Record<string, string>;
  /** Terminates the server's LISTEN connection (PostgreSQL only). */
  killListener?: () => Promise<number>;
  drop(): Promise<void>;
}

async function createStore(): Promise<Store> {
  const secretsKey = randomBytes(32).toString("base64");
  const url = process.env.DATABASE_URL;
  if (!url) {
    const dataDir = await mkdtemp(path.join(tmpdir(), "ej-soak-"));
    return { env: { DATA_DIR: dataDir, SECRETS_KEY: secretsKey }, drop: () => rm(dataDir, { recursive: true, force: true }) };
  }
  const name = `ej_soak_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const target = new URL(url);
  target.pathname = `/${name}`;
  return {
    env: { DATABASE_URL: target.toString(), SECRETS_KEY: secretsKey },
    async killListener() {
      const client = new pg.Client({ connectionString: target.toString() });
      await client.connect();
      const { rowCount } = await client.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'expert-jobs-listener' AND datname = current_database()",
      );
      await client.end();
      return rowCount ?? 0;
    },
    async drop() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

// ------------------------------------------------------------------------------------------------ server

interface Server {
  url: string;
  keys: { organizationId: string; applicationId: string; clientKey: string; runtimeKey: string };
  stop(): Promise<number | null>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

async function startServer(store: Store): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], {
    cwd: path.resolve(import.meta.dirname, ".."),
    env: { PATH: process.env.PATH ?? "", PORT: String(port), HOST: "127.0.0.1", LOG_LEVEL: "warn", ADMIN_TOKEN, ...store.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  let keys: Server["keys"] | undefined;
  let buffer = "";
  const onData = (chunk: Buffer) => {
    buffer += chunk.toString();
    let newline: number;
    while ((newline = buffer.indexOf("\n")) !== -1) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      tail.push(line);
      if (tail.length > 50) tail.shift();
      try {
        const parsed = JSON.parse(line) as Record<string, string>;
        // Printed once, on the first start of the empty database.
        if (parsed.clientKey) keys = parsed as unknown as Server["keys"];
      } catch {
        // not JSON
      }
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      exitCode = code;
      resolve(code);
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`server exited (${exitCode}):\n${tail.join("\n")}`);
    if (Date.now() > deadline) throw new Error(`server did not start:\n${tail.join("\n")}`);
    if (keys && (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200) break;
    await sleep(100);
  }
  return {
    url,
    keys: keys!,
    async stop() {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

async function admin(server: Server, method: string, url: string, body: unknown): Promise<Record<string, any>> {
  const response = await fetch(`${server.url}/api/admin/v1${url}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) throw new Error(`${method} ${url}: ${response.status} ${await response.text()}`);
  return ((await response.json()) as { data: Record<string, any> }).data;
}

// ------------------------------------------------------------------------------------------------- runtime

const id = () => {
  // cuid2-shaped ids (24 lowercase alphanumerics starting with a letter): fixed per checkpoint, so retries are idempotent.
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const bytes = randomBytes(24);
  return "s" + Array.from(bytes.subarray(1), (byte) => alphabet[byte % 36]).join("");
};

function checkpointBodies(expert: { key: string; name: string; version: string }, steps: number) {
  const messages: unknown[] = [{ id: id(), type: "userMessage", contents: [{ id: id(), type: "textPart", text: "Soak" }] }];
  return Array.from({ length: steps }, (_, index) => {
    const stepNumber = index + 1;
    const last = stepNumber === steps;
    const newMessages = [{ id: id(), type: "expertMessage", contents: [{ id: id(), type: "textPart", text: `step ${stepNumber}` }] }];
    messages.push(...newMessages);
    const startedAt = 1_766_570_400_000 + stepNumber * 1000;
    const usage = { inputTokens: stepNumber, outputTokens: 1, reasoningTokens: 0, totalTokens: stepNumber + 1, cachedInputTokens: 0 };
    return {
      checkpoint: { id: id(), status: last ? "completed" : "proceeding", stepNumber, messages: [...messages], expert, usage },
      step: { stepNumber, newMessages, usage, startedAt, finishedAt: startedAt + 500 },
    };
  });
}

/** Sends until a final answer: 5xx, 429 and network errors are retried (same body, same id). */
async function send(url: string, key: string, body: unknown): Promise<{ status: number; json: any }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await response.text();
      if (response.status < 500 && response.status !== 429) return { status: response.status, json: text ? JSON.parse(text) : undefined };
      if (response.status === 429) counts.rateLimited++;
      const retryAfter = Number(response.headers.get("retry-after") ?? 0);
      counts.postRetries++;
      await sleep(retryAfter > 0 ? retryAfter * 1000 : Math.min(1000, 50 * 2 ** attempt));
    } catch {
      counts.postRetries++;
      await sleep(Math.min(1000, 50 * 2 ** attempt));
    }
    if (attempt > 40) throw new Error(`${url}: no answer after ${attempt} attempts`);
  }
}

// ------------------------------------------------------------------------------------------------- streams

interface ActiveJob {
  id: string;
  steps: number;
}

class StreamClient {
  #controller: AbortController | undefined;

  constructor(
    private readonly server: Server,
    private readonly key: string,
  ) {}

  /** Kills the connection; the follow loop reconnects with Last-Event-ID like EventSource. */
  kill() {
    if (!this.#controller) return;
    counts.streamKills++;
    this.#controller.abort();
  }

  /** Follows one job to `complete`, across kills, and audits what arrived. */
  async follow(job: ActiveJob, deadline: number): Promise<void> {
    const ids: number[] = [];
    let completed = false;
    while (!completed) {
      if (Date.now() > deadline) {
        counts.streamsIncomplete++;
        problems.push(`stream of ${job.id} did not complete (got ${ids.length} of ${job.steps})`);
        break;
      }
      this.#controller = new AbortController();
      const last = ids.at(-1);
      try {
        const response = await fetch(`${this.server.url}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream?exclude=messages`, {
          headers: { authorization: `Bearer ${this.key}`, ...(last !== undefined && { "last-event-id": String(last) }) },
          signal: this.#controller.signal,
        });
        if (response.status !== 200) {
          if (response.status === 429) counts.rateLimited++;
          await response.body?.cancel();
          await sleep(Number(response.headers.get("retry-after") ?? 0) * 1000 || 200);
          continue;
        }
        const decoder = new TextDecoder();
        let buffer = "";
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          let boundary: number;
          while ((boundary = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, boundary);
            buffer = buffer.slice(boundary + 2);
            if (block.startsWith(":")) continue;
            const event = /^event: (.*)$/m.exec(block)?.[1];
            const data = /^data: (.*)$/m.exec(block)?.[1] ?? "";
            if (event === "message") {
              const seq = Number(/^id: (\d+)$/m.exec(block)?.[1]);
              counts.eventsReceived++;
              ids.push(seq);
              // This soak's runtimes post step n as the job's n-th checkpoint: the payload must match its id.
              if (Number(/"stepNumber":(\d+)/.exec(data)?.[1]) !== seq) counts.wrongPayload++;
            } else if (event === "error") {
              counts.errorEvents++;
            } else if (event === "complete") {
              completed = true;
            }
          }
          if (completed) break;
        }
      } catch {
        // killed or reset: reconnect
      }
      if (!completed) {
        counts.reconnects++;
        await sleep(50);
      }
    }
    this.#controller = undefined;
    if (!completed) return;
    counts.jobsFollowed++;
    const seen = new Set<number>();
    let previous = 0;
    for (const seq of ids) {
      if (seen.has(seq)) counts.duplicated++;
      else if (seq < previous) counts.outOfOrder++;
      seen.add(seq);
      previous = Math.max(previous, seq);
    }
    const lostBefore = counts.lost;
    for (let seq = 1; seq <= job.steps; seq++) if (!seen.has(seq)) counts.lost++;
    if (counts.lost > lostBefore || seen.size !== ids.length) problems.push(`${job.id}: received ${ids.join(",")} of 1..${job.steps}`);
    counts.eventsChecked += ids.length;
  }
}

// ----------------------------------------------------------------------------------------------------- run

async function main() {
  const store = await createStore();
  const server = await startServer(store);
  let exitCode = 0;
  try {
    const expert = (
      await admin(server, "POST", `/organizations/${server.keys.organizationId}/experts`, {
        name: "@soak/expert",
        version: "1.0.0",
        description: "Soak",
      })
    ).expert as { key: string; name: string; version: string };
    await admin(server, "PUT", `/applications/${server.keys.applicationId}/provider_keys/anthropic`, { key: "sk-soak" });
    const newKey = async (scope: "client" | "runtime") =>
      (await admin(server, "POST", `/applications/${server.keys.applicationId}/api_keys`, { scope })).apiKey.key as string;
    const runtimeKeys = await Promise.all(Array.from({ length: config.runtimes }, () => newKey("runtime")));
    const clientKeys = await Promise.all(Array.from({ length: Math.ceil(config.streams / STREAMS_PER_KEY) }, () => newKey("client")));

    const started = Date.now();
    const runUntil = started + config.seconds * 1000;
    // Jobs whose stream clients may still join: a stream always starts at the beginning, so joining late is fine.
    const active: ActiveJob[] = [];
    const jobWaiters: Array<() => void> = [];

    const runtime = async (key: string) => {
      while (Date.now() < runUntil) {
        const start = await send(`${server.url}/api/studio/v1/expert_jobs`, key, { expertKey: expert.key, query: "Soak" });
        if (start.status !== 200) throw new Error(`start: ${start.status} ${JSON.stringify(start.json)}`);
        const job: ActiveJob = { id: start.json.data.expertJob.id, steps: config.steps };
        counts.jobsStarted++;
        active.push(job);
        jobWaiters.splice(0).forEach((wake) => wake());
        for (const body of checkpointBodies(expert, config.steps)) {
          const posted = await send(`${server.url}/api/studio/v1/expert_jobs/${job.id}/checkpoints/`, key, body);
          if (posted.status !== 200) throw new Error(`checkpoint: ${posted.status} ${JSON.stringify(posted.json)}`);
          counts.checkpointsPosted++;
          await sleep(config.stepPauseMs);
        }
        counts.jobsCompleted++;
        active.splice(active.indexOf(job), 1);
      }
    };

    const clients = Array.from(
      { length: config.streams },
      (_, index) => new StreamClient(server, clientKeys[Math.floor(index / STREAMS_PER_KEY)]!),
    );
    const follower = async (client: StreamClient) => {
      while (Date.now() < runUntil) {
        const job = active[Math.floor(Math.random() * active.length)];
        if (!job) {
          await new Promise<void>((resolve) => jobWaiters.push(resolve));
          continue;
        }
        await client.follow(job, runUntil + 60_000);
      }
    };

    const pendingKills: Array<Promise<void>> = [];
    const killer = setInterval(() => {
      for (const client of clients) if (Math.random() < config.killShare) client.kill();
      if (store.killListener) {
        counts.listenerKillsPlanned++;
        const kill = store
          .killListener()
          .then((killed) => {
            counts.listenerKills += killed;
            if (killed === 0) {
              counts.listenerKillsMissed++;
              problems.push("a planned listener kill found no LISTEN connection to terminate");
            }
          })
          .catch((error) => {
            counts.listenerKillsMissed++;
            problems.push(`listener kill failed: ${String(error)}`);
          });
        pendingKills.push(kill);
      }
    }, config.killEverySeconds * 1000);
    const progress = setInterval(
      () => console.error(`soak: ${Math.round((Date.now() - started) / 1000)} s ${JSON.stringify(counts)}`),
      5_000,
    );

    const runtimes = runtimeKeys.map((key) =>
      runtime(key).catch((error: unknown) => {
        counts.runtimeFailures++;
        problems.push(`runtime: ${String(error)}`);
      }),
    );
    const followers = clients.map((client) => follower(client));
    await Promise.all(runtimes);
    clearInterval(killer);
    await Promise.all(pendingKills);
    jobWaiters.splice(0).forEach((wake) => wake());
    await Promise.all(followers);
    clearInterval(progress);

    const failed =
      counts.lost + counts.duplicated + counts.outOfOrder + counts.wrongPayload + counts.streamsIncomplete + counts.runtimeFailures;
    // A soak on PostgreSQL is only a soak of the LISTEN connection's recovery if its planned kills happened.
    const killsMissing = store.killListener !== undefined && (counts.listenerKillsMissed > 0 || counts.listenerKills === 0);
    if (failed > 0 || counts.jobsFollowed === 0 || killsMissing) exitCode = 1;
    console.log(
      JSON.stringify(
        {
          mode: args.quick ? "quick" : "full",
          database: process.env.DATABASE_URL ? "postgres" : "pglite",
          config,
          seconds: Math.round((Date.now() - started) / 100) / 10,
          ...counts,
          problems: problems.slice(0, 20),
          result: exitCode === 0 ? "ok" : "FAILED",
        },
        null,
        2,
      ),
    );
  } finally {
    const code = await server.stop();
    if (code !== 0) {
      console.error(`server exited with ${code} after SIGTERM`);
      exitCode = 1;
    }
    await store.drop();
  }
  process.exit(exitCode);
}

await main();
