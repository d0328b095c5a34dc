import type { PrismaClient } from "../../generated/prisma/client.ts";
import { BadRequestError, ConflictError, NotFoundError, reasons } from "../../errors.ts";
import { newId } from "../../lib/ids.ts";
import { sha256 } from "../../lib/secrets.ts";
import { escapeLike, isStorableText, searchableText } from "../../lib/text.ts";
import type { Notifier } from "../../db/channels.ts";
import type { Sql } from "../../db/sql.ts";
import type { Principal } from "../../plugins/auth.ts";
import type { ExpertDigest, Usage } from "../../schemas/common.ts";
import { parseExpertKey, toExpertDigest, type ExpertsService } from "../experts/experts.service.ts";
import type { ExpertJobStatus } from "../expert-jobs/expert-jobs.schemas.ts";
import { acceptsCheckpoints, jobStatusAfterCheckpoint, pausedStatuses, runningStatuses } from "../expert-jobs/job-state.ts";
import { deriveCheckpointAction, lightActionText, withoutActionContent, type CheckpointAction } from "./checkpoint-action.ts";
import {
  parseExclude,
  type Checkpoint,
  type Exclusion,
  type ListCheckpointsQuery,
  type PostCheckpointBody,
} from "./checkpoints.schemas.ts";
import {
  countMatching,
  readCheckpoint,
  readFeed,
  readMessageTexts,
  readPage,
  readPageFromNearerEnd,
  readPostContext,
  storeCheckpoint,
  type CheckpointRecord,
  type FeedQuery,
  type NewCheckpoint,
  type PostContext,
} from "./checkpoints.sql.ts";
import {
  assignOrdinals,
  conversationJson,
  ConversationCache,
  hashConversation,
  hashMessages,
  mergeRuns,
  PostedConversation,
  type MessageRuns,
} from "./message-store.ts";

/** A delegation as its `jsonb` column holds it (`readFeed` reads `expertId` in SQL); its texts as `storedText` keeps them. */
interface StoredDelegation {
  expertId: string;
  toolCallId: StoredText;
  toolName: StoredText;
  query?: StoredText;
  checkpointId?: StoredText;
}

/**
 * Text `jsonb` refuses (U+0000, a lone surrogate: Postgres decodes every string of it) is kept as its JSON
 * text, `{"json": "\"\\ud83d\""}`, which it accepts; `readText` gives back exactly what was posted.
 */
type StoredText = string | { json: string };
const storedText = (text: string): StoredText => (isStorableText(text) ? text : { json: JSON.stringify(text) });
const readText = (text: StoredText): string => (typeof text === "string" ? text : (JSON.parse(text.json) as string));

export interface ReadOptions {
  /** Parts to leave out (`exclude`); none by default. */
  exclude?: ReadonlySet<Exclusion>;
}

const NOTHING_EXCLUDED: ReadonlySet<Exclusion> = new Set();

// The last conversation of the jobs posted to most recently, for their next post's hash (ConversationCache):
// 32 Mi characters hold a 1,000-step job of ~2 KB per step sixteen times over.
const REMEMBERED_CONVERSATION_CHARS = 32 * 1024 * 1024;

const CHECKPOINT_ID_CONFLICT = "A checkpoint with this id already exists with different content";

const resolvedJobColumns = { id: true, organizationId: true, applicationId: true, lastSeq: true } as const;

