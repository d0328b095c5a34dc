import fp from "fastify-plugin";

export interface JobSweeperOptions {
  intervalMs: number;
}

/**
 * Periodically takes back jobs whose runtime went silent and expires paused jobs (RuntimeService.sweep).
 * Every instance runs one; SKIP LOCKED keeps them from changing a job twice. Runs are chained with
 * setTimeout, never overlapping, and the last one finishes before the database closes.
 */
export const jobSweeperPlugin = fp<JobSweeperOptions>(
  async (app, { intervalMs }) => {
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> | undefined;
    let closed = false;

    const schedule = () => {
      timer = setTimeout(() => {
        running = app.runtime
          .sweep()
          .then((result) => {
            if (result.requeued + result.failed + result.canceled + result.expired > 0) app.log.info({ sweep: result }, "jobs swept");
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
  { name: "job-sweeper", dependencies: ["runtime"], fastify: "5.x" },
);
