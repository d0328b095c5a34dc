import type { Prisma } from "../../generated/prisma/client.ts";
import { iso, type Sql } from "../../db/sql.ts";
import type { ExpertJobStatus } from "../expert-jobs/expert-jobs.schemas.ts";
import type { CheckpointStatus } from "../expert-jobs/job-state.ts";
import type { ExpertKeyParts } from "../experts/experts.service.ts";
import { expertJson, parseExperts, type ExpertRecord } from "../experts/experts.sql.ts";
import { actionWithoutContent } from "./checkpoint-action.ts";
import type { MessageRuns, PreviousConversation } from "./message-store.ts";
import { exclusions, type Exclusion } from "./checkpoints.schemas.ts";

/*
 * The checkpoint paths that run most, as raw SQL (one function per statement), run as prepared statements
 * (src/db/sql.ts). Measured in BENCHMARKS.md; the numbers below are from its runs on the same machine.
 *
 * Writing a checkpoint took nine Prisma calls (BEGIN, lock, duplicate check, two message lookups, two
 * inserts, update, NOTIFY, COMMIT), each a query compilation and a round trip. It is now optimistic:
 * `readPostContext` reads what the write depends on, without a lock, and `storeCheckpoint` writes
 * everything in one statement (its own transaction) only if the job row is still as read; otherwise the
 * caller reads again. At 32 concurrent runtimes the server's CPU per checkpoint went from 8.8 ms to 4.6 ms.
 *
 * Hashes travel as hex text and JSON as text, and timestamps come back as ISO text, so rows are the same
 * on PostgreSQL and PGlite and JSON is parsed exactly once.
 */

export interface PostContext {
  status: ExpertJobStatus;
  lastSeq: number;
  resumeFromCheckpointId: string | null;
  /** The current claim's lease token (null when no claim holds the job). */
  leaseToken: string | null;
  /** Hex SHA-256 of the stored checkpoint with the posted id, if there is one. */
  existingContentHash: string | null;
  /** The job's highest message ordinal (0 before its first message). */
  lastOrdinal: number;
  /** Ordinals of the job's stored messages among the given hashes. */
  ordinalsByHash: Map<string, number>;
  /**
   * The conversation the next checkpoint continues: the resume point's when the job was continued, else
   * the last checkpoint's (none before the first, or stored before conversations were hashed).
   */
  previous: PreviousConversation | undefined;
  /** The expert asked for (`expert`), if the organization has it. */
  expert: ExpertRecord | undefined;
}

/**
 * The job (undefined when the application has no such job) and, in the same snapshot, what a new
 * checkpoint of it needs. Messages and checkpoints are only ever added together with `last_seq` + 1, so
 * this stays true for as long as `last_seq` and the status do: `storeCheckpoint` checks exactly that.
 */
