import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { ADMIN_TOKEN, createTestDatabase, usingPostgres } from "../../helpers/app.ts";
import type { Tenant } from "../../helpers/fixtures.ts";
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

/** `node --import tsx src/server.ts`, the way `npm start` runs it, on a free port; resolves once it listens. */
export async function startServerProcess(store: ServerStore, extraEnv: Record<string, string> = {}): Promise<ServerProcess> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "info",
    ADMIN_TOKEN,
    ...store.env,
    ...extraEnv,
  };
  const child = spawn(process.execPath, ["--import", "tsx", "src/server.ts"], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const started = new Promise<ServerProcess>((resolve, reject) => {
    const server: Partial<ServerProcess> = { child, output, exited };
    const onLine = (line: string) => {
      output.push(line);
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
        if (listening) resolve({ ...(server as ServerProcess), url: listening[1]! });
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
    void exited.then(({ code, signal }) => reject(new Error(`server exited before listening (${code ?? signal}):\n${output.join("\n")}`)));
    setTimeout(() => reject(new Error(`server did not listen within 90 s:\n${output.join("\n")}`)), 90_000).unref();
  });
  return started;
}

/** The first start's keys plus an expert and a provider key, registered through the admin API. */
export async function seedThroughAdmin(server: ServerProcess): Promise<Tenant> {
  const bootstrap = server.bootstrap;
  if (!bootstrap) throw new Error("the server printed no keys: was the database empty?");
  const admin = async (method: string, url: string, body: unknown) => {
    const response = await fetch(`${server.url}/api/admin/v1${url}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
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
    const match = /^server exited before listening \((\w+)\):\n([\s\S]*)$/.exec((error as Error).message);
    if (!match) throw error;
    return { code: Number(match[1]), output: match[2]!.split("\n").filter(Boolean) };
  }
}
