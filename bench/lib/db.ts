import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { nowMs } from "./stats.ts";
import { contextWindowUsage, openingMessages, RUN_ID, step as makeStep, usage } from "./payloads.ts";

export const sha256 = (data: string | Buffer): Buffer => createHash("sha256").update(data).digest();

/** A throwaway database on the server at `adminUrl`, dropped afterwards even when the run fails. */
export async function withDatabase<T>(adminUrl: string, run: (url: string) => Promise<T>): Promise<T> {
  const name = `ej_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  try {
    return await run(url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch((error) => console.error(`could not drop ${name}:`, error));
    await admin.end();
  }
}

export interface RawJob {
  id: string;
  expertId: string;
  expertKey: string;
}

/** One step of a job as the raw transaction writes it: everything precomputed, so raw is the floor. */
export interface RawStep {
  stepNumber: number;
  ordinals: number[];
  hashes: Buffer[];
  texts: string[];
  checkpointId: string;
  messageRuns: string;
  newMessages: string;
  toolCall: string;
  toolResult: string;
  usage: string;
  action: string;
  contentHash: Buffer;
  startedAt: Date;
  finishedAt: Date;
}

/**
 * Steps 1..count of a job, the same messages the HTTP bodies carry. `window` keeps a checkpoint's
 * conversation to the opening messages plus this step (small events for the delivery measures);
 * otherwise it is the whole conversation so far, as in the ingest measure.
 */
export function rawSteps(count: number, stepBytes: number, options: { window?: boolean } = {}): RawStep[] {
  const opening = openingMessages().map((message) => JSON.stringify(message));
  const steps: RawStep[] = [];
  let nextOrdinal = 1;
  for (let n = 1; n <= count; n++) {
    const s = makeStep(n, stepBytes);
    const texts = [...(n === 1 ? opening : []), ...s.newMessages.map((message) => JSON.stringify(message))];
    const ordinals = texts.map(() => nextOrdinal++);
    const last = nextOrdinal - 1;
    const startedAt = new Date(1_766_570_400_000 + n * 10_000);
    steps.push({
      stepNumber: n,
      checkpointId: s.checkpointId,
      ordinals,
      hashes: texts.map((text) => sha256(text)),
      texts,
      messageRuns: JSON.stringify(
        options.window
          ? [
              [1, 2],
              [last - 1, last],
            ]
          : [[1, last]],
      ),
      newMessages: JSON.stringify(s.newMessages),
      toolCall: JSON.stringify(s.toolCall),
      toolResult: JSON.stringify(s.toolResult),
      usage: JSON.stringify(usage(n)),
      action: JSON.stringify(s.action),
      contentHash: sha256(`${n}:${texts.join(",")}`),
      startedAt,
      finishedAt: new Date(startedAt.getTime() + 2_000),
    });
  }
  return steps;
}

/**
 * The server's write path done by hand with `pg`: lock the job row, store the step's new messages,
 * insert the checkpoint, update the job, NOTIFY; one transaction. `onCommit` runs right before COMMIT
 * is sent (the delivery measures start their clock there).
 */
export async function rawCheckpoint(db: pg.Pool | pg.Client, job: RawJob, step: RawStep, onCommit?: () => void): Promise<number> {
  const client = db instanceof pg.Pool ? await db.connect() : db;
  try {
    await client.query("BEGIN");
    const { rows } = await client.query<{ last_seq: number; status: string }>(
      "SELECT status, last_seq FROM expert_job WHERE id = $1 FOR UPDATE",
      [job.id],
    );
    const seq = rows[0]!.last_seq + 1;
    await client.query(
      "INSERT INTO job_message (expert_job_id, ordinal, hash, body) SELECT $1, o, h, b FROM unnest($2::int[], $3::bytea[], $4::json[]) AS m(o, h, b)",
      [job.id, step.ordinals, step.hashes, step.texts],
    );
    await client.query(
      `INSERT INTO checkpoint (expert_job_id, id, seq, run_id, step_number, status, expert_id, expert_key, action, skill_name, tool_name,
         message_runs, new_messages, tool_call, tool_result, usage, context_window, context_window_usage, started_at, finished_at, content_hash)
       VALUES ($1, $2, $3, $4, $5, 'proceeding', $6, $7, $8, '@perstack/base', 'readTextFile', $9, $10, $11, $12, $13, 200000, $14, $15, $16, $17)`,
      [
        job.id,
        step.checkpointId,
        seq,
        RUN_ID,
        step.stepNumber,
        job.expertId,
        job.expertKey,
        step.action,
        step.messageRuns,
        step.newMessages,
        step.toolCall,
        step.toolResult,
        step.usage,
        contextWindowUsage(step.stepNumber),
        step.startedAt,
        step.finishedAt,
        step.contentHash,
      ],
    );
    await client.query(
      `UPDATE expert_job SET status = 'processing', current_step = $2, total_steps = total_steps + 1, total_duration = total_duration + 2000,
         usage = $3, last_seq = $4, resume_from_checkpoint_id = NULL, lease_expires_at = now() + interval '5 minutes', paused_at = NULL,
         updated_at = now() WHERE id = $1`,
      [job.id, step.stepNumber, step.usage, seq],
    );
    await client.query("SELECT pg_notify('app_checkpoint_created', $1)", [JSON.stringify({ expertJobId: job.id, seq })]);
    onCommit?.();
    await client.query("COMMIT");
    return seq;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    if (db instanceof pg.Pool) (client as pg.PoolClient).release();
  }
}

/** Raw LISTEN/NOTIFY: one listener connection, and the time from COMMIT sent to the notification. */
export class RawListener {
  readonly #client: pg.Client;
  readonly #waiting = new Map<number, (at: number) => void>();

  constructor(
    url: string,
    private readonly jobId: string,
  ) {
    this.#client = new pg.Client({ connectionString: url });
    this.#client.on("error", () => {});
    this.#client.on("notification", (message) => {
      const at = nowMs();
      const payload = JSON.parse(message.payload ?? "{}") as { expertJobId?: string; seq?: number };
      if (payload.expertJobId !== this.jobId) return;
      this.#waiting.get(payload.seq!)?.(at);
    });
  }

  async start() {
    await this.#client.connect();
    await this.#client.query("LISTEN app_checkpoint_created");
  }

  arrival(seq: number): Promise<number> {
    return new Promise((resolve) => this.#waiting.set(seq, resolve));
  }

  async stop() {
    await this.#client.end();
  }
}

/**
 * A job of `count` checkpoints written by SQL (generate_series), shaped as the server writes them: one new
 * ~300-byte message per step, conversations of runs of 100 steps (a long job is many runs: delegations,
 * resumes), so every checkpoint refers to up to 100 messages. `template` is a checkpoint the server stored
 * for this job, whose expert, action and tool columns every row copies.
 */
export async function seedLongJob(client: pg.Client, jobId: string, count: number): Promise<void> {
  await client.query("BEGIN");
  await client.query(
    `INSERT INTO job_message (expert_job_id, ordinal, hash, body)
     SELECT $1, g, sha256(convert_to(t, 'UTF8')), t::json
     FROM generate_series(2, $2::int) AS g,
       LATERAL (SELECT format('{"id":"m%s","type":"toolMessage","contents":[{"id":"t%s","type":"textPart","text":"%s"}]}',
         lpad(g::text, 23, '0'), lpad(g::text, 23, '0'),
         md5(g::text) || ' ' || md5((g + 1)::text) || ' ' || md5((g + 2)::text) || ' ' || md5((g + 3)::text) || ' ' ||
         md5((g + 4)::text) || ' ' || md5((g + 5)::text) || ' ' || md5((g + 6)::text)) AS t) AS m`,
    [jobId, count],
  );
  await client.query(
    `INSERT INTO checkpoint (expert_job_id, id, seq, run_id, step_number, status, expert_id, expert_key, action, skill_name, tool_name,
       message_runs, new_messages, tool_call, tool_result, usage, context_window, context_window_usage, started_at, finished_at, content_hash,
       created_at, updated_at)
     SELECT c.expert_job_id, 'k' || lpad(g::text, 23, '0'), g, 'r' || lpad(((g - 1) / 100)::text, 23, '0'), (g - 1) % 100 + 1, c.status,
       c.expert_id, c.expert_key, c.action, c.skill_name, c.tool_name,
       jsonb_build_array(jsonb_build_array(((g - 1) / 100) * 100 + 1, g)), json_build_array(m.body), c.tool_call, c.tool_result, c.usage,
       c.context_window, c.context_window_usage, c.started_at + (g * interval '1 second'), c.finished_at + (g * interval '1 second'),
       sha256(convert_to(g::text, 'UTF8')), c.created_at + (g * interval '10 milliseconds'), c.created_at + (g * interval '10 milliseconds')
     FROM generate_series(2, $2::int) AS g
     JOIN job_message m ON m.expert_job_id = $1 AND m.ordinal = g
     CROSS JOIN (SELECT * FROM checkpoint WHERE expert_job_id = $1 AND seq = 1) AS c`,
    [jobId, count],
  );
  await client.query(`UPDATE expert_job SET last_seq = $2, total_steps = $2, current_step = 100, status = 'processing' WHERE id = $1`, [
    jobId,
    count,
  ]);
  await client.query("COMMIT");
  // A long-lived table is vacuumed by autovacuum; do it now rather than whenever autovacuum gets to it.
  await client.query("VACUUM (ANALYZE) checkpoint, job_message");
}