export async function readPostContext(
  sql: Sql,
  expertJobId: string,
  applicationId: string,
  checkpointId: string | null,
  hashes: string[],
  /** An expert to resolve in the same statement (the post's own; one round trip fewer), as `findExpertByKey` does. */
  expert?: { organizationId: string; parts: ExpertKeyParts },
): Promise<PostContext | undefined> {
  const [row] = await sql.query<{
    status: ExpertJobStatus;
    last_seq: number;
    resume_from_checkpoint_id: string | null;
    lease_token: string | null;
    existing_hash: string | null;
    last_ordinal: number | null;
    known: string | null;
    previous: string | null;
    experts: string | null;
  }>(
    "checkpoint_post_context",
    `SELECT j.status::text AS status, j.last_seq, j.resume_from_checkpoint_id, j.lease_token,
      (SELECT encode(content_hash, 'hex') FROM checkpoint WHERE expert_job_id = j.id AND id = $3) AS existing_hash,
      (SELECT max(ordinal) FROM job_message WHERE expert_job_id = j.id) AS last_ordinal,
      (SELECT json_agg(json_build_array(ordinal, encode(hash, 'hex')))::text FROM job_message
        WHERE expert_job_id = j.id AND hash = ANY (ARRAY(SELECT decode(h, 'hex') FROM unnest($4::text[]) AS h))) AS known,
      (SELECT json_build_array(encode(c.conversation_hash, 'hex'), c.message_runs)::text FROM checkpoint c
        WHERE c.expert_job_id = j.id AND c.conversation_hash IS NOT NULL AND c.seq = CASE WHEN j.resume_from_checkpoint_id IS NULL
          THEN j.last_seq ELSE (SELECT r.seq FROM checkpoint r WHERE r.expert_job_id = j.id AND r.id = j.resume_from_checkpoint_id) END
      ) AS previous,
      (SELECT json_agg(${expertJson})::text FROM (
        SELECT * FROM expert WHERE $5::text IS NOT NULL AND organization_id = $5 AND name = $6
          AND CASE WHEN $7::text IS NOT NULL THEN version = $7 ELSE $8::text = ANY (tags) END
        ORDER BY created_at DESC LIMIT 1
      ) AS e JOIN organization o ON o.id = e.organization_id) AS experts
    FROM expert_job j WHERE j.id = $1 AND j.application_id = $2`,
    [
      expertJobId,
      applicationId,
      checkpointId,
      hashes,
      expert?.organizationId ?? null,
      expert?.parts.name ?? null,
      expert?.parts.version ?? null,
      expert?.parts.tag ?? null,
    ],
  );
  if (!row) return undefined;
  const known = row.known === null ? [] : (JSON.parse(row.known) as Array<[number, string]>);
  const previous = row.previous === null ? undefined : (JSON.parse(row.previous) as [string, MessageRuns]);
  return {
    status: row.status,
    lastSeq: row.last_seq,
    resumeFromCheckpointId: row.resume_from_checkpoint_id,
    leaseToken: row.lease_token,
    existingContentHash: row.existing_hash,
    lastOrdinal: row.last_ordinal ?? 0,
    ordinalsByHash: new Map(known.map(([ordinal, hash]) => [hash, ordinal])),
    previous: previous && { hash: previous[0], runs: previous[1] },
    expert: parseExperts(row.experts)[0],
  };
}

export interface NewMessage {
  ordinal: number;
  hash: string;
  /** The message's JSON text, stored as posted. */
  text: string;
}

/** Column values of a new checkpoint; JSON columns as JSON text. */
export interface NewCheckpoint {
  expertJobId: string;
  id: string;
  seq: number;
  runId: string;
  stepNumber: number;
  status: string;
  expertId: string;
  expertKey: string;
  action: string;
  /** The action without its large fields, or null when that is the action itself. */
  actionLight: string | null;
  skillName: string | null;
  toolName: string | null;
  delegateTo: string | null;
  delegatedBy: string | null;
  messageRuns: string;
  inputMessages: string | null;
  newMessages: string;
  toolCall: string | null;
  toolResult: string | null;
  usage: string;
  contextWindow: number;
  contextWindowUsage: number;
  startedAt: Date;
  finishedAt: Date | null;
  resumedFromCheckpointId: string | null;
  contentHash: string;
  /** Hex SHA-256 of the conversation's JSON text. */
  conversationHash: string;
  createdAt: Date;
  /** UTF-8 bytes of the conversation's JSON text, and of the other JSON columns: streams batch reads by them. */
  messagesBytes: number;
  detailBytes: number;
}

export interface JobUpdate {
  status: ExpertJobStatus;
  durationMs: number;
  leaseExpiresAt: Date | null;
  pausedAt: Date | null;
}

/** The JSON columns as Postgres stores them (`jsonb` normalises key order and numbers): the reply shows them exactly as GET will. */
export interface StoredJsonb {
  action: string;
  usage: string;
  delegate_to: string | null;
  delegated_by: string | null;
  message_runs: string;
  /** Someone streams the job (src/modules/expert-jobs/watch-marks.ts): the checkpoint is to be announced. */
  watched: boolean;
}

/**
 * One statement, so one transaction: the job's counters and status, the new messages and the checkpoint,
 * all only if the job still has the `last_seq`, status and resume
 * point that `readPostContext` saw. The UPDATE holds the job's row lock until commit, so a job's
 * checkpoints commit in `seq` order; one that waited for a concurrent post re-checks the row as that
 * post left it. Undefined when the job changed: read again and retry.
 */
