import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import type { FastifyBaseLogger } from "fastify";
import { ConflictError, NotFoundError, reasons, UnauthorizedError } from "../../errors.ts";
import type { ExpertJobChangedPayload, Notifier } from "../../db/channels.ts";
import { newId } from "../../lib/ids.ts";
import { providerOf } from "../../lib/models.ts";
import type { Principal } from "../../plugins/auth.ts";
import type { Checkpoint } from "../checkpoints/checkpoints.schemas.ts";
import type { CheckpointsService } from "../checkpoints/checkpoints.service.ts";
import type { ExpertJob, ExpertJobStatus } from "../expert-jobs/expert-jobs.schemas.ts";
import { expertJobInclude, toExpertJob, type ExpertJobRow, type ExpertJobsService } from "../expert-jobs/expert-jobs.service.ts";
import { leasedStatuses, pausedStatuses, statusAfterLeaseExpiry, statusAfterReport } from "../expert-jobs/job-state.ts";
import type { ProviderKeysService } from "../provider-keys/provider-keys.service.ts";
import { ClaimWaiters, StatusWatchers, waitForWake } from "./claim-waiters.ts";
import type { Claim, WatchStatusQuery } from "./runtime.schemas.ts";

export interface RuntimeOptions {
  /** How long a claimed job stays with its runtime without a checkpoint or a `processing` report. */
  leaseMs: number;
  /** How long a paused job waits for a continue before it expires. */
  pausedJobTtlMs: number;
}

/** A runtime's status watch of one job (`GET …/status`). */
export interface StatusWatch {
  principal: Principal;
  expertJobId: string;
  query: WatchStatusQuery;
  /** The `Perstack-Lease-Token` sent, if any. */
  leaseToken: string | undefined;
}

export interface SweepResult {
  requeued: number;
  failed: number;
  canceled: number;
  expired: number;
}

type Tx = Prisma.TransactionClient;

// Rows changed per sweep transaction: bounds how long the sweeper holds row locks.
const SWEEP_BATCH = 100;

// The status lists are constants of this module, never input, so they are inlined into the SQL.
const statusList = (statuses: Iterable<ExpertJobStatus>) => Prisma.raw([...statuses].map((status) => `'${status}'`).join(", "));

/** The runtime side of a job: claims with leases, status reports, and taking back jobs whose runtime went silent. */
export class RuntimeService {
  readonly #waiters = new ClaimWaiters();
  readonly #watchers = new StatusWatchers();
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #swept: SweepResult = { requeued: 0, failed: 0, canceled: 0, expired: 0 };
  #closed = false;
  /** Applications whose waiting claims the periodic safety re-read woke since start (a queued job's notification lost, or on its way). */
  safetyWakes = 0;

  constructor(
    private readonly prisma: PrismaClient,
    private readonly expertJobs: ExpertJobsService,
    private readonly checkpoints: CheckpointsService,
    private readonly providerKeys: ProviderKeysService,
    private readonly log: FastifyBaseLogger,
    private readonly notifier: Notifier,
    private readonly options: RuntimeOptions,
  ) {}

  /** Claims currently long-polling on this instance. */
  get waitingClaims(): number {
    return this.#waiters.size;
  }

  /** Status watches currently long-polling on this instance. */
  get watchingStatuses(): number {
    return this.#watchers.size;
  }

  /** Jobs this instance's sweeps changed since start (lease expiries by outcome, and expired paused jobs). */
  get sweptTotals(): Readonly<SweepResult> {
    return this.#swept;
  }

  /**
   * Claims the oldest queued job of the principal's application, waiting up to `waitMs` for one to be
   * queued; undefined when none came, the server is closing or `signal` aborted (the client left).
   */
  claim(principal: Principal, waitMs: number, signal: AbortSignal): Promise<Claim | undefined> {
    return this.#tracked(this.#claim(principal, waitMs, signal));
  }

  /** A long poll in progress: `close` waits for it, so the database closes after. */
  #tracked<T>(waiting: Promise<T>): Promise<T> {
    this.#inFlight.add(waiting);
    void waiting.finally(() => this.#inFlight.delete(waiting)).catch(() => {});
    return waiting;
  }

