import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { nowMs } from "./stats.ts";
import { actionWithoutContent } from "../../src/modules/checkpoints/checkpoint-action.ts";
import type { Exclusion } from "../../src/modules/checkpoints/checkpoints.schemas.ts";
import { contextWindowUsage, openingMessages, step as makeStep, usage } from "./payloads.ts";

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
  runId: string;
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
  /** The sizes the server stores with a checkpoint (the stream's reads are bounded by them). */
  messagesBytes: number;
  detailBytes: number;
  startedAt: Date;
  finishedAt: Date;
}

/**
 * Steps 1..count of a job, the same messages the HTTP bodies carry; step n adds about `stepBytes(n)` of
 * new messages. Every checkpoint carries its run's whole conversation, stored as the server stores it
 * (each message once, the checkpoint refers to the run of ordinals). One run by default; with
 * `runLength`, a new run (its own opening messages, a conversation of its own, as a delegate's run has)
 * starts every `runLength` steps.
 */
export function rawSteps(count: number, stepBytes: number | ((n: number) => number), options: { runLength?: number } = {}): RawStep[] {
  const bytesOf = typeof stepBytes === "number" ? () => stepBytes : stepBytes;
  const runLength = options.runLength ?? Number.POSITIVE_INFINITY;
  const steps: RawStep[] = [];
  let nextOrdinal = 1;
  let runFirst = 1;
  let conversationBytes = 1;
  for (let n = 1; n <= count; n++) {
    const run = Math.floor((n - 1) / runLength) + 1;
    const stepNumber = n - (run - 1) * (Number.isFinite(runLength) ? runLength : 0);
    const s = makeStep(n, bytesOf(n));
    const opening = stepNumber === 1 ? openingMessages(run).map((message) => JSON.stringify(message)) : [];
    if (stepNumber === 1) {
      runFirst = nextOrdinal;
      conversationBytes = 1;
    }
    const texts = [...opening, ...s.newMessages.map((message) => JSON.stringify(message))];
    const ordinals = texts.map(() => nextOrdinal++);
    for (const text of texts) conversationBytes += Buffer.byteLength(text) + 1;
    const startedAt = new Date(1_766_570_400_000 + n * 10_000);
    const step = {
      runId: `r${run.toString(36).padStart(23, "0")}`,
      stepNumber,
      checkpointId: s.checkpointId,
      ordinals,
      hashes: texts.map((text) => sha256(text)),
      texts,
      messageRuns: JSON.stringify([[runFirst, nextOrdinal - 1]]),
      newMessages: JSON.stringify(s.newMessages),
      toolCall: JSON.stringify(s.toolCall),
      toolResult: JSON.stringify(s.toolResult),
      usage: JSON.stringify(usage(stepNumber)),
      action: JSON.stringify(s.action),
      contentHash: sha256(`${n}:${texts.join(",")}`),
      messagesBytes: conversationBytes,
      detailBytes: 0,
      startedAt,
      finishedAt: new Date(startedAt.getTime() + 2_000),
    };
    step.detailBytes = [step.action, step.newMessages, step.toolCall, step.toolResult].reduce((sum, text) => sum + Buffer.byteLength(text), 0);
    steps.push(step);
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
         message_runs, new_messages, tool_call, tool_result, usage, context_window, context_window_usage, started_at, finished_at, content_hash,
         messages_bytes, detail_bytes)
       VALUES ($1, $2, $3, $4, $5, 'proceeding', $6, $7, $8, '@perstack/base', 'readTextFile', $9, $10, $11, $12, $13, 200000, $14, $15, $16, $17,
         $18, $19)`,
      [
        job.id,
        step.checkpointId,
        seq,
        step.runId,
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
        step.messagesBytes,
        step.detailBytes,
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

export interface RawRead {
  rows: number;
  /** Bytes of the texts assembled: every row's columns and, with messages, its conversation. */
  bytes: number;
  /** Time in Postgres and on the wire (the statements), and in this process joining conversations and encoding. */
  queryMs: number;
  assembleMs: number;
}

const JSON_COLUMNS = new Set(["action", "message_runs", "input_messages", "new_messages", "tool_call", "tool_result", "usage"]);

/**
 * Checkpoints of a job read straight from Postgres with `pg`: the floor for any read of them. One
 * statement reads the rows with the columns the variant keeps (JSON as its stored text; `actionContent`
 * drops the action's large fields in SQL, the server's own expression), and unless messages are left out
 * a second reads the stored texts of every message those rows refer to, once each. Then each row's
 * conversation is joined from the texts as a JSON array, and each row becomes one Buffer with its columns
 * and conversation (the encoding the server does for every answer). No experts, no validation, no HTTP.
 */
export async function rawReadCheckpoints(
  client: pg.Client | pg.PoolClient,
  jobId: string,
  select: { afterSeq?: number; limit?: number; seqs?: number[] },
  exclude: ReadonlySet<Exclusion> = new Set(),
): Promise<RawRead> {
  const unless = (exclusion: Exclusion, column: string) => (exclude.has(exclusion) ? "NULL" : `c.${column}::text`);
  const started = nowMs();
  const where = select.seqs ? "c.seq = ANY ($2::int[])" : "c.seq > $2";
  const { rows } = await client.query<Record<string, string | number | null>>(
    `SELECT c.id, c.seq, c.run_id, c.step_number, c.status::text AS status, c.expert_key,
       (${exclude.has("actionContent") ? actionWithoutContent : "c.action"})::text AS action,
       c.skill_name, c.tool_name, c.message_runs::text AS message_runs, ${unless("messages", "input_messages")} AS input_messages,
       ${unless("newMessages", "new_messages")} AS new_messages, ${unless("toolCall", "tool_call")} AS tool_call,
       ${unless("toolResult", "tool_result")} AS tool_result, c.usage::text AS usage, c.started_at::text AS started_at, c.finished_at::text AS finished_at
     FROM checkpoint c WHERE c.expert_job_id = $1 AND ${where} ORDER BY c.seq LIMIT $3`,
    [jobId, select.seqs ?? select.afterSeq ?? 0, select.limit ?? 2_147_483_647],
  );
  const runsOf = rows.map((row) => JSON.parse(row.message_runs as string) as Array<[number, number]>);
  const texts = new Map<number, string>();
  if (!exclude.has("messages") && rows.length > 0) {
    const ordinals = runsOf.flat();
    const from = Math.min(...ordinals.map(([first]) => first));
    const to = Math.max(...ordinals.map(([, last]) => last));
    const messages = await client.query<{ ordinal: number; body: string }>(
      "SELECT ordinal, body::text AS body FROM job_message WHERE expert_job_id = $1 AND ordinal BETWEEN $2 AND $3",
      [jobId, from, to],
    );
    for (const message of messages.rows) texts.set(message.ordinal, message.body);
  }
  const queried = nowMs();
  let bytes = 0;
  rows.forEach((row, index) => {
    let text = "{";
    for (const [column, value] of Object.entries(row)) {
      if (value !== null) text += `"${column}":${JSON_COLUMNS.has(column) ? value : JSON.stringify(value)},`;
    }
    if (!exclude.has("messages")) {
      const parts: string[] = [];
      for (const [first, last] of runsOf[index]!) for (let ordinal = first; ordinal <= last; ordinal++) parts.push(texts.get(ordinal)!);
      text += `"messages":[${parts.join(",")}]`;
    }
    bytes += Buffer.from(`${text}}`).length;
  });
  return { rows: rows.length, bytes, queryMs: queried - started, assembleMs: nowMs() - queried };
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