export async function storeCheckpoint(
  sql: Sql,
  read: PostContext,
  messages: NewMessage[],
  c: NewCheckpoint,
  job: JobUpdate,
): Promise<StoredJsonb | undefined> {
  const [stored] = await sql.query<StoredJsonb>(
    "checkpoint_store",
    `WITH updated AS (
      UPDATE expert_job SET status = $30::expert_job_status, current_step = $5, total_steps = total_steps + 1,
        total_duration = total_duration + $31::bigint, usage = $19::jsonb, last_seq = $3,
        resume_from_checkpoint_id = NULL, lease_expires_at = $32::timestamptz, paused_at = $33::timestamptz,
        updated_at = $26::timestamptz
      WHERE id = $1 AND last_seq = $3 - 1 AND status = $34::expert_job_status
        AND resume_from_checkpoint_id IS NOT DISTINCT FROM $24::text
        -- Requeued and claimed again since the read, the status and last_seq can look the same: the lease cannot.
        AND lease_token IS NOT DISTINCT FROM $39::text
      -- The row as locked for this update: a mark committed before it is seen, one after it finds the checkpoint.
      RETURNING id, coalesce(watched_until > now(), false) AS watched
    ), new_messages AS (
      INSERT INTO job_message (expert_job_id, ordinal, hash, body)
      SELECT $1, m.ordinal, decode(m.hash, 'hex'), m.body::json
      FROM unnest($27::int[], $28::text[], $29::text[]) AS m(ordinal, hash, body)
      WHERE EXISTS (SELECT FROM updated)
    ), created AS (
      INSERT INTO checkpoint (expert_job_id, id, seq, run_id, step_number, status, expert_id, expert_key, action, skill_name, tool_name,
        delegate_to, delegated_by, message_runs, input_messages, new_messages, tool_call, tool_result, usage, context_window,
        context_window_usage, started_at, finished_at, resumed_from_checkpoint_id, content_hash, created_at, updated_at,
        messages_bytes, detail_bytes, conversation_hash, action_light)
      SELECT $1, $2, $3, $4, $5, $6::checkpoint_status, $7, $8, $9::json, $10, $11, $12::jsonb, $13::jsonb, $14::jsonb,
        $15::json, $16::json, $17::json, $18::json, $19::jsonb, $20::float8, $21::float8, $22::timestamptz, $23::timestamptz, $24,
        decode($25, 'hex'), $26::timestamptz, $26::timestamptz, $35::int, $36::int, decode($37, 'hex'), $38::json
      FROM updated
      RETURNING action::text, usage::text, delegate_to::text, delegated_by::text, message_runs::text
    )
    SELECT created.*, updated.watched FROM created, updated`,
    [
      c.expertJobId,
      c.id,
      c.seq,
      c.runId,
      c.stepNumber,
      c.status,
      c.expertId,
      c.expertKey,
      c.action,
      c.skillName,
      c.toolName,
      c.delegateTo,
      c.delegatedBy,
      c.messageRuns,
      c.inputMessages,
      c.newMessages,
      c.toolCall,
      c.toolResult,
      c.usage,
      c.contextWindow,
      c.contextWindowUsage,
      c.startedAt,
      c.finishedAt,
      c.resumedFromCheckpointId,
      c.contentHash,
      c.createdAt,
      messages.map((m) => m.ordinal),
      messages.map((m) => m.hash),
      messages.map((m) => m.text),
      job.status,
      job.durationMs,
      job.leaseExpiresAt,
      job.pausedAt,
      read.status,
      c.messagesBytes,
      c.detailBytes,
      c.conversationHash,
      c.actionLight,
      read.leaseToken,
    ],
  );
  return stored;
}

// Reads.

/**
 * The checkpoint columns a read selects; an excluded part is not read at all (a step that read a file
 * carries it in its new messages, tool result and action: a timeline of a long job would read megabytes).
 */
function checkpointColumns(exclude: ReadonlySet<Exclusion>): string {
  const unless = (exclusion: Exclusion, expression: string) => (exclude.has(exclusion) ? "NULL" : expression);
  const action = exclude.has("actionContent") ? actionWithoutContent : "c.action";
  return `c.id, c.seq, c.run_id, c.step_number, c.status::text AS status, c.expert_id, c.expert_key,
  (${action})::text AS action, c.skill_name, c.tool_name, c.delegate_to::text AS delegate_to, c.delegated_by::text AS delegated_by,
  c.message_runs::text AS message_runs, ${unless("messages", "c.input_messages::text")} AS input_messages,
  ${unless("newMessages", "c.new_messages::text")} AS new_messages, ${exclude.has("toolCall") ? toolCallNames : "c.tool_call::text"} AS tool_call,
  ${unless("toolResult", "c.tool_result::text")} AS tool_result, c.usage::text AS usage, c.context_window,
  c.context_window_usage, ${iso("c.started_at")} AS started_at, ${iso("c.finished_at")} AS finished_at,
  ${iso("c.created_at")} AS created_at`;
}

