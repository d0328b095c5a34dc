import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, usingPostgres, type TestApp, type TestDatabase } from "../helpers/app.ts";
import { eventually, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { audit, follow, type Follower } from "./helpers/follower.ts";
import { canRunThrowawayCluster, createThrowawayCluster, type ThrowawayCluster } from "./helpers/pg-cluster.ts";
import { jobCheckpoints, runRuntime } from "./helpers/runtime.ts";

const JOBS = 4;
const STREAMS_PER_JOB = 3;
const STEPS = 24;

// CI makes sure initdb is installed and sets REQUIRE_INITDB, so there a missing one fails the Postgres run instead of skipping this test.
if (usingPostgres() && !canRunThrowawayCluster() && process.env.REQUIRE_INITDB) {
  throw new Error(
    "REQUIRE_INITDB is set but no throwaway cluster can be made (initdb under /usr/lib/postgresql/*/bin, and runuser when root)",
  );
}

const streamUrl = (base: string, jobId: string) => `${base}/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;

/**
 * The database restarts under load: a private cluster (never the shared server) is stopped cleanly,
 * then crashed (`immediate`), while streams are open and runtimes post checkpoints, retrying what fails.
 * Streams stay open through the outage and catch up from the database (SPEC §8: the database is the log);
 * a second instance whose retry window is zero shows the other path: `event: error`, then the client
 * resumes with Last-Event-ID. Either way every stream ends with every checkpoint once, in order.
 */
describe.skipIf(!usingPostgres() || !canRunThrowawayCluster())(
  "PostgreSQL restarts mid-stream and mid-ingest (a throwaway cluster; Postgres only: PGlite is in-process)",
  () => {
    let cluster: ThrowawayCluster;
    let a: TestApp;
    let b: TestApp;
    let tenant: Tenant;
    let baseA: string;
    let baseB: string;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);

    beforeAll(async () => {
      process.on("unhandledRejection", onUnhandled);
      cluster = await createThrowawayCluster();
      const db: TestDatabase = { database: { kind: "postgres", url: cluster.url }, url: cluster.url, drop: async () => {} };
      const common = {
        db,
        captureLogs: "warn",
        rateLimit: false as const,
        notifications: { reconnect: { initialDelayMs: 20, maxDelayMs: 300 }, heartbeatMs: 250 },
      };
      a = await startTestApp(common);
      b = await startTestApp({ ...common, streamReadRetryWindowMs: 0 });
      tenant = await seedTenant(a.app);
      baseA = await a.app.listen({ port: 0, host: "127.0.0.1" });
      baseB = await b.app.listen({ port: 0, host: "127.0.0.1" });
    }, 120_000);

    afterAll(async () => {
      process.off("unhandledRejection", onUnhandled);
      await a?.app.close();
      await b?.app.close();
      await cluster?.destroy();
    });

    const readyz = async (app: TestApp) => (await app.app.inject({ method: "GET", url: "/readyz" })).statusCode;

    const outage = async (mode: "fast" | "immediate", whileDown: () => Promise<void>) => {
      await cluster.stop(mode);
      await eventually(async () => (await readyz(a)) === 503 && (await readyz(b)) === 503, 10_000);
      const down = await a.app.inject({ method: "GET", url: "/readyz" });
      expect(down.json()).toEqual({ code: 503, error: "Service Unavailable", reason: "Database unreachable" });
      await whileDown();
      await cluster.start();
      await eventually(async () => (await readyz(a)) === 200 && (await readyz(b)) === 200, 20_000);
    };

    it("loses and repeats no checkpoint on any stream, answers /readyz 503 while down, and never crashes", async () => {
      const jobs = await Promise.all(Array.from({ length: JOBS }, () => startJob(a.app, tenant)));
      const auth = { authorization: `Bearer ${tenant.clientKey}` };
      const followers: Array<{ follower: Follower; jobId: string; instance: "a" | "b" }> = jobs.flatMap((job) => [
        ...Array.from({ length: STREAMS_PER_JOB }, () => ({
          follower: follow(streamUrl(baseA, job.id), auth),
          jobId: job.id,
          instance: "a" as const,
        })),
        { follower: follow(streamUrl(baseB, job.id), auth), jobId: job.id, instance: "b" as const },
      ]);
      await Promise.all(followers.map(({ follower }) => follower.connected));

      const runs = jobs.map((job) => runRuntime(() => baseA, tenant.runtimeKey, job.id, jobCheckpoints(tenant, STEPS), { pauseMs: 20 }));
      const progressed = (steps: number) => eventually(async () => runs.every((run) => run.acknowledged.length >= steps), 30_000);

      await progressed(6);
      await outage("fast", async () => {
        // Reads while the database is down fail: A's feeds keep their streams and retry, B's give up at once.
        a.app.streamHub.catchUpAll();
        b.app.streamHub.catchUpAll();
        await eventually(async () => followers.some(({ follower, instance }) => instance === "b" && follower.errors.length > 0), 10_000);
        // A new stream cannot start without the database: an ordinary JSON error, never a hang.
        const refused = await fetch(streamUrl(baseA, jobs[0]!.id), { headers: auth });
        expect(refused.status).toBeGreaterThanOrEqual(500);
        expect(await refused.json()).toMatchObject({ code: refused.status });
      });
      await progressed(14);
      await outage("immediate", async () => {
        a.app.streamHub.catchUpAll();
        await new Promise((resolve) => setTimeout(resolve, 500));
      });

      await Promise.all(runs.map((run) => run.done));
      await Promise.all(
        followers.map(({ follower }) => Promise.race([follower.done, new Promise((resolve) => setTimeout(resolve, 30_000))])),
      );

      for (const { follower, jobId, instance } of followers) {
        const label = `${instance} ${jobId}`;
        expect(follower.completed, label).toEqual({ status: "completed", expertJobId: jobId });
        expect(follower.ids, label).toEqual(Array.from({ length: STEPS }, (_, index) => index + 1));
        expect(audit(follower.ids, STEPS), label).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0 });
        // A's streams rode out both outages; B's were ended with `event: error` and resumed.
        if (instance === "a") expect(follower.errors, label).toEqual([]);
      }
      const bErrors = followers.filter(({ instance }) => instance === "b").flatMap(({ follower }) => follower.errors);
      expect(bErrors.length).toBeGreaterThan(0);
      for (const error of bErrors)
        expect(JSON.parse(error)).toMatchObject({ type: "checkpointLoadFailed", message: "Failed to load checkpoints" });
      expect(a.logs.some((line) => line.includes("stream read failed; retrying"))).toBe(true);

      for (const job of jobs) {
        const stored = await a.app.prisma.expertJob.findUniqueOrThrow({ where: { id: job.id } });
        expect(stored).toMatchObject({ status: "completed", lastSeq: STEPS, totalSteps: STEPS, currentStep: STEPS });
        expect(await a.app.prisma.checkpoint.count({ where: { expertJobId: job.id } })).toBe(STEPS);
      }
      const retried = runs.reduce((sum, run) => sum + run.retries, 0);
      expect(retried).toBeGreaterThan(0);
      expect(unhandled).toEqual([]);
      expect([...a.logs, ...b.logs].filter((line) => line.includes('"level":60'))).toEqual([]);
      const failures = new Map<string, number>();
      for (const [cause, count] of runs.flatMap((run) => [...run.failures])) failures.set(cause, (failures.get(cause) ?? 0) + count);
      // While the database is down, a request that needs it answers 503 with Retry-After, never a masked 500.
      expect(failures.get("500")).toBeUndefined();
      expect(failures.get("503")).toBeGreaterThan(0);
      console.info(
        `postgres restart: 2 outages, ${followers.length} streams × ${STEPS} events checked (lost 0, duplicated 0), ` +
          `${retried} retried posts (${JSON.stringify(Object.fromEntries(failures))}), ` +
          `${followers.reduce((sum, { follower }) => sum + follower.reconnects, 0)} stream reconnects`,
      );
    }, 120_000);
  },
);
