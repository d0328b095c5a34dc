/**
 * The floor of an HTTP ingest path (issue 14): a plain `node:http` server, no framework, that takes the
 * same checkpoint POST as the server, reads the body, `JSON.parse`s it and runs the raw transaction the
 * bench's raw `pg` baseline runs (lock the job row, store the step's new messages, insert the checkpoint,
 * update the job, notify), with what it needs (message texts, hashes, ordinals, the action) computed from
 * the parsed body. It answers the posted checkpoint, serialised once: the contract's answer is the whole
 * checkpoint, conversation included, so sending it is part of the least any server of the contract does.
 * No authentication, validation, expert lookup, deduplication or logging.
 *
 *   DATABASE_URL=… PORT=… FLOOR_NOTIFY=in-transaction|after-commit|none node --import tsx bench/floor-server.ts
 */
import { createHash } from "node:crypto";
import http from "node:http";
import pg from "pg";

const notify = process.env.FLOOR_NOTIFY ?? "in-transaction";
if (!["in-transaction", "after-commit", "none"].includes(notify)) throw new Error(`FLOOR_NOTIFY: unknown design ${notify}`);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 10, idleTimeoutMillis: 0 });
pool.on("error", () => {});

const sha256 = (text: string) => createHash("sha256").update(text).digest();
const PATH = /^\/api\/studio\/v1\/expert_jobs\/([^/]+)\/checkpoints\/$/;

async function store(jobId: string, body: any): Promise<void> {
  const { checkpoint, step } = body;
  const texts: string[] = step.newMessages.map((message: unknown) => JSON.stringify(message));
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    const { rows } = await client.query<{ last_seq: number; expert_id: string; last_ordinal: number | null }>(
      `SELECT j.last_seq, j.expert_id, (SELECT max(ordinal) FROM job_message WHERE expert_job_id = j.id) AS last_ordinal
       FROM expert_job j WHERE j.id = $1 FOR UPDATE`,
      [jobId],
    );
    const job = rows[0];
    if (!job) throw new Error(`no job ${jobId}`);
    const seq = job.last_seq + 1;
    const first = (job.last_ordinal ?? 0) + 1;
    const ordinals = texts.map((_, index) => first + index);
    await client.query(
      "INSERT INTO job_message (expert_job_id, ordinal, hash, body) SELECT $1, o, h, b FROM unnest($2::int[], $3::bytea[], $4::json[]) AS m(o, h, b)",
      [jobId, ordinals, texts.map(sha256), texts],
    );
    const toolCall = step.toolCall ?? null;
    await client.query(
      `INSERT INTO checkpoint (expert_job_id, id, seq, run_id, step_number, status, expert_id, expert_key, action, skill_name, tool_name,
         message_runs, new_messages, tool_call, tool_result, usage, context_window, context_window_usage, started_at, finished_at, content_hash)
       VALUES ($1, $2, $3, $4, $5, $6::checkpoint_status, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`,
      [
        jobId,
        checkpoint.id ?? `floor-${seq}`,
        seq,
        checkpoint.runId ?? "floor",
        checkpoint.stepNumber,
        checkpoint.status,
        job.expert_id,
        checkpoint.expert.key,
        JSON.stringify({ type: toolCall ? "tool" : "none", toolName: toolCall?.toolName ?? null }),
        toolCall?.skillName ?? null,
        toolCall?.toolName ?? null,
        JSON.stringify([[1, first + texts.length - 1]]),
        JSON.stringify(step.newMessages),
        toolCall && JSON.stringify(toolCall),
        step.toolResult === undefined ? null : JSON.stringify(step.toolResult),
        JSON.stringify(checkpoint.usage),
        checkpoint.contextWindow ?? 0,
        checkpoint.contextWindowUsage ?? 0,
        new Date(step.startedAt),
        step.finishedAt === undefined ? null : new Date(step.finishedAt),
        sha256(`${seq}:${texts.join(",")}`),
      ],
    );
    await client.query(
      `UPDATE expert_job SET status = 'processing', current_step = $2, total_steps = total_steps + 1, usage = $3, last_seq = $4,
         resume_from_checkpoint_id = NULL, lease_expires_at = now() + interval '5 minutes', paused_at = NULL, updated_at = now() WHERE id = $1`,
      [jobId, checkpoint.stepNumber, JSON.stringify(checkpoint.usage), seq],
    );
    const payload = JSON.stringify({ expertJobId: jobId, seq });
    if (notify === "in-transaction") await client.query("SELECT pg_notify('app_checkpoint_created', $1)", [payload]);
    await client.query("COMMIT");
    if (notify === "after-commit") await client.query("SELECT pg_notify('app_checkpoint_created', $1)", [payload]);
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

const server = http.createServer((request, response) => {
  const match = request.method === "POST" ? PATH.exec(request.url ?? "") : null;
  if (!match) {
    response.writeHead(request.url === "/readyz" ? 200 : 404).end();
    return;
  }
  const chunks: Buffer[] = [];
  request.on("data", (chunk: Buffer) => chunks.push(chunk));
  request.on("end", () => {
    let body: any;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      response.writeHead(400).end();
      return;
    }
    store(match[1]!, body).then(
      () => {
        const answer = `{"data":{"checkpoint":${JSON.stringify(body.checkpoint)}}}`;
        response
          .writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(answer) })
          .end(answer);
      },
      (error: Error) => response.writeHead(500, { "content-type": "text/plain" }).end(error.message),
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), process.env.HOST ?? "127.0.0.1");
const stop = () => server.close(() => void pool.end().then(() => process.exit(0)));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