/** Without the tool call, its names still are the checkpoint's `skillName` and `toolName`. */
const toolCallNames = `(CASE WHEN c.tool_call IS NOT NULL
  THEN json_build_object('skillName', c.tool_call->'skillName', 'toolName', c.tool_call->'toolName')::text END)`;

/** A name per set of exclusions, for prepared statements: a bit mask, as PostgreSQL cuts names at 63 characters. */
const exclusionKey = (exclude: ReadonlySet<Exclusion>) =>
  `x${exclusions.reduce((mask, exclusion, bit) => (exclude.has(exclusion) ? mask | (1 << bit) : mask), 0)}`;

interface RawCheckpoint {
  id: string;
  seq: number;
  run_id: string;
  step_number: number;
  status: string;
  expert_id: string;
  expert_key: string;
  action: string;
  skill_name: string | null;
  tool_name: string | null;
  delegate_to: string | null;
  delegated_by: string | null;
  message_runs: string;
  input_messages: string | null;
  new_messages: string | null;
  tool_call: string | null;
  tool_result: string | null;
  usage: string;
  context_window: number;
  context_window_usage: number;
  started_at: string;
  finished_at: string | null;
  created_at: string;
}

/** What building an API checkpoint needs from a stored one (a Prisma `Checkpoint` row has all of it). */
export interface CheckpointRecord {
  id: string;
  seq: number;
  runId: string;
  stepNumber: number;
  status: CheckpointStatus;
  expertId: string;
  expertKey: string;
  action: Prisma.JsonValue;
  skillName: string | null;
  toolName: string | null;
  delegateTo: Prisma.JsonValue | null;
  delegatedBy: Prisma.JsonValue | null;
  messageRuns: Prisma.JsonValue;
  inputMessages: Prisma.JsonValue | null;
  /** Null only when a read left it out. */
  newMessages: Prisma.JsonValue | null;
  toolCall: Prisma.JsonValue | null;
  toolResult: Prisma.JsonValue | null;
  usage: Prisma.JsonValue;
  contextWindow: number;
  contextWindowUsage: number;
  startedAt: Date;
  finishedAt: Date | null;
  /** When the server stored it. */
  createdAt: Date;
}

const parseOrNull = (text: string | null) => (text === null ? null : JSON.parse(text));

function toRecord(raw: RawCheckpoint): CheckpointRecord {
  return {
    id: raw.id,
    seq: raw.seq,
    runId: raw.run_id,
    stepNumber: raw.step_number,
    status: raw.status as CheckpointStatus,
    expertId: raw.expert_id,
    expertKey: raw.expert_key,
    action: JSON.parse(raw.action),
    skillName: raw.skill_name,
    toolName: raw.tool_name,
    delegateTo: parseOrNull(raw.delegate_to),
    delegatedBy: parseOrNull(raw.delegated_by),
    messageRuns: JSON.parse(raw.message_runs),
    inputMessages: parseOrNull(raw.input_messages),
    newMessages: parseOrNull(raw.new_messages),
    toolCall: parseOrNull(raw.tool_call),
    toolResult: parseOrNull(raw.tool_result),
    usage: JSON.parse(raw.usage),
    contextWindow: Number(raw.context_window),
    contextWindowUsage: Number(raw.context_window_usage),
    startedAt: new Date(raw.started_at),
    finishedAt: raw.finished_at === null ? null : new Date(raw.finished_at),
    createdAt: new Date(raw.created_at),
  };
}

export interface FeedQuery {
  /** Checkpoints after this sequence number. */
  afterSeq: number;
  /** At most this many checkpoints… */
  limit: number;
  /** …and no more than this many bytes of them, as stored (at least one checkpoint, however large). */
  maxBytes: number;
  exclude: ReadonlySet<Exclusion>;
  /**
   * Unless messages are excluded: the texts of the job's messages after this ordinal that the checkpoints
   * read refer to come along (the reader has the ones before it).
   */
  messagesAfter: number;
}

