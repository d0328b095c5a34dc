import { register as globalRegistry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, usingPostgres, type TestApp } from "../helpers/app.ts";
import { api, claimJob, eventually, postCheckpoint, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { sample } from "../helpers/metrics.ts";
import { openSse } from "../helpers/sse.ts";

describe("GET /metrics", () => {
  let t: TestApp;
  let tenant: Tenant;
  const scrape = async () => {
    const response = await t.app.inject({ method: "GET", url: "/metrics" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    return response.body;
  };

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("times requests by route pattern, never by raw URL", async () => {
    const job = await startJob(t.app, tenant);
    await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`);
    await api(t.app, tenant.clientKey).get(`/no/such/route/${job.id}`);
    const text = await scrape();
    const labels = { method: "GET", route: "/api/studio/v1/expert_jobs/:expertJobId", status_code: "200" };
    expect(sample(text, "http_request_duration_seconds_count", labels)).toBeGreaterThanOrEqual(1);
    expect(sample(text, "http_request_duration_seconds_count", { route: "unmatched", status_code: "404" })).toBeGreaterThanOrEqual(1);
    expect(text).not.toContain(job.id);
  });

  it("counts open streams, events sent and stream read timings", async () => {
    const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const job = await startJob(t.app, tenant);
    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    const before = sample(await scrape(), "expert_jobs_stream_events_sent_total") ?? 0;
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1 });
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2 });
    await stream.waitFor(2);
    const text = await scrape();
    expect(sample(text, "expert_jobs_open_streams")).toBe(1);
    expect(sample(text, "expert_jobs_stream_events_sent_total")).toBe(before + 2);
    expect(sample(text, "expert_jobs_notification_lag_seconds_count")).toBeGreaterThanOrEqual(1);
    // The start and step 1's change of status were announced after their commits (the checkpoints only once the
    // stream's mark was on the job: src/modules/expert-jobs/watch-marks.ts), in at least one batch and at most one each.
    const sent = sample(text, "expert_jobs_notifications_sent_total", { unit: "notifications" })!;
    const batches = sample(text, "expert_jobs_notifications_sent_total", { unit: "batches" })!;
    expect(sent).toBeGreaterThanOrEqual(2);
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batches).toBeLessThanOrEqual(sent);
    // Nothing was lost here, so the safety re-read had nothing to wake (it may race a notification on its way, rarely).
    expect(sample(text, "expert_jobs_safety_wakes_total", { kind: "feed" })).toBeDefined();
    expect(sample(text, "expert_jobs_stream_read_duration_seconds_count")).toBeGreaterThanOrEqual(2);
    stream.close();
    await eventually(async () => sample(await scrape(), "expert_jobs_open_streams") === 0);
    // A stream's lifetime is not a request duration: its reply is hijacked and never timed.
    expect(await scrape()).not.toContain('route="/api/studio/v1/expert_jobs/:expertJobId/checkpoints/stream"');
  });

  it("shows waiting claims and lease expiries", async () => {
    const idle = await seedTenant(t.app);
    const waiting = claimJob(t.app, idle, 5_000);
    await eventually(async () => sample(await scrape(), "expert_jobs_claims_waiting") === 1);
    const job = await startJob(t.app, idle);
    expect((await waiting).statusCode).toBe(200);
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() - 1000) } });
    const before = sample(await scrape(), "expert_jobs_lease_expiries_total", { outcome: "requeued" }) ?? 0;
    await t.app.runtime.sweep();
    const text = await scrape();
    expect(sample(text, "expert_jobs_claims_waiting")).toBe(0);
    expect(sample(text, "expert_jobs_lease_expiries_total", { outcome: "requeued" })).toBe(before + 1);
  });

  it("reports database pool usage on PostgreSQL and the LISTEN connection", async () => {
    const text = await scrape();
    expect(sample(text, "expert_jobs_notification_listener_up")).toBe(1);
    if (usingPostgres()) {
      expect(sample(text, "expert_jobs_db_pool_connections", { state: "total" })).toBeGreaterThanOrEqual(1);
      expect(sample(text, "expert_jobs_db_pool_waiting")).toBe(0);
    } else {
      expect(sample(text, "expert_jobs_db_pool_connections")).toBeUndefined();
      expect(sample(text, "expert_jobs_db_pool_waiting")).toBeUndefined();
    }
  });

  it("keeps every app's metrics in its own registry", async () => {
    expect(t.app.metrics.registry).not.toBe(globalRegistry);
    expect(globalRegistry.getSingleMetric("expert_jobs_open_streams")).toBeUndefined();
  });
});
