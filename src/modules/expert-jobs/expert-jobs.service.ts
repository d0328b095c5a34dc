import type { Prisma, PrismaClient } from "../../generated/prisma/client.ts";
import { BadRequestError, ConflictError, NotFoundError, reasons } from "../../errors.ts";
import { canonicalJsonHash } from "../../lib/canonical-json.ts";
import { newId } from "../../lib/ids.ts";
import { escapeLike } from "../../lib/text.ts";
import { defaultModel, providerOf } from "../../lib/models.ts";
import type { Notifier } from "../../db/channels.ts";
import type { Principal } from "../../plugins/auth.ts";
import { emptyUsage, type Model, type Usage } from "../../schemas/common.ts";
import { toExpertDigest, type ExpertsService } from "../experts/experts.service.ts";
import type { ProviderKeysService } from "../provider-keys/provider-keys.service.ts";
import {
  fileList,
  IDEMPOTENCY_WINDOW_MS,
  type ContinueExpertJobBody,
  type ExpertJob,
  type ExpertJobStatus,
  type ListExpertJobsQuery,
  type ResumeExpertJobBody,
  type StartExpertJobBody,
} from "./expert-jobs.schemas.ts";
import { continuableStatuses, statusAfterCancel } from "./job-state.ts";

export const expertJobInclude = {
  expert: { include: { organization: { select: { id: true, name: true, createdAt: true } } } },
} as const satisfies Prisma.ExpertJobInclude;

export type ExpertJobRow = Prisma.ExpertJobGetPayload<{ include: typeof expertJobInclude }>;

export function toExpertJob(row: ExpertJobRow): ExpertJob {
  return {
    type: "expertJob",
    id: row.id,
    organizationId: row.organizationId,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    status: row.status,
    runtimeVersion: "v1.0",
    expertKey: row.expertKey,
    ...(row.query !== null && { query: row.query }),
    files: row.files,
    ...(row.interactiveToolCallResult !== null && { interactiveToolCallResult: row.interactiveToolCallResult }),
    expert: toExpertDigest(row.expert),
    model: row.model as Model,
    temperature: row.temperature,
    maxSteps: row.maxSteps,
    maxRetries: row.maxRetries,
    currentStep: row.currentStep,
    totalSteps: row.totalSteps,
    totalDuration: Number(row.totalDuration),
    usage: row.usage as Usage,
    applicationId: row.applicationId,
  };
}

export interface StartedJob {
  expertJob: ExpertJob;
  /** An earlier start with the same idempotency key and body created it. */
  replayed: boolean;
}

interface Idempotency {
  key: string;
  requestHash: string;
}

/** Rolls back a start whose idempotency key a concurrent start took first. */
class IdempotencyKeyTaken extends Error {}

export const hasQueryOrFiles = (query: string | undefined, files: string | string[] | undefined): boolean =>
  (query !== undefined && query !== "") || fileList(files).length > 0;