  async #claim(principal: Principal, waitMs: number, signal: AbortSignal): Promise<Claim | undefined> {
    const deadline = Date.now() + waitMs;
    // Registered before the first attempt: a job queued between an empty attempt and the wait still wakes it.
    const waiter = this.#waiters.add(principal.applicationId, principal.apiKeyId);
    try {
      for (;;) {
        waiter.woken = false;
        const claim = await this.#claimOnce(principal);
        if (claim) return claim;
        const remaining = deadline - Date.now();
        if (remaining <= 0 || this.#closed || signal.aborted) return undefined;
        await this.#waiters.wait(waiter, remaining, signal);
        if (this.#closed || signal.aborted) return undefined;
      }
    } finally {
      this.#waiters.remove(waiter);
    }
  }

  /**
   * One attempt, in one transaction: the key is still active, the oldest queued job is taken and its
   * provider key decrypted, or nothing happens. A key that cannot be decrypted rolls the claim back (the
   * job stays queued) instead of leaving a `processing` job no runtime has.
   */
  async #claimOnce(principal: Principal): Promise<Claim | undefined> {
    const { applicationId } = principal;
    for (;;) {
      const claimed = await this.prisma.$transaction(async (tx) => {
        // FOR SHARE: a revocation (an UPDATE of the row) waits for a claim in progress to commit, and a claim
        // waits for a revocation in progress, then sees it: a revoked key never gets a job or its secret.
        const [active] = await tx.$queryRaw<Array<{ id: string }>>`
          SELECT id FROM api_key WHERE id = ${principal.apiKeyId} AND revoked_at IS NULL FOR SHARE`;
        if (!active) throw new UnauthorizedError();
        // SKIP LOCKED: concurrent claimers (on any instance) each take a different job, or none.
        const [next] = await tx.$queryRaw<Array<{ id: string; model: string }>>`
          SELECT id, model FROM expert_job
          WHERE application_id = ${applicationId} AND status = 'queued'
          ORDER BY created_at, id
          LIMIT 1
          FOR UPDATE SKIP LOCKED`;
        if (!next) return undefined;
        const provider = providerOf(next.model);
        const key = await this.providerKeys.reveal(applicationId, provider, tx);
        // The key was deleted after the job was queued. Failing the job (a client can continue it once a key
        // is back) beats handing it to a runtime that cannot call its model, or re-claiming it forever.
        const status = key === undefined ? "failed" : "processing";
        const job = await tx.expertJob.update({
          where: { id: next.id },
          data:
            key === undefined
              ? { status, leaseExpiresAt: null }
              : { status, leaseExpiresAt: new Date(Date.now() + this.options.leaseMs), leaseToken: newId(), pausedAt: null },
          include: expertJobInclude,
        });
        return { job, provider, key };
      });
      if (!claimed) return undefined;
      const { job, provider, key } = claimed;
      this.notifier.expertJobChanged({ expertJobId: job.id, applicationId, status: job.status });
      if (key === undefined) {
        this.log.warn({ expertJobId: job.id, provider }, "claimed job failed: its provider API key is gone");
        continue;
      }
      const checkpoint = await this.#checkpointToResume(job);
      return {
        expertJob: toExpertJob(job),
        ...(checkpoint && { checkpoint }),
        leaseExpiresAt: job.leaseExpiresAt!.toISOString(),
        leaseToken: job.leaseToken!,
        providerKey: { provider, key },
      };
    }
  }