/**
 * Everything one stream read needs, in one statement (one round trip, so one wait for Postgres when the
 * machine is busy): the job's status and last sequence number and, in the same snapshot, the next
 * checkpoints after `afterSeq` up to a count and a byte budget, the experts they name, and the texts of
 * the messages they refer to that the reader does not have yet. The budget counts the sizes stored with
 * each checkpoint, so a batch never builds more than about `maxBytes` of frames (or one checkpoint),
 * however long the job's conversation has grown. The reader builds each conversation from the message
 * texts, stored exactly as posted: a job of n steps streams O(n²) bytes of conversations but holds and
 * reads O(n) bytes of messages (building them in the statement made a replay read each message n times).
 */
export async function readFeed(
  sql: Sql,
  expertJobId: string,
  query: FeedQuery,
): Promise<
  | { status: ExpertJobStatus; lastSeq: number; rows: CheckpointRecord[]; experts: ExpertRecord[]; messages: Array<[number, string]> }
  | undefined
> {
  const withMessages = !query.exclude.has("messages");
  const messages = withMessages
    ? `(SELECT json_agg(json_build_array(m.ordinal, m.body::text) ORDER BY m.ordinal)::text FROM job_message m
        WHERE m.expert_job_id = $1 AND m.ordinal > $5
          AND m.ordinal <= (SELECT max((r.run->>1)::int) FROM page CROSS JOIN jsonb_array_elements(page.message_runs) AS r(run)))`
    : "NULL";
  const size = withMessages ? "checkpoint.messages_bytes + checkpoint.detail_bytes" : "checkpoint.detail_bytes";
  const rows = await sql.query<
    RawCheckpoint & { job_status: ExpertJobStatus; job_last_seq: number; experts: string | null; message_texts: string | null }
  >(
    `checkpoint_feed_${exclusionKey(query.exclude)}`,
    `WITH job AS (
      SELECT id, status::text AS status, last_seq FROM expert_job WHERE id = $1
    ), candidates AS (
      SELECT checkpoint.seq, sum(${size}) OVER (ORDER BY checkpoint.seq) - (${size}) AS bytes_before
      FROM checkpoint, job
      WHERE checkpoint.expert_job_id = job.id AND checkpoint.seq > $2 AND checkpoint.seq <= job.last_seq
      ORDER BY checkpoint.seq LIMIT $3
    ), page AS (
      SELECT checkpoint.* FROM checkpoint JOIN candidates ON checkpoint.expert_job_id = $1 AND checkpoint.seq = candidates.seq
      WHERE candidates.bytes_before < $4
    )
    SELECT job.status AS job_status, job.last_seq AS job_last_seq,
      (SELECT json_agg(${expertJson})::text FROM expert e JOIN organization o ON o.id = e.organization_id
        WHERE e.id IN (SELECT expert_id FROM page UNION SELECT delegate_to->>'expertId' FROM page UNION SELECT delegated_by->>'expertId' FROM page)
      ) AS experts,
      ${messages} AS message_texts,
      ${checkpointColumns(query.exclude)}
    FROM job LEFT JOIN page c ON true
    ORDER BY c.seq`,
    [expertJobId, query.afterSeq, query.limit, query.maxBytes, ...(withMessages ? [query.messagesAfter] : [])],
  );
  if (rows.length === 0) return undefined;
  const first = rows[0]!;
  return {
    status: first.job_status,
    lastSeq: first.job_last_seq,
    rows: rows.filter((row) => row.id !== null).map(toRecord),
    experts: parseExperts(first.experts),
    messages: first.message_texts === null ? [] : (JSON.parse(first.message_texts) as Array<[number, string]>),
  };
}

export interface PageQuery {
  sort: "createdAt" | "updatedAt" | "sequence";
  order: "asc" | "desc";
  take: number;
  skip: number;
  /** An ILIKE pattern on the expert key, skill name or tool name. */
  pattern?: string;
  /** Only checkpoints up to this sequence number: the job's `last_seq` when the page's total was taken. */
  maxSeq: number;
  exclude: ReadonlySet<Exclusion>;
}

/**
 * A page of a job's checkpoints. The page's keys come from the (expert_job_id, created_at, step_number,
 * seq) index alone (an index-only scan), then only its rows are fetched: a deep `skip` walks index
 * entries, not rows. On a job of 100,000 checkpoints the last page took 119 ms (one Prisma findMany, and
 * a count) and now 17 ms.
 */
