import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { audit, follow, type Follower } from "./helpers/follower.ts";
import { jobCheckpoints, runRuntime } from "./helpers/runtime.ts";

const STEPS = 40;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Streams that join a job while its feed is busy reading (from the start, or resuming at any event id,
 * with or without messages), and streams killed and resumed mid-job, all end with exactly the events
 * after where they started, in order. A small soak that runs on both databases; `npm run soak` is the big one.
 */
describe("stream churn while checkpoints are posted", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  beforeAll(async () => {
    t = await startTestApp({ rateLimit: false, config: { sseHeartbeatMs: 50 } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("gives every stream each event after its start exactly once, in order", async () => {
    const job = await startJob(t.app, tenant);
    const url = (query = "") => `${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream${query}`;
    const auth = { authorization: `Bearer ${tenant.clientKey}` };
    const runtime = runRuntime(() => base, tenant.runtimeKey, job.id, jobCheckpoints(tenant, STEPS, { padBytes: 2048 }), { pauseMs: 5 });

    const streams: Array<{ follower: Follower; after: number }> = [];
    for (let index = 0; index < 24; index++) {
      const posted = runtime.acknowledged.length;
      // Some start from the beginning, some resume at an event already sent; half leave messages out.
      const after = index % 3 === 0 ? 0 : Math.floor(posted / 2);
      const query = index % 2 === 0 ? "?exclude=messages" : "";
      streams.push({ follower: follow(url(query), auth, { after: after || undefined, retryMs: 20 }), after });
      await sleep(15);
      if (index % 4 === 3) streams[Math.floor(index / 2)]!.follower.kill();
    }
    await runtime.done;
    await Promise.all(streams.map(({ follower }) => Promise.race([follower.done, sleep(20_000)])));

    let events = 0;
    for (const { follower, after } of streams) {
      expect(follower.completed, `after ${after}`).toEqual({ status: "completed", expertJobId: job.id });
      expect(follower.ids).toEqual(Array.from({ length: STEPS - after }, (_, index) => after + index + 1));
      const { lost, duplicated, outOfOrder } = audit(follower.ids, STEPS);
      expect({ lost: lost - after, duplicated, outOfOrder }).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0 });
      expect(follower.errors).toEqual([]);
      events += follower.ids.length;
    }
    expect(streams.reduce((sum, { follower }) => sum + follower.reconnects, 0)).toBeGreaterThan(0);
    console.info(`stream churn: ${streams.length} streams, ${events} events checked, lost 0, duplicated 0`);
  }, 60_000);
});