  async #checkpointToResume(job: ExpertJobRow): Promise<Checkpoint | undefined> {
    const row = job.resumeFromCheckpointId
      ? await this.prisma.checkpoint.findUnique({ where: { expertJobId_id: { expertJobId: job.id, id: job.resumeFromCheckpointId } } })
      : await this.prisma.checkpoint.findFirst({ where: { expertJobId: job.id }, orderBy: { seq: "desc" } });
    if (!row) return undefined;
    const [checkpoint] = await this.checkpoints.toCheckpoints(job.id, [row], {});
    return checkpoint;
  }

  /**
   * The job's status as soon as it is not `query.while` (at once without it), waiting up to `query.waitMs` for
   * it to change; the status then, when it did not. With a lease token, 409 once the lease is not the job's
   * current one. Woken by the job's change notifications from any instance, so a cancel reaches a runtime
   * as fast as the NOTIFY does.
   */
  watchStatus(watch: StatusWatch, signal: AbortSignal): Promise<ExpertJobStatus> {
    return this.#tracked(this.#watchStatus(watch, signal));
  }

  async #watchStatus({ principal, expertJobId, query, leaseToken }: StatusWatch, signal: AbortSignal): Promise<ExpertJobStatus> {
    const deadline = Date.now() + query.waitMs;
    // Registered before the first look: a change between the look and the wait still wakes it.
    const watcher = this.#watchers.add(expertJobId);
    try {
      for (;;) {
        watcher.woken = false;
        const job = await this.prisma.expertJob.findFirst({
          where: { id: expertJobId, applicationId: principal.applicationId },
          select: { status: true, leaseToken: true },
        });
        if (!job) throw new NotFoundError(reasons.expertJobNotFound);
        if (leaseToken !== undefined && job.leaseToken !== leaseToken) throw new ConflictError(reasons.leaseNotCurrent);
        const remaining = deadline - Date.now();
        if (job.status !== query.while || remaining <= 0 || this.#closed || signal.aborted) return job.status;
        await waitForWake(watcher, remaining, signal);
      }
    } finally {
      this.#watchers.remove(expertJobId, watcher);
    }
  }

  /** A job changed somewhere (any instance): waiting claims of its application try again when it was queued. */
  onJobChanged(payload: ExpertJobChangedPayload): void {
    if (payload.status === "queued") this.#waiters.wake(payload.applicationId);
    this.#watchers.wake(payload.expertJobId);
  }

  /** A key was revoked (on any instance): its waiting claims look again, and get 401. */
  onApiKeyRevoked(apiKeyId: string): void {
    this.#waiters.wakeKey(apiKeyId);
  }

  /** After notifications may have been missed (LISTEN or NATS reconnect), every waiting claim looks again. */
  wakeAll(): void {
    this.#waiters.wakeAll();
    this.#watchers.wakeAll();
  }

  /** The API keys of the claims waiting here (for the safety re-read's revocation check). */
  get waitingKeys(): string[] {
    return this.#waiters.keys;
  }

  /**
   * The periodic safety re-read: one query finds the applications with waiting claims that have a queued
   * job (its notification was lost, or is still on its way), and only their claims look again.
   */
  async recheck(): Promise<void> {
    const applications = this.#waiters.applications;
    if (applications.length === 0) return;
    const queued = await this.prisma.expertJob.findMany({
      where: { applicationId: { in: applications }, status: "queued" },
      distinct: ["applicationId"],
      select: { applicationId: true },
    });
    for (const { applicationId } of queued) {
      this.safetyWakes++;
      this.#waiters.wake(applicationId);
    }
  }

  /** Ends waiting claims (they answer 204) and waits for claims in flight, so the database can close after. */
  async close(): Promise<void> {
    this.#closed = true;
    this.wakeAll();
    await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * The runtime reports a status (`processing` doubles as the heartbeat that renews the lease). With a lease
   * token, only while it is the job's current lease.
   */
  async reportStatus(principal: Principal, expertJobId: string, reported: ExpertJobStatus, leaseToken?: string): Promise<ExpertJob> {
    const job = await this.expertJobs.findRow(principal, expertJobId);
    let changed = false;
    const row = await this.prisma.$transaction(async (tx) => {
      const [locked] = await tx.$queryRaw<Array<{ status: ExpertJobStatus; lease_token: string | null }>>`
        SELECT status, lease_token FROM expert_job WHERE id = ${job.id} FOR UPDATE`;
      if (!locked) throw new NotFoundError(reasons.expertJobNotFound);
      if (leaseToken !== undefined && locked.lease_token !== leaseToken) throw new ConflictError(reasons.leaseNotCurrent);
      const current = locked.status;
      const next = statusAfterReport(current, reported);
      if (next === undefined) throw new ConflictError(`Cannot change status from ${current} to ${reported}`);
      const leased = leasedStatuses.includes(next);
      if (next === current && !leased) return tx.expertJob.findUniqueOrThrow({ where: { id: job.id }, include: expertJobInclude });
      const now = Date.now();
      const updated = await tx.expertJob.update({
        where: { id: job.id },
        data: {
          status: next,
          leaseExpiresAt: leased ? new Date(now + this.options.leaseMs) : null,
          ...(next !== current && { pausedAt: pausedStatuses.has(next) ? new Date(now) : null }),
        },
        include: expertJobInclude,
      });
      changed = next !== current;
      return updated;
    });
    if (changed) this.notifier.expertJobChanged({ expertJobId: job.id, applicationId: job.applicationId, status: row.status });
    return toExpertJob(row);
  }

  /**
   * Takes back leased jobs whose lease ran out (requeued, counted against maxRetries, then failed; a
   * canceling job becomes canceled) and expires paused jobs older than the TTL. Safe to run on every
   * instance at once: rows are taken with SKIP LOCKED, so each is changed by one sweeper only.
   */
  async sweep(now: Date = new Date()): Promise<SweepResult> {
    const result: SweepResult = { requeued: 0, failed: 0, canceled: 0, expired: 0 };
    // Each batch's notifications go out once its transaction committed.
    const afterCommit = async (batch: (tx: Tx, changes: ExpertJobChangedPayload[]) => Promise<number>) => {
      const changes: ExpertJobChangedPayload[] = [];
      const changed = await this.prisma.$transaction((tx) => batch(tx, changes));
      for (const change of changes) this.notifier.expertJobChanged(change);
      return changed;
    };
    for (;;) {
      const changed = await afterCommit((tx, changes) => this.#takeBackExpiredLeases(tx, now, result, changes));
      if (changed < SWEEP_BATCH) break;
    }
    const pausedBefore = new Date(now.getTime() - this.options.pausedJobTtlMs);
    for (;;) {
      const changed = await afterCommit((tx, changes) => this.#expirePausedJobs(tx, pausedBefore, result, changes));
      if (changed < SWEEP_BATCH) break;
    }
    for (const outcome of Object.keys(result) as Array<keyof SweepResult>) this.#swept[outcome] += result[outcome];
    return result;
  }

  async #takeBackExpiredLeases(tx: Tx, now: Date, result: SweepResult, changes: ExpertJobChangedPayload[]): Promise<number> {
    const rows = await tx.$queryRaw<
      Array<{ id: string; application_id: string; status: ExpertJobStatus; retry_count: number; max_retries: number }>
    >`
      SELECT id, application_id, status, retry_count, max_retries FROM expert_job
      WHERE status IN (${statusList(leasedStatuses)}) AND lease_expires_at < ${now.toISOString()}::timestamptz
      ORDER BY lease_expires_at
      LIMIT ${SWEEP_BATCH}
      FOR UPDATE SKIP LOCKED`;
    for (const row of rows) {
      const status = statusAfterLeaseExpiry(row.status, row.retry_count, row.max_retries);
      await tx.expertJob.update({
        where: { id: row.id },
        data: { status, leaseExpiresAt: null, leaseToken: null, ...(row.status !== "canceling" && { retryCount: row.retry_count + 1 }) },
      });
      changes.push({ expertJobId: row.id, applicationId: row.application_id, status });
      if (status === "queued") result.requeued++;
      else if (status === "failed") result.failed++;
      else result.canceled++;
    }
    return rows.length;
  }

  async #expirePausedJobs(tx: Tx, pausedBefore: Date, result: SweepResult, changes: ExpertJobChangedPayload[]): Promise<number> {
    const rows = await tx.$queryRaw<Array<{ id: string; application_id: string }>>`
      SELECT id, application_id FROM expert_job
      WHERE status IN (${statusList(pausedStatuses)}) AND paused_at < ${pausedBefore.toISOString()}::timestamptz
      ORDER BY paused_at
      LIMIT ${SWEEP_BATCH}
      FOR UPDATE SKIP LOCKED`;
    if (rows.length === 0) return 0;
    await tx.expertJob.updateMany({ where: { id: { in: rows.map((row) => row.id) } }, data: { status: "expired" } });
    for (const row of rows) changes.push({ expertJobId: row.id, applicationId: row.application_id, status: "expired" });
    result.expired += rows.length;
    return rows.length;
  }
}
