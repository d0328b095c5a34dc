import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { ADMIN_TOKEN, createTestDatabase, usingPostgres } from "../../helpers/app.ts";
import type { Tenant } from "../../helpers/fixtures.ts";
import { createWorkingFolder } from "../../helpers/working-folder.ts";
import type { ExpertDigest } from "../../../src/schemas/common.ts";

const root = path.resolve(import.meta.dirname, "../../..");

/** Where a server process keeps its data: a fresh test database (Postgres) or a fresh DATA_DIR (PGlite). */
export interface ServerStore {
  env: Record<string, string>;
  /** Runs SQL against the store while no server process holds it (PGlite is single-process). */
  query<T>(sql: string): Promise<T[]>;
  drop(): Promise<void>;
}

export async function createServerStore(): Promise<ServerStore> {
  const secretsKey = randomBytes(32).toString("base64");
  if (usingPostgres()) {
    const db = await createTestDatabase();
    return {
      env: { DATABASE_URL: db.url!, SECRETS_KEY: secretsKey },
      async query<T>(sql: string) {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        try {
          return (await client.query(sql)).rows as T[];
        } finally {
          await client.end();
        }
      },
      drop: () => db.drop(),
    };
  }
  const dataDir = await mkdtemp(path.join(tmpdir(), "ej-proc-"));
  return {
    env: { DATA_DIR: dataDir, SECRETS_KEY: secretsKey },
    async query<T>(sql: string) {
      const lite = await PGlite.create(path.join(dataDir, "pglite"));
      try {
        return (await lite.query<T>(sql)).rows;
      } finally {
        await lite.close();
      }
    },
    drop: () => rm(dataDir, { recursive: true, force: true }),
  };
}

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** stdout and stderr lines. */
  output: string[];
  /** The keys printed on the first start of an empty database. */
  bootstrap?: { organizationId: string; applicationId: string; clientKey: string; runtimeKey: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

// `npm start` is a node command: run it with this node, without npm in between (signals reach the server).
const startArguments = (JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start
  .split(" ")
  .slice(1);

/** The environment a server process gets: nothing of the test runner's own (no DATABASE_URL leaking in). */
const serverEnv = (extraEnv: Record<string, string | undefined>): Record<string, string> =>
  Object.fromEntries(
    Object.entries({
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      ...extraEnv,
    }).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );

/**
 * `npm start`'s node command, on a free port; resolves once it is ready. `cwd` is the working folder
 * (where `.env` is read and a relative DATA_DIR lands); by default a fresh one, so a developer's own
 * `.env` in the repository never reaches a test.
 */
export async function startServerProcess(
  store: Pick<ServerStore, "env">,
  /** Added to the store's environment; `undefined` leaves a variable out (ADMIN_TOKEN is set otherwise). */
  extraEnv: Record<string, string | undefined> = {},
  { cwd, onLine: seeLine }: { cwd?: string; onLine?: (line: string) => void } = {},
): Promise<ServerProcess> {
  const folder = cwd === undefined ? await createWorkingFolder() : undefined;
  const env = serverEnv({ ADMIN_TOKEN, ...store.env, ...extraEnv });
  const child = spawn(process.execPath, startArguments, {
    cwd: cwd ?? folder!.dir,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  void exited.then(() => folder?.remove());
  const started = new Promise<ServerProcess>((resolve, reject) => {
    const server: Partial<ServerProcess> = { child, output, exited };
    const onLine = (line: string) => {
      output.push(line);
      seeLine?.(line);
      try {
        const parsed = JSON.parse(line) as { clientKey?: string; msg?: string } & Record<string, string>;
        if (parsed.clientKey) {
          server.bootstrap = {
            organizationId: parsed.organizationId!,
            applicationId: parsed.applicationId!,
            clientKey: parsed.clientKey,
            runtimeKey: parsed.runtimeKey!,
          };
        }
        const listening = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(parsed.msg ?? "");
        if (listening) server.url = listening[1]!;
        // After the first start's keys, if any: they are printed once the server listens.
        if (parsed.msg?.startsWith("Server ready")) resolve(server as ServerProcess);
      } catch {
        // not JSON
      }
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      let buffer = "";
      stream.on("data", (chunk: Buffer) => {
        buffer += chunk.toString();
        let newline: number;
        while ((newline = buffer.indexOf("\n")) !== -1) {
          onLine(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
        }
      });
    }
    void exited.then(({ code, signal }) =>
      reject(new Error(`server exited before it was ready (${code ?? signal}):\n${output.join("\n")}`)),
    );
    setTimeout(() => reject(new Error(`server was not ready within 90 s:\n${output.join("\n")}`)), 90_000).unref();
  });
  const server = await started;
  // A fresh process on a busy machine may shed load (503) for its first seconds: hand it over once /readyz passes.
  for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
    const ready = await fetch(`${server.url}/readyz`).catch(() => undefined);
    if (ready?.status === 200) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return server;
}

export interface ExitedServer {
  code: number | null;
  stdout: string[];
  stderr: string[];
}

/**
 * `npm start` with `env` (and nothing of the runner's environment), run until it exits; a start that
 * is still running after `timeoutMs` is killed and reported as a failure: start-up must never hang.
 */
export async function runServerToExit(env: Record<string, string>, { timeoutMs = 60_000 } = {}): Promise<ExitedServer> {
  const folder = await createWorkingFolder();
  const child = spawn("npm", ["start"], { cwd: folder.dir, env: serverEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  const collect = (stream: NodeJS.ReadableStream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    return () => Buffer.concat(chunks).toString().split("\n").filter(Boolean);
  };
  const [stdout, stderr] = [collect(child.stdout!), collect(child.stderr!)];
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
  clearTimeout(timer);
  await folder.remove();
  if (code === null) throw new Error(`npm start was still running after ${timeoutMs} ms:\n${[...stdout(), ...stderr()].join("\n")}`);
  return { code, stdout: stdout(), stderr: stderr() };
}

/** The first start's keys plus an expert and a provider key, registered through the admin API. */
export async function seedThroughAdmin(server: ServerProcess): Promise<Tenant> {
  const bootstrap = server.bootstrap;
  if (!bootstrap) throw new Error("the server printed no keys: was the database empty?");
  const admin = async (method: string, url: string, body: unknown) => {
    const send = () =>
      fetch(`${server.url}/api/admin/v1${url}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
    // A fresh process on a busy machine may shed load for its first seconds (503, Retry-After): retry as a client would.
    let response = await send();
    for (let attempt = 0; response.status === 503 && attempt < 10; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 1000 * Number(response.headers.get("retry-after") ?? 1)));
      response = await send();
    }
    if (response.status !== 200) throw new Error(`${method} ${url}: ${response.status} ${await response.text()}`);
    return (await response.json()) as { data: Record<string, unknown> };
  };
  const { data } = await admin("POST", `/organizations/${bootstrap.organizationId}/experts`, {
    name: "@acme/helper",
    version: "1.0.0",
    description: "Helps",
  });
  await admin("PUT", `/applications/${bootstrap.applicationId}/provider_keys/anthropic`, { key: "sk-anthropic-secret" });
  return { ...bootstrap, expert: data.expert as ExpertDigest };
}

/** Checks every job's counters against its checkpoints and every checkpoint's messages against the store. */
export async function consistencyProblems(store: ServerStore): Promise<{ problems: string[]; checkpoints: number; jobs: number }> {
  const jobs = await store.query<{
    id: string;
    last_seq: number;
    total_steps: number;
    current_step: number;
    total_duration: string;
    usage: string;
    count: number;
    max_seq: number;
    duration: string;
    last_step: number | null;
    last_usage: string | null;
  }>(`
    SELECT j.id, j.last_seq, j.total_steps, j.current_step, j.total_duration::text AS total_duration, j.usage::text AS usage,
      (SELECT count(*)::int FROM checkpoint c WHERE c.expert_job_id = j.id) AS count,
      (SELECT coalesce(max(seq), 0)::int FROM checkpoint c WHERE c.expert_job_id = j.id) AS max_seq,
      (SELECT coalesce(sum(round(extract(epoch FROM (c.finished_at - c.started_at)) * 1000)), 0)::bigint::text
         FROM checkpoint c WHERE c.expert_job_id = j.id) AS duration,
      (SELECT c.step_number FROM checkpoint c WHERE c.expert_job_id = j.id ORDER BY seq DESC LIMIT 1) AS last_step,
      (SELECT c.usage::text FROM checkpoint c WHERE c.expert_job_id = j.id ORDER BY seq DESC LIMIT 1) AS last_usage
    FROM expert_job j`);
  const runs = await store.query<{ expert_job_id: string; seq: number; message_runs: Array<[number, number]> | string }>(
    "SELECT expert_job_id, seq, message_runs FROM checkpoint",
  );
  const messages = await store.query<{ expert_job_id: string; ordinal: number }>("SELECT expert_job_id, ordinal FROM job_message");

  const problems: string[] = [];
  for (const job of jobs) {
    if (job.last_seq !== job.max_seq) problems.push(`${job.id}: last_seq ${job.last_seq} ≠ max(seq) ${job.max_seq}`);
    if (job.count !== job.max_seq) problems.push(`${job.id}: ${job.count} checkpoints but max(seq) ${job.max_seq} (a gap)`);
    if (job.total_steps !== job.count) problems.push(`${job.id}: total_steps ${job.total_steps} ≠ ${job.count} checkpoints`);
    if (job.total_duration !== job.duration) problems.push(`${job.id}: total_duration ${job.total_duration} ≠ Σ ${job.duration}`);
    if (job.last_step !== null && job.current_step !== job.last_step)
      problems.push(`${job.id}: current_step ${job.current_step} ≠ ${job.last_step}`);
    if (job.last_usage !== null && JSON.stringify(JSON.parse(job.usage)) !== JSON.stringify(JSON.parse(job.last_usage))) {
      problems.push(`${job.id}: usage is not the last checkpoint's`);
    }
  }
  const stored = new Map<string, Set<number>>();
  for (const { expert_job_id, ordinal } of messages) {
    if (!stored.has(expert_job_id)) stored.set(expert_job_id, new Set());
    stored.get(expert_job_id)!.add(ordinal);
  }
  const referenced = new Map<string, Set<number>>();
  for (const { expert_job_id, seq, message_runs } of runs) {
    const list = typeof message_runs === "string" ? (JSON.parse(message_runs) as Array<[number, number]>) : message_runs;
    for (const [first, last] of list) {
      for (let ordinal = first; ordinal <= last; ordinal++) {
        if (!stored.get(expert_job_id)?.has(ordinal)) problems.push(`${expert_job_id}#${seq}: message ${ordinal} is not stored`);
        if (!referenced.has(expert_job_id)) referenced.set(expert_job_id, new Set());
        referenced.get(expert_job_id)!.add(ordinal);
      }
    }
  }
  // A message stored by no checkpoint would be half of a torn write.
  for (const [jobId, ordinals] of stored) {
    for (const ordinal of ordinals)
      if (!referenced.get(jobId)?.has(ordinal)) problems.push(`${jobId}: message ${ordinal} belongs to no checkpoint`);
  }
  return { problems, checkpoints: runs.length, jobs: jobs.length };
}

/** A server process that must refuse to start: its exit code and every line it wrote. */
export async function startupRefusal(
  store: ServerStore,
  extraEnv: Record<string, string> = {},
): Promise<{ code: number | null; output: string[] }> {
  try {
    const server = await startServerProcess(store, extraEnv);
    server.child.kill("SIGKILL");
    throw new Error(`the server started:\n${server.output.join("\n")}`);
  } catch (error) {
    const match = /^server exited before it was ready \((\w+)\):\n([\s\S]*)$/.exec((error as Error).message);
    if (!match) throw error;
    return { code: Number(match[1]), output: match[2]!.split("\n").filter(Boolean) };
  }
}