export class ExpertJobsService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly experts: ExpertsService,
    private readonly providerKeys: ProviderKeysService,
    private readonly notifier: Notifier,
  ) {}

  /**
   * Queues a new job. With an idempotency key, a retry of the same body within the window returns the job
   * the first request started (`replayed`), and another body under the key is a 409. The key's row is
   * written in the job's transaction: of concurrent retries, the first insert wins, the others wait for
   * its commit on the unique key, roll their own job back and answer with the winner's.
   */
  async start(principal: Principal, body: StartExpertJobBody, idempotencyKey?: string): Promise<StartedJob> {
    const idempotency = idempotencyKey === undefined ? undefined : { key: idempotencyKey, requestHash: canonicalJsonHash(body) };
    if (idempotency) {
      const earlier = await this.#earlierStart(principal, idempotency);
      if (earlier) return earlier;
    }
    if (!hasQueryOrFiles(body.query, body.files)) throw new BadRequestError(reasons.queryOrFilesRequired);
    const expert = await this.experts.resolve(principal.organizationId, body.expertKey);
    if (!expert) throw new BadRequestError(reasons.expertNotFound);
    const model = body.model ?? defaultModel;
    await this.requireProviderKey(principal.applicationId, model);
    let row: ExpertJobRow;
    try {
      row = await this.prisma.$transaction(async (tx) => {
        const created = await tx.expertJob.create({
          data: {
            id: newId(),
            organizationId: principal.organizationId,
            applicationId: principal.applicationId,
            expertId: expert.id,
            expertKey: body.expertKey,
            status: "queued",
            ...(body.query !== undefined && body.query !== "" && { query: body.query }),
            files: fileList(body.files),
            model,
            temperature: body.temperature ?? 0,
            maxSteps: body.maxSteps ?? 100,
            maxRetries: body.maxRetries ?? 5,
            usage: emptyUsage(),
          },
          include: expertJobInclude,
        });
        if (idempotency && !(await this.#rememberStart(tx, principal.applicationId, idempotency, created.id))) {
          throw new IdempotencyKeyTaken();
        }
        return created;
      });
    } catch (error) {
      if (!(error instanceof IdempotencyKeyTaken)) throw error;
      // A concurrent request with the key committed first (its row is visible now): answer as a retry of it.
      const earlier = await this.#earlierStart(principal, idempotency!);
      if (earlier) return earlier;
      throw error;
    }
    this.notifier.expertJobChanged({ expertJobId: row.id, applicationId: row.applicationId, status: row.status });
    return { expertJob: toExpertJob(row), replayed: false };
  }

  /** The job an earlier start with this key created (undefined: none within the window); 409 for another body. */
  async #earlierStart(principal: Principal, idempotency: Idempotency): Promise<StartedJob | undefined> {
    const earlier = await this.prisma.idempotencyKey.findUnique({
      where: { applicationId_key: { applicationId: principal.applicationId, key: idempotency.key } },
      select: { requestHash: true, expertJobId: true, createdAt: true },
    });
    if (!earlier || earlier.createdAt.getTime() <= Date.now() - IDEMPOTENCY_WINDOW_MS) return undefined;
    if (earlier.requestHash !== idempotency.requestHash) throw new ConflictError(reasons.idempotencyKeyReused);
    return { expertJob: await this.get(principal, earlier.expertJobId), replayed: true };
  }

  /**
   * Records the key for the new job; false when a live row holds it (committed by a concurrent request,
   * which this insert waited for). A row past the window is taken over.
   */
  async #rememberStart(tx: Prisma.TransactionClient, applicationId: string, idempotency: Idempotency, expertJobId: string) {
    const windowStart = new Date(Date.now() - IDEMPOTENCY_WINDOW_MS);
    const taken = await tx.$queryRaw<Array<{ expert_job_id: string }>>`
      INSERT INTO idempotency_key (application_id, key, request_hash, expert_job_id)
      VALUES (${applicationId}, ${idempotency.key}, ${idempotency.requestHash}, ${expertJobId})
      ON CONFLICT (application_id, key) DO UPDATE
        SET request_hash = EXCLUDED.request_hash, expert_job_id = EXCLUDED.expert_job_id, created_at = EXCLUDED.created_at
        WHERE idempotency_key.created_at <= ${windowStart.toISOString()}::timestamptz
      RETURNING expert_job_id`;
    return taken.length === 1;
  }

  /** Forgets idempotency keys past the window, in bounded batches (the sweeper calls it). */
  async deleteExpiredIdempotencyKeys(now = new Date(), batchSize = 1000): Promise<number> {
    const before = new Date(now.getTime() - IDEMPOTENCY_WINDOW_MS).toISOString();
    let deleted = 0;
    for (;;) {
      const count = await this.prisma.$executeRaw`
        DELETE FROM idempotency_key WHERE ctid IN (
          SELECT ctid FROM idempotency_key WHERE created_at <= ${before}::timestamptz LIMIT ${batchSize})`;
      deleted += count;
      if (count < batchSize) return deleted;
    }
  }

  async requireProviderKey(applicationId: string, model: Model): Promise<void> {
    if (!(await this.providerKeys.has(applicationId, providerOf(model)))) throw new BadRequestError(reasons.providerKeyNotFound);
  }

  /** The job of the principal's application; another application's job does not exist for it. */
  async findRow(principal: Principal, expertJobId: string): Promise<ExpertJobRow> {
    const row = await this.prisma.expertJob.findFirst({
      where: { id: expertJobId, applicationId: principal.applicationId },
      include: expertJobInclude,
    });
    if (!row) throw new NotFoundError(reasons.expertJobNotFound);
    return row;
  }

  async get(principal: Principal, expertJobId: string): Promise<ExpertJob> {
    return toExpertJob(await this.findRow(principal, expertJobId));
  }

  async list(principal: Principal, query: ListExpertJobsQuery): Promise<{ expertJobs: ExpertJob[]; total: number }> {
    const where: Prisma.ExpertJobWhereInput = {
      applicationId: principal.applicationId,
      ...(query.status && { status: query.status as ExpertJobStatus }),
      ...(query.filter && { expertKey: { contains: escapeLike(query.filter), mode: "insensitive" } }),
    };
    const [rows, total] = await Promise.all([
      this.prisma.expertJob.findMany({
        where,
        include: expertJobInclude,
        orderBy: [{ [query.sort]: query.order }, { id: query.order }],
        take: query.take,
        skip: query.skip,
      }),
      this.prisma.expertJob.count({ where }),
    ]);
    return { expertJobs: rows.map(toExpertJob), total };
  }

  /** The application's jobs among `expertJobIds` as GET answers them (a deleted one is left out). */
  async listByIds(applicationId: string, expertJobIds: string[]): Promise<ExpertJob[]> {
    const rows = await this.prisma.expertJob.findMany({
      where: { id: { in: expertJobIds }, applicationId },
      include: expertJobInclude,
      orderBy: [{ createdAt: "asc" }, { id: "asc" }],
    });
    return rows.map(toExpertJob);
  }

  /** An application's jobs changed after `since`, oldest change first, at most `limit`. */
  async listChangedSince(applicationId: string, since: Date, limit: number): Promise<ExpertJob[]> {
    const rows = await this.prisma.expertJob.findMany({
      where: { applicationId, updatedAt: { gt: since } },
      include: expertJobInclude,
      orderBy: [{ updatedAt: "asc" }, { id: "asc" }],
      take: limit,
    });
    return rows.map(toExpertJob);
  }

  /** Queues a stopped job again from its latest checkpoint (SPEC §7). */
  async continue(principal: Principal, expertJobId: string, body: ContinueExpertJobBody): Promise<ExpertJob> {
    const job = await this.findRow(principal, expertJobId);
    if (!hasQueryOrFiles(body.query, body.files)) throw new BadRequestError(reasons.queryOrFilesRequired);
    if (job.lastSeq === 0) throw new BadRequestError(reasons.noCheckpointFound);
    return this.#requeue(job, body, null);
  }

  /** Like continue, but the runtime resumes from the given checkpoint of the job instead of the latest. */
  async resumeFrom(principal: Principal, expertJobId: string, body: ResumeExpertJobBody): Promise<ExpertJob> {
    const job = await this.findRow(principal, expertJobId);
    const checkpoint = await this.prisma.checkpoint.findUnique({
      where: { expertJobId_id: { expertJobId, id: body.checkpointId } },
      select: { id: true },
    });
    if (!checkpoint) throw new NotFoundError(reasons.checkpointNotFound);
    if (!hasQueryOrFiles(body.query, body.files)) throw new BadRequestError(reasons.queryOrFilesRequired);
    const { checkpointId, ...fields } = body;
    return this.#requeue(job, fields, checkpointId);
  }

  async #requeue(job: ExpertJobRow, body: ContinueExpertJobBody, resumeFromCheckpointId: string | null): Promise<ExpertJob> {
    if (!continuableStatuses.includes(job.status)) throw new BadRequestError(reasons.unableToContinue);
    await this.requireProviderKey(job.applicationId, body.model ?? (job.model as Model));
    const row = await this.prisma.$transaction(async (tx) => {
      // Conditional on the status, not read-then-write: of two concurrent continues only one matches.
      const { count } = await tx.expertJob.updateMany({
        where: { id: job.id, status: { in: [...continuableStatuses] } },
        data: {
          status: "queued",
          query: body.query === undefined || body.query === "" ? null : body.query,
          files: fileList(body.files),
          interactiveToolCallResult: body.interactiveToolCallResult ?? null,
          ...(body.model !== undefined && { model: body.model }),
          ...(body.temperature !== undefined && { temperature: body.temperature }),
          ...(body.maxSteps !== undefined && { maxSteps: body.maxSteps }),
          ...(body.maxRetries !== undefined && { maxRetries: body.maxRetries }),
          resumeFromCheckpointId,
          // A continue starts a new run: its retries are counted afresh.
          retryCount: 0,
          // The run's next claim takes a new lease; the last runtime's token no longer fences anything.
          leaseExpiresAt: null,
          leaseToken: null,
          pausedAt: null,
        },
      });
      if (count === 0) throw new BadRequestError(reasons.unableToContinue);
      return tx.expertJob.findUniqueOrThrow({ where: { id: job.id }, include: expertJobInclude });
    });
    this.notifier.expertJobChanged({ expertJobId: job.id, applicationId: job.applicationId, status: "queued" });
    return toExpertJob(row);
  }

  /** queued or paused → canceled; running → canceling (the runtime finishes it); canceling/canceled unchanged. */
  async cancel(principal: Principal, expertJobId: string): Promise<ExpertJob> {
    const job = await this.findRow(principal, expertJobId);
    let changed = false;
    const row = await this.prisma.$transaction(async (tx) => {
      const [locked] = await tx.$queryRaw<Array<{ status: ExpertJobStatus }>>`
        SELECT status FROM expert_job WHERE id = ${job.id} FOR UPDATE`;
      const next = statusAfterCancel(locked!.status);
      if (next === undefined) throw new BadRequestError(reasons.unableToCancel);
      if (next === locked!.status) return tx.expertJob.findUniqueOrThrow({ where: { id: job.id }, include: expertJobInclude });
      const updated = await tx.expertJob.update({
        where: { id: job.id },
        // A canceling job keeps its lease: if its runtime is gone, the sweeper finishes the cancel when it runs out.
        data: { status: next, ...(next === "canceled" && { leaseExpiresAt: null, pausedAt: null }) },
        include: expertJobInclude,
      });
      changed = true;
      return updated;
    });
    if (changed) this.notifier.expertJobChanged({ expertJobId: job.id, applicationId: job.applicationId, status: row.status });
    return toExpertJob(row);
  }
}