export class CheckpointsService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly experts: ExpertsService,
    private readonly leaseMs: number,
    /** The hot paths' raw statements (checkpoints.sql.ts), prepared on PostgreSQL. */
    private readonly sql: Sql,
    private readonly notifier: Notifier,
  ) {}

  readonly #conversations = new ConversationCache(REMEMBERED_CONVERSATION_CHARS);

  async #requireJob(principal: Principal, expertJobId: string) {
    const job = await this.prisma.expertJob.findFirst({
      where: { id: expertJobId, applicationId: principal.applicationId },
      select: resolvedJobColumns,
    });
    if (!job) throw new NotFoundError(reasons.expertJobNotFound);
    return job;
  }

  async get(principal: Principal, expertJobId: string, checkpointId: string, options: ReadOptions = {}): Promise<CheckpointReply> {
    await this.#requireJob(principal, expertJobId);
    const row = await readCheckpoint(this.sql, expertJobId, checkpointId, options.exclude ?? NOTHING_EXCLUDED);
    if (!row) throw new NotFoundError(reasons.checkpointNotFound);
    const [reply] = await this.toReplies(expertJobId, [row], options);
    return reply!;
  }

  async list(
    principal: Principal,
    expertJobId: string,
    query: ListCheckpointsQuery,
  ): Promise<{ checkpoints: CheckpointReply[]; total: number }> {
    const job = await this.#requireJob(principal, expertJobId);
    const pattern = query.filter === undefined ? undefined : `%${escapeLike(searchableText(query.filter))}%`;
    const exclude = parseExclude(query.exclude);
    const page = { sort: query.sort, order: query.order, take: query.take, skip: query.skip, pattern, maxSeq: job.lastSeq, exclude };
    const [rows, total] = await Promise.all([
      pattern === undefined ? readPageFromNearerEnd(this.sql, expertJobId, page, job.lastSeq) : readPage(this.sql, expertJobId, page),
      // Checkpoints are never deleted and each one takes the next `last_seq`: without a filter that is the count.
      pattern === undefined ? job.lastSeq : countMatching(this.sql, expertJobId, pattern, job.lastSeq),
    ]);
    return { checkpoints: await this.toReplies(expertJobId, rows, { exclude }), total };
  }

  /**
   * The stream's read: the job's status and last sequence number and, consistent with them, the next
   * checkpoints after `query.afterSeq` (bounded by count and bytes), read with the parts every variant
   * leaves out left out, and the texts of their messages after `query.messagesAfter`. Each event builds
   * the reply of any variant that excludes at least that much, from message texts the caller holds.
   * Undefined when the job is gone.
   */
  async readFeed(
    expertJobId: string,
    query: FeedQuery,
  ): Promise<{ status: ExpertJobStatus; lastSeq: number; events: FeedEvent[]; messages: Array<[number, string]> } | undefined> {
    const feed = await readFeed(this.sql, expertJobId, query);
    if (!feed) return undefined;
    const digests = new Map(feed.experts.map((expert) => [expert.id, toExpertDigest(expert)]));
    const missing = feed.rows.flatMap(expertIdsOf).filter((id) => !digests.has(id));
    // An expert the statement did not find (none, unless the data is inconsistent) falls back to the usual read.
    if (missing.length > 0) for (const [id, digest] of await this.experts.digestsById(missing)) digests.set(id, digest);
    return {
      status: feed.status,
      lastSeq: feed.lastSeq,
      messages: feed.messages,
      events: feed.rows.map((row) => ({
        seq: row.seq,
        messageRuns: row.messageRuns as MessageRuns,
        build: (exclude) => buildCheckpoint(expertJobId, row, digests, exclude),
      })),
    };
  }

  /** The last sequence number and status of each of the jobs that exist (the streams' safety re-read). */
  async jobHeads(expertJobIds: string[]): Promise<Map<string, { lastSeq: number; status: ExpertJobStatus }>> {
    const rows = await this.prisma.expertJob.findMany({
      where: { id: { in: expertJobIds } },
      select: { id: true, lastSeq: true, status: true },
    });
    return new Map(rows.map((row) => [row.id, { lastSeq: row.lastSeq, status: row.status }]));
  }

  /** The stored texts of a job's messages in the given ordinal runs. */
  messageTexts(expertJobId: string, runs: MessageRuns): Promise<Map<number, string>> {
    return readMessageTexts(this.sql, expertJobId, runs);
  }

  /** Checkpoints of a job after a sequence number, in order, whole. */
  async listAfter(expertJobId: string, afterSeq: number, limit: number): Promise<Array<{ seq: number; checkpoint: Checkpoint }>> {
    const query = { afterSeq, limit, maxBytes: Number.MAX_SAFE_INTEGER, exclude: NOTHING_EXCLUDED, messagesAfter: 0 };
    const feed = await this.readFeed(expertJobId, query);
    const texts = new Map(feed?.messages ?? []);
    return (feed?.events ?? []).map(({ seq, build, messageRuns }) => ({
      seq,
      checkpoint: withMessages(build(NOTHING_EXCLUDED), JSON.parse(conversationJson(messageRuns, texts))),
    }));
  }

  /**
   * The runtime's write path: one statement stores the checkpoint, its new messages and the job's counters
   * under the job's row lock (so a job's checkpoints commit in order), and queues the NOTIFY; it only
   * applies if the job is still as read just before, else the post reads again (see checkpoints.sql.ts).
   */
  async post(principal: Principal, expertJobId: string, body: PostCheckpointBody, leaseToken?: string): Promise<CheckpointReply> {
    const { checkpoint: posted, step } = body;
    const conversation = new PostedConversation(posted.messages);
    // Usually the conversation is the previous checkpoint's plus the step's new messages: only those are
    // hashed and looked up. When it is not (an edit, a delegation, a resume elsewhere), every message is.
    let lookupFrom = Math.max(0, conversation.length - step.newMessages.length);
    const expertKey = parseExpertKey(posted.expert.key);
    const read = (withExpert = false) =>
      readPostContext(
        this.sql,
        expertJobId,
        principal.applicationId,
        posted.id ?? null,
        conversation.hashed(lookupFrom).hashes,
        withExpert && expertKey ? { organizationId: principal.organizationId, parts: expertKey } : undefined,
      );
    const readAgain = async () => {
      const context = await read();
      if (!context) throw new NotFoundError(reasons.expertJobNotFound);
      return context;
    };

    // The job's organization is the principal's: the post's expert resolves in the job's read, a delegation's while it runs.
    const [experts, first] = await Promise.allSettled([
      Promise.all([
        posted.delegateTo && this.#resolveExpert(principal.organizationId, posted.delegateTo.expert.key),
        posted.delegatedBy && this.#resolveExpert(principal.organizationId, posted.delegatedBy.expert.key),
      ]),
      read(true),
    ]);
    if (first.status === "rejected") throw first.reason;
    let context = first.value;
    if (!context) throw new NotFoundError(reasons.expertJobNotFound);
    const hashed = this.#conversations.hash(expertJobId, conversation, context.previous);
    const conversationHash = hashed.hash;
    // How many first messages are the previous conversation, for the context as read (hashed again only if it changes).
    let extension = { of: context.previous?.hash, prefixLength: hashed.prefixLength };
    const extendedLength = (read: PostContext) => {
      if (read.previous?.hash !== extension.of) {
        extension = { of: read.previous?.hash, prefixLength: read.previous && hashConversation(conversation, read.previous).prefixLength };
      }
      return extension.prefixLength;
    };
    // What an idempotent re-post must repeat: the body, with the conversation by its hash.
    const contentHash = sha256(JSON.stringify({ ...body, checkpoint: { ...posted, messages: conversationHash } })).toString("hex");
    requireLease(context, leaseToken);
    if (context.existingContentHash !== null) return this.#existing(expertJobId, body, context.existingContentHash, contentHash);
    if (!context.expert) throw new BadRequestError(reasons.expertNotFound);
    if (experts.status === "rejected") throw experts.reason;
    const expert = toExpertDigest(context.expert);
    const [delegateExpert, delegatedByExpert] = experts.value;
    const digests = new Map(
      [expert, delegateExpert, delegatedByExpert].flatMap((digest) => (digest ? [[digest.id, digest] as const] : [])),
    );
    const usage = usageCounters(posted.usage);
    const action = deriveCheckpointAction({
      status: posted.status,
      messages: posted.messages,
      newMessages: step.newMessages,
      toolCall: step.toolCall,
      toolResult: step.toolResult,
      delegateTo: posted.delegateTo && delegateExpert && { expert: delegateExpert, query: posted.delegateTo.query },
    });
    const id = posted.id ?? newId();
    const runId = posted.runId ?? newId();
    const startedAt = new Date(step.startedAt);
    const finishedAt = step.finishedAt === undefined ? null : new Date(step.finishedAt);
    const columns = {
      expertJobId,
      id,
      runId,
      stepNumber: posted.stepNumber,
      status: posted.status,
      expertId: expert.id,
      expertKey: expert.key,
      // `json`: the action carries posted text (tool arguments and results, messages) exactly, U+0000 and lone surrogates included.
      action: JSON.stringify(action),
      actionLight: lightActionText(action),
      // Only for the list's filter; answers take both names from `toolCall`.
      skillName: step.toolCall ? searchableText(step.toolCall.skillName) : null,
      toolName: step.toolCall ? searchableText(step.toolCall.toolName) : null,
      delegateTo: posted.delegateTo
        ? JSON.stringify({
            expertId: delegateExpert!.id,
            toolCallId: storedText(posted.delegateTo.toolCallId),
            toolName: storedText(posted.delegateTo.toolName),
            query: storedText(posted.delegateTo.query),
          } satisfies StoredDelegation)
        : null,
      delegatedBy: posted.delegatedBy
        ? JSON.stringify({
            expertId: delegatedByExpert!.id,
            toolCallId: storedText(posted.delegatedBy.toolCallId),
            toolName: storedText(posted.delegatedBy.toolName),
            checkpointId: storedText(posted.delegatedBy.checkpointId),
          } satisfies StoredDelegation)
        : null,
      inputMessages: step.inputMessages === undefined ? null : JSON.stringify(step.inputMessages),
      newMessages: JSON.stringify(step.newMessages),
      toolCall: step.toolCall === undefined ? null : JSON.stringify(step.toolCall),
      toolResult: step.toolResult === undefined ? null : JSON.stringify(step.toolResult),
      usage: JSON.stringify(usage),
      contextWindow: posted.contextWindow ?? 0,
      contextWindowUsage: posted.contextWindowUsage ?? 0,
      startedAt,
      finishedAt,
      contentHash,
      conversationHash,
      messagesBytes: hashed.bytes,
      detailBytes: 0,
    };
    columns.detailBytes = [columns.action, columns.inputMessages, columns.newMessages, columns.toolCall, columns.toolResult].reduce(
      (bytes, text) => bytes + (text === null ? 0 : Buffer.byteLength(text)),
      0,
    );

    for (;;) {
      if (!acceptsCheckpoints.has(context.status)) throw new ConflictError(closedJobReason(context.status));
      const extended = extendedLength(context);
      const from = extended ?? 0;
      // Fewer first messages are the previous conversation than the read assumed: look up the rest too
      // (unless the job has no messages yet).
      if (from < lookupFrom && context.lastOrdinal > 0) {
        lookupFrom = from;
        context = await readAgain();
        if (context.existingContentHash !== null) return this.#existing(expertJobId, body, context.existingContentHash, contentHash);
        continue;
      }
      const { runs, created: newMessages } = assignOrdinals(
        conversation.hashed(from),
        context.ordinalsByHash,
        context.lastOrdinal,
        extended === undefined ? [] : context.previous!.runs,
      );
      const status = jobStatusAfterCheckpoint(context.status, posted.status, posted.delegatedBy !== undefined);
      const now = new Date();
      const row: NewCheckpoint = {
        ...columns,
        seq: context.lastSeq + 1,
        messageRuns: JSON.stringify(runs),
        resumedFromCheckpointId: context.resumeFromCheckpointId,
        createdAt: now,
      };
      const stored = await storeCheckpoint(this.sql, context, newMessages, row, {
        status,
        durationMs: finishedAt ? Math.max(0, finishedAt.getTime() - startedAt.getTime()) : 0,
        leaseExpiresAt: runningStatuses.has(status) ? new Date(now.getTime() + this.leaseMs) : null,
        pausedAt: pausedStatuses.has(status) ? now : null,
      });
      if (stored) {
        this.#conversations.remember(expertJobId, conversation, hashed);
        // After the commit, never in the write's transaction (src/notify/publisher.ts); a status change is
        // always announced, a checkpoint only while someone streams its job.
        if (stored.watched) this.notifier.checkpointCreated({ expertJobId, seq: row.seq, applicationId: principal.applicationId });
        if (status !== context.status) this.notifier.expertJobChanged({ expertJobId, applicationId: principal.applicationId, status });
        // The reply is built from what was just written (the jsonb columns as Postgres returned them), the
        // experts resolved above and the posted messages: no read-back.
        const checkpointRow: CheckpointRecord = {
          ...row,
          status: posted.status,
          action: JSON.parse(stored.action),
          usage: JSON.parse(stored.usage),
          delegateTo: stored.delegate_to === null ? null : JSON.parse(stored.delegate_to),
          delegatedBy: stored.delegated_by === null ? null : JSON.parse(stored.delegated_by),
          messageRuns: JSON.parse(stored.message_runs),
          inputMessages: (step.inputMessages ?? null) as CheckpointRecord["inputMessages"],
          newMessages: step.newMessages as CheckpointRecord["newMessages"],
          toolCall: (step.toolCall ?? null) as CheckpointRecord["toolCall"],
          toolResult: (step.toolResult ?? null) as CheckpointRecord["toolResult"],
        };
        return {
          checkpoint: buildCheckpoint(expertJobId, checkpointRow, digests, NOTHING_EXCLUDED),
          messagesJson: conversation.json,
        };
      }
      // Another post, a cancel or a status report changed the job since it was read: read it again. Each
      // retry follows a change that did commit, so posts to one job always make progress.
      context = await readAgain();
      requireLease(context, leaseToken);
      if (context.existingContentHash !== null) return this.#existing(expertJobId, body, context.existingContentHash, contentHash);
    }
  }

  /** A checkpoint id the job already has: the same content is an idempotent re-post, other content a conflict. */
  async #existing(expertJobId: string, body: PostCheckpointBody, storedHash: string, contentHash: string): Promise<CheckpointReply> {
    if (storedHash !== contentHash && storedHash !== legacyContentHash(body)) throw new ConflictError(CHECKPOINT_ID_CONFLICT);
    const id = body.checkpoint.id!;
    const row = await this.prisma.checkpoint.findUniqueOrThrow({ where: { expertJobId_id: { expertJobId, id } } });
    return (await this.toReplies(expertJobId, [row], {}))[0]!;
  }

  async #resolveExpert(organizationId: string, key: string): Promise<ExpertDigest> {
    const digest = await this.experts.resolve(organizationId, key);
    if (!digest) throw new BadRequestError(reasons.expertNotFound);
    return digest;
  }

  /** Builds API checkpoints from stored ones, with their conversations parsed. */
  async toCheckpoints(expertJobId: string, rows: CheckpointRecord[], options: ReadOptions): Promise<Checkpoint[]> {
    const replies = await this.toReplies(expertJobId, rows, options);
    return replies.map(({ checkpoint, messagesJson }) =>
      messagesJson === undefined ? checkpoint : withMessages(checkpoint, JSON.parse(messagesJson)),
    );
  }

  /**
   * Builds answers from stored checkpoints: one query for their experts, one for their messages' texts, run
   * together. The conversations stay JSON text, to be spliced into the answer (checkpoint-json.ts).
   */
  async toReplies(expertJobId: string, rows: CheckpointRecord[], options: ReadOptions): Promise<CheckpointReply[]> {
    const exclude = options.exclude ?? NOTHING_EXCLUDED;
    const expertIds = [...new Set(rows.flatMap(expertIdsOf))];
    const [digests, texts] = await Promise.all([
      this.experts.digestsById(expertIds),
      !exclude.has("messages")
        ? readMessageTexts(this.sql, expertJobId, mergeRuns(rows.flatMap((row) => row.messageRuns as MessageRuns)))
        : new Map<number, string>(),
    ]);
    return rows.map((row) => {
      const checkpoint = buildCheckpoint(expertJobId, row, digests, exclude);
      if (exclude.has("messages")) return { checkpoint };
      return { checkpoint, messagesJson: conversationJson(row.messageRuns as MessageRuns, texts) };
    });
  }
}

