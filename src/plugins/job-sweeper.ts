import fp from "fastify-plugin";

export interface JobSweeperOptions {
  intervalMs: number;
  /** Finished jobs whose last change is older than this are deleted; undefined: none ever are. */
  jobRetentionMs?: number;
}

/**
 * Periodically takes back jobs whose runtime went silent and expires paused jobs (RuntimeService.sweep),
 * forgets start idempotency keys past their 24 hours, then, with a retention period, deletes finished jobs
 * past it (JobRetentionService).
 * Every instance runs one; SKIP LOCKED keeps them from changing a job twice. Runs are chained with
 * setTimeout, never overlapping, and the last one finishes before the database closes.
 */
export const jobSweeperPlugin = fp<JobSweeperOptions>(
  async (app, { intervalMs, jobRetentionMs }) => {
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> | undefined;
    let closed = false;

    const schedule = () => {
      timer = setTimeout(() => {
        running = app.runtime
          .sweep()
          .then(async (result) => {
            if (result.requeued + result.failed + result.canceled + result.expired > 0) app.log.info({ sweep: result }, "jobs swept");
            await app.expertJobs.deleteExpiredIdempotencyKeys();
            if (jobRetentionMs === undefined) return;
            const deleted = await app.jobRetention.deleteFinishedBefore(new Date(Date.now() - jobRetentionMs));
            if (deleted > 0) app.log.info({ deleted, jobRetentionMs }, "finished jobs past retention deleted");
          })
          .catch((error: unknown) => app.log.error({ err: error }, "job sweep failed"))
          .finally(() => {
            running = undefined;
            if (!closed) schedule();
          });
      }, intervalMs);
      timer.unref();
    };

    app.addHook("onReady", async () => schedule());
    app.addHook("preClose", async () => {
      closed = true;
      clearTimeout(timer);
      await running;
    });
  },
  { name: "job-sweeper", dependencies: ["runtime", "services"], fastify: "5.x" },
);