export async function readPage(sql: Sql, expertJobId: string, page: PageQuery): Promise<CheckpointRecord[]> {
  const direction = page.order === "desc" ? "DESC" : "ASC";
  // `seq` is unique in a job: sorted by it, nothing else is needed to break ties.
  const order = (table: string) =>
    page.sort === "sequence"
      ? `${table}seq ${direction}`
      : `${table}${page.sort === "updatedAt" ? "updated_at" : "created_at"} ${direction}, ${table}step_number ${direction}, ${table}seq ${direction}`;
  const filter = page.pattern === undefined ? "" : "AND (expert_key ILIKE $5 OR skill_name ILIKE $5 OR tool_name ILIKE $5)";
  const rows = await sql.query<RawCheckpoint>(
    undefined, // planned per call: a generic plan does not know how deep the OFFSET goes
    `SELECT ${checkpointColumns(page.exclude)}
    FROM (
      SELECT seq FROM checkpoint WHERE expert_job_id = $1 AND seq <= $4 ${filter}
      ORDER BY ${order("")}
      OFFSET $2 LIMIT $3
    ) AS page
    JOIN checkpoint c ON c.expert_job_id = $1 AND c.seq = page.seq
    ORDER BY ${order("c.")}`,
    [expertJobId, page.skip, page.take, page.maxSeq, ...(page.pattern === undefined ? [] : [page.pattern])],
  );
  return rows.map(toRecord);
}

/**
 * The same page, read from whichever end of the job's `total` checkpoints is nearer: a deep OFFSET walks
 * every index entry before it, so the last page of 100,000 now reads 100 entries backwards instead of
 * 100,000 forwards. The rows are the same: `maxSeq` pins the set and `seq` breaks every tie.
 */
export async function readPageFromNearerEnd(sql: Sql, expertJobId: string, page: PageQuery, total: number): Promise<CheckpointRecord[]> {
  if (page.skip <= total / 2) return readPage(sql, expertJobId, page);
  const take = Math.min(page.take, total - page.skip);
  if (take <= 0) return [];
  const order = page.order === "desc" ? "asc" : "desc";
  return (await readPage(sql, expertJobId, { ...page, order, take, skip: total - page.skip - take })).reverse();
}

/** One checkpoint of a job, without the excluded parts (not read at all). */
export async function readCheckpoint(
  sql: Sql,
  expertJobId: string,
  checkpointId: string,
  exclude: ReadonlySet<Exclusion>,
): Promise<CheckpointRecord | undefined> {
  const [row] = await sql.query<RawCheckpoint>(
    `checkpoint_one_${exclusionKey(exclude)}`,
    `SELECT ${checkpointColumns(exclude)} FROM checkpoint c WHERE c.expert_job_id = $1 AND c.id = $2`,
    [expertJobId, checkpointId],
  );
  return row && toRecord(row);
}

/** Checkpoints matching a filter (without one, the job's `last_seq` is the count: checkpoints are never deleted). */
export async function countMatching(sql: Sql, expertJobId: string, pattern: string, maxSeq: number): Promise<number> {
  const [row] = await sql.query<{ total: number }>(
    "checkpoint_count_filtered",
    `SELECT count(*)::int AS total FROM checkpoint WHERE expert_job_id = $1 AND seq <= $3
      AND (expert_key ILIKE $2 OR skill_name ILIKE $2 OR tool_name ILIKE $2)`,
    [expertJobId, pattern, maxSeq],
  );
  return row!.total;
}

/** The JSON texts of the given message ordinals (as inclusive runs), as stored (as posted). */
export async function readMessageTexts(sql: Sql, expertJobId: string, runs: Array<[number, number]>): Promise<Map<number, string>> {
  if (runs.length === 0) return new Map();
  const rows = await sql.query<{ ordinal: number; body: string }>(
    undefined, // planned per call: a generic plan does not know how few ordinals the ranges cover
    `SELECT m.ordinal, m.body::text AS body
    FROM unnest($2::int[], $3::int[]) AS r(first, last)
    JOIN job_message m ON m.expert_job_id = $1 AND m.ordinal BETWEEN r.first AND r.last`,
    [expertJobId, runs.map((run) => run[0]), runs.map((run) => run[1])],
  );
  return new Map(rows.map((row) => [row.ordinal, row.body]));
}
