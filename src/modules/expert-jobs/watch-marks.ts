import type { Sql } from "../../db/sql.ts";
import type { ExpertJobStatus } from "./expert-jobs.schemas.ts";

/**
 * The statuses in which a checkpoint can leave the job's status as it is. Any other checkpoint changes the
 * status, and a status change is always announced (it wakes the job's streams too), so only jobs in these
 * statuses need a mark. Queued jobs are never marked: a mark's row lock would make a claim (SKIP LOCKED)
 * pass the job by.
 */
export const markedStatuses: readonly ExpertJobStatus[] = ["processing", "requestDelegateResult"];

/** Ids per statement: a renewal of many streamed jobs runs in bounded statements. */
const CHUNK = 1_000;

// Statements' parts ($2: the lease in ms; $3: the statuses as text[], since PGlite cannot send an array of
// an enum type). Rows are locked in id order, so two instances marking overlapping jobs at once never
// deadlock; a mark with more than half its lease left is not rewritten.
const DUE = "(watched_until IS NULL OR watched_until < now() + $2::int * interval '0.5 millisecond')";
const LEASE_END = "now() + $2::int * interval '1 millisecond'";

/**
 * Which jobs someone streams, kept on the job rows (`expert_job.watched_until`), so that a checkpoint is
 * announced only when someone may be waiting for it: most jobs run with nobody watching, and with
 * PostgreSQL every notification costs a transaction (issue 14, P5). A stream marks its job before it
 * reads, and a job-change stream marks its application's jobs; the checkpoint's write reads the mark on
 * the row it updates. Mark and write both take that row's lock, so a checkpoint either commits before the
 * mark, and the read that follows the mark finds it, or sees the mark and is announced. Marks are leases:
 * the instance holding the streams renews them at its safety re-reads, and a mark nobody renews lapses.
 */
export class WatchMarks {
  /** Jobs to mark on the next turn of the event loop (streams opening together share one statement). */
  #batch: { jobIds: Set<string>; marked: Promise<Set<string>> } | undefined;

  constructor(
    private readonly sql: Sql,
    /** How long a mark holds; renewals rewrite it once half of it is gone. */
    readonly leaseMs: number,
  ) {}

  /** Marks a job; resolves once the mark is committed, to whether the job is in a status that takes one. */
  async watchJob(expertJobId: string): Promise<boolean> {
    if (!this.#batch) {
      const jobIds = new Set<string>();
      const marked = new Promise((resolve) => setImmediate(resolve)).then(() => {
        this.#batch = undefined;
        return this.watchJobs([...jobIds]);
      });
      this.#batch = { jobIds, marked };
    }
    this.#batch.jobIds.add(expertJobId);
    return (await this.#batch.marked).has(expertJobId);
  }

  /** Marks (or renews) jobs' marks; returns the jobs in a status that takes one, marked fresh or not. */
  async watchJobs(expertJobIds: readonly string[]): Promise<Set<string>> {
    const marked = new Set<string>();
    for (let start = 0; start < expertJobIds.length; start += CHUNK) {
      const rows = await this.sql.query<{ id: string }>(
        "watch_jobs",
        `WITH candidates AS (
          SELECT id, watched_until FROM expert_job WHERE id = ANY($1::text[]) AND status = ANY($3::text[]::expert_job_status[])
        ), locked AS (
          SELECT id FROM expert_job
          WHERE id IN (SELECT id FROM candidates WHERE ${DUE}) AND status = ANY($3::text[]::expert_job_status[])
          ORDER BY id FOR NO KEY UPDATE
        ), renewed AS (
          UPDATE expert_job SET watched_until = ${LEASE_END} FROM locked WHERE expert_job.id = locked.id
        )
        SELECT id FROM candidates`,
        [expertJobIds.slice(start, start + CHUNK), this.leaseMs, markedStatuses],
      );
      for (const row of rows) marked.add(row.id);
    }
    return marked;
  }

  /** Marks (or renews) every job of the applications in a status that takes a mark. */
  async watchApplications(applicationIds: readonly string[]): Promise<void> {
    if (applicationIds.length === 0) return;
    await this.sql.query(
      "watch_applications",
      `WITH locked AS (
        SELECT id FROM expert_job
        WHERE application_id = ANY($1::text[]) AND status = ANY($3::text[]::expert_job_status[]) AND ${DUE}
          ORDER BY id FOR NO KEY UPDATE
      )
      UPDATE expert_job SET watched_until = ${LEASE_END} FROM locked WHERE expert_job.id = locked.id`,
      [applicationIds, this.leaseMs, markedStatuses],
    );
  }
}
