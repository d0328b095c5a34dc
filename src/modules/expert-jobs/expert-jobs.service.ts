import type { Prisma, PrismaClient } from "../../generated/prisma/client.ts";
import { BadRequestError, NotFoundError, reasons } from "../../errors.ts";
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

export const hasQueryOrFiles = (query: string | undefined, files: string | string[] | undefined): boolean =>
  (query !== undefined && query !== "") || fileList(files).length > 0;

export class ExpertJobsService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly experts: ExpertsService,
    private readonly providerKeys: ProviderKeysService,
    private readonly notifier: Notifier,
  ) {}

  async start(principal: Principal, body: StartExpertJobBody): Promise<ExpertJob> {
    if (!hasQueryOrFiles(body.query, body.files)) throw new BadRequestError(reasons.queryOrFilesRequired);
    const expert = await this.experts.resolve(principal.organizationId, body.expertKey);
    if (!expert) throw new BadRequestError(reasons.expertNotFound);
    const model = body.model ?? defaultModel;
    await this.requireProviderKey(principal.applicationId, model);
    const row = await this.prisma.$transaction(async (tx) => {
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
      return created;
    });
    this.notifier.expertJobChanged({ expertJobId: row.id, applicationId: row.applicationId, status: row.status });
    return toExpertJob(row);
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
