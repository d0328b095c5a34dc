import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import { ConflictError, NotFoundError, reasons } from "../../errors.ts";
import type { ExpertJobStatus } from "./expert-jobs.schemas.ts";
import { finishedStatuses, runningStatuses } from "./job-state.ts";

export interface RetentionBatches {
  /** Jobs deleted per transaction (each with its checkpoints and messages): bounds the locks and WAL of one. */
  batchSize: number;
  /** Transactions per sweep: a large backlog is worked off over several sweeps, not in one long run. */
  maxBatches: number;
}

export const defaultRetentionBatches: RetentionBatches = { batchSize: 50, maxBatches: 20 };

export interface DeletedJobs {
  /** Deleted by the sweeper because they finished longer ago than the retention period. */
  retention: number;
  /** Deleted one by one through the admin API (`npm run cli -- job delete`). */
  admin: number;
}

const finishedList = Prisma.raw(finishedStatuses.map((status) => `'${status}'`).join(", "));

/**
 * Deleting jobs, with their checkpoints and messages (the foreign keys cascade): finished jobs past
 * the retention period, in bounded batches, and single jobs on an operator's request.
 */
export class JobRetentionService {
  readonly #deleted: DeletedJobs = { retention: 0, admin: 0 };

  constructor(
    private readonly prisma: PrismaClient,
    private readonly batches: RetentionBatches = defaultRetentionBatches,
  ) {}

  /** Jobs this instance deleted since it started. */
  get deletedTotals(): Readonly<DeletedJobs> {
    return this.#deleted;
  }

  /**
   * Deletes finished jobs whose last change is before `before`, oldest first. Safe on every instance at
   * once: SKIP LOCKED gives each batch rows no other sweeper (or a continue in flight) holds, and a job
   * continued meanwhile no longer matches when its lock is granted.
   */
  async deleteFinishedBefore(before: Date): Promise<number> {
    let deleted = 0;
    for (let batch = 0; batch < this.batches.maxBatches; batch++) {
      const count = await this.prisma.$executeRaw`
        DELETE FROM expert_job WHERE id IN (
          SELECT id FROM expert_job
          WHERE status IN (${finishedList}) AND updated_at < ${before.toISOString()}::timestamptz
          ORDER BY updated_at
          LIMIT ${this.batches.batchSize}
          FOR UPDATE SKIP LOCKED)`;
      deleted += count;
      if (count < this.batches.batchSize) break;
    }
    this.#deleted.retention += deleted;
    return deleted;
  }

  /** Deletes one job that is not running (a running one is canceled first: its runtime still posts to it). */
  async deleteJob(expertJobId: string): Promise<void> {
    await this.prisma.$transaction(async (tx) => {
      const [job] = await tx.$queryRaw<Array<{ status: ExpertJobStatus }>>`
        SELECT status FROM expert_job WHERE id = ${expertJobId} FOR UPDATE`;
      if (!job) throw new NotFoundError(reasons.expertJobNotFound);
      if (runningStatuses.has(job.status)) {
        throw new ConflictError(`Cannot delete a running job (status ${job.status}); cancel it first`);
      }
      await tx.expertJob.delete({ where: { id: expertJobId } });
    });
    this.#deleted.admin += 1;
  }
}