/** A checkpoint as answered: without `messages` when they are excluded, else with them as JSON text apart. */
export interface CheckpointReply {
  checkpoint: Checkpoint;
  /** The conversation as posted, as a JSON array text (`checkpoint` itself has no `messages`). */
  messagesJson?: string;
}

export interface FeedEvent {
  seq: number;
  /** The conversation's messages, as ordinal runs. */
  messageRuns: MessageRuns;
  /** The event's checkpoint without `messages` and without these parts; `exclude` must include every part the read left out. */
  build(exclude: ReadonlySet<Exclusion>): Checkpoint;
}

const delegationsOf = (row: CheckpointRecord) =>
  [row.delegateTo, row.delegatedBy].filter((value) => value !== null) as unknown as StoredDelegation[];

const expertIdsOf = (row: CheckpointRecord) => [row.expertId, ...delegationsOf(row).map((delegation) => delegation.expertId)];

/** An API checkpoint without `messages`, and without the parts excluded. */
function buildCheckpoint(
  expertJobId: string,
  row: CheckpointRecord,
  digests: Map<string, ExpertDigest>,
  exclude: ReadonlySet<Exclusion>,
): Checkpoint {
  const delegateTo = row.delegateTo as unknown as StoredDelegation | null;
  const delegatedBy = row.delegatedBy as unknown as StoredDelegation | null;
  const toolCall = row.toolCall as NonNullable<Checkpoint["toolCall"]> | null;
  const digestOf = (id: string) => digests.get(id)!;
  const action = row.action as CheckpointAction;
  return {
    type: "checkpoint",
    id: row.id,
    action: exclude.has("actionContent") ? withoutActionContent(action) : action,
    runId: row.runId,
    expertJobId,
    stepNumber: row.stepNumber,
    status: row.status,
    expert: digestOf(row.expertId),
    // The tool call's names as posted (`skill_name` and `tool_name` are search columns, where U+0000 cannot be).
    ...(toolCall !== null && { skillName: toolCall.skillName, toolName: toolCall.toolName }),
    ...(delegateTo && {
      delegateTo: {
        expert: digestOf(delegateTo.expertId),
        toolCallId: readText(delegateTo.toolCallId),
        toolName: readText(delegateTo.toolName),
      },
    }),
    ...(delegatedBy && {
      delegatedBy: {
        expert: digestOf(delegatedBy.expertId),
        toolCallId: readText(delegatedBy.toolCallId),
        toolName: readText(delegatedBy.toolName),
        checkpointId: readText(delegatedBy.checkpointId!),
      },
    }),
    ...(!exclude.has("messages") && row.inputMessages !== null && { inputMessages: row.inputMessages as unknown[] }),
    ...(!exclude.has("newMessages") && row.newMessages !== null && { newMessages: row.newMessages as unknown[] }),
    ...(!exclude.has("toolCall") && toolCall !== null && { toolCall }),
    ...(!exclude.has("toolResult") && row.toolResult !== null && { toolResult: row.toolResult as Checkpoint["toolResult"] }),
    usage: row.usage as Usage,
    contextWindow: row.contextWindow,
    contextWindowUsage: row.contextWindowUsage,
    startedAt: row.startedAt.toISOString(),
    ...(row.finishedAt !== null && { finishedAt: row.finishedAt.toISOString() }),
    sequence: row.seq,
    createdAt: row.createdAt.toISOString(),
  };
}

/** The checkpoint with its conversation (key order does not matter: responses are serialised by schema). */
const withMessages = (checkpoint: Checkpoint, messages: unknown[]): Checkpoint => ({ ...checkpoint, messages });

/** The content hash of checkpoints stored before conversations were hashed whole: each message by its hash. */
function legacyContentHash(body: PostCheckpointBody): string {
  const { hashes } = hashMessages(body.checkpoint.messages);
  return sha256(JSON.stringify({ ...body, checkpoint: { ...body.checkpoint, messages: hashes } })).toString("hex");
}

/** The five counters only: extra keys a runtime sends are not part of the contract and would land in `jsonb`. */
function usageCounters(usage: Usage): Usage {
  const { inputTokens, outputTokens, reasoningTokens, totalTokens, cachedInputTokens } = usage;
  return { inputTokens, outputTokens, reasoningTokens, totalTokens, cachedInputTokens };
}

/** A runtime that sent its lease token holds the job only while that is the job's current lease. */
function requireLease(context: PostContext, leaseToken: string | undefined): void {
  if (leaseToken !== undefined && context.leaseToken !== leaseToken) throw new ConflictError(reasons.leaseNotCurrent);
}

function closedJobReason(status: ExpertJobStatus): string {
  if (status === "canceled" || status === "expired") return `Expert job is ${status}`;
  return "Current status is unable to accept checkpoints";
}
