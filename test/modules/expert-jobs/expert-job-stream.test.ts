import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { channels } from "../../../src/db/channels.ts";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, eventually, postCheckpoint, seedSiblingApplication, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { openSse, type SseStream } from "../../helpers/sse.ts";

const jobsOf = (stream: SseStream) => stream.events.map((event) => JSON.parse(event.data));

describe("GET /expert_jobs/stream: the application's job changes", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  const streams: SseStream[] = [];
  const open = async (key: string, viaQuery = false) => {
    const url = `${base}/api/studio/v1/expert_jobs/stream${viaQuery ? `?access_token=${encodeURIComponent(key)}` : ""}`;
    const stream = await openSse(url, viaQuery ? {} : { authorization: `Bearer ${key}` });
    streams.push(stream);
    return stream;
  };

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 200 } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    for (const stream of streams) stream.close();
    await t.close();
  });

  it("sends each job of the application as GET answers it when it starts, moves a step, changes status; never another application's", async () => {
    const sibling = await seedSiblingApplication(t.app, tenant);
    const stream = await open(tenant.clientKey);
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const siblingStream = await open(sibling.clientKey, true);
    expect(siblingStream.status).toBe(200);
    await startJob(t.app, sibling);

    const job = await startJob(t.app, tenant, { maxSteps: 7 });
    const [started] = await stream.waitFor(1);
    expect(started!.event).toBe("message");
    expect(started!.id).toBeUndefined();
    const get = async () => (await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob;
    expect(JSON.parse(started!.data)).toEqual(await get());

    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init", totalTokens: 120 });
    await stream.waitFor(2);
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2, totalTokens: 450 });
    const moved = await eventuallyJob(stream, (candidate) => candidate.currentStep === 2);
    expect(moved).toMatchObject({ id: job.id, status: "processing", totalSteps: 2, usage: { totalTokens: 450 } });

    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 3, status: "completed" });
    const completed = await eventuallyJob(stream, (candidate) => candidate.status === "completed");
    expect(completed).toEqual(await get());

    expect(jobsOf(stream).every((changed) => changed.id === job.id && changed.applicationId === tenant.applicationId)).toBe(true);
    await siblingStream.waitFor(1);
    expect(jobsOf(siblingStream).map((changed) => changed.applicationId)).toEqual([sibling.applicationId]);
    // Idle streams get `: ping` comments.
    await eventuallyTrue(() => stream.comments.includes("ping"));
  });

  it("sends a cancel of a queued job (no checkpoint involved)", async () => {
    const stream = await open(tenant.clientKey);
    const job = await startJob(t.app, tenant);
    await stream.waitFor(1);
    const canceled = await api(t.app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
    expect(canceled.statusCode).toBe(200);
    expect(await eventuallyJob(stream, (candidate) => candidate.id === job.id && candidate.status === "canceled")).toMatchObject({
      status: "canceled",
    });
  });

  it("refuses a missing or wrong key in the envelope, and ends the streams of a revoked key", async () => {
    const missing = await fetch(`${base}/api/studio/v1/expert_jobs/stream`);
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
    const wrong = await fetch(`${base}/api/studio/v1/expert_jobs/stream?access_token=ejk_wrong`);
    expect(wrong.status).toBe(401);

    const key = await t.app.admin.createApiKey(tenant.applicationId, "client");
    const stream = await open(key.key);
    expect(t.app.jobChanges.streamsOf(key.id)).toBe(1);
    const revoked = await t.app.inject({
      method: "DELETE",
      url: `/api/admin/v1/api_keys/${key.id}`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(revoked.statusCode).toBe(204);
    await stream.ended;
    expect(t.app.jobChanges.streamsOf(key.id)).toBe(0);
  });

  it("is in the OpenAPI document with its query and events", async () => {
    const document = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json();
    const operation = document.paths["/api/studio/v1/expert_jobs/stream"].get;
    expect(operation.operationId).toBe("getApiStudioV1Expert_jobsStream");
    expect(operation.parameters.map((parameter: { name: string }) => parameter.name)).toEqual(["access_token"]);
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(["200", "401", "429"]));
    expect(Object.keys(operation.responses["200"].content)).toEqual(["text/event-stream"]);
  });
});

describe("GET /expert_jobs/stream: the safety re-read", () => {
  /** A server whose publisher sends the job notifications `send` lets through, re-reading every 150 ms. */
  async function serverSending(send: (channel: string) => boolean) {
    const t = await startTestApp({
      config: { notifySafetyIntervalMs: 150 },
      notifications: { sendFilter: (notification) => send(notification.channel) },
    });
    const tenant = await seedTenant(t.app);
    const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/stream`, { authorization: `Bearer ${tenant.clientKey}` });
    const get = async (id: string) => (await api(t.app, tenant.clientKey).get(`/expert_jobs/${id}`)).json().data.expertJob;
    return { t, tenant, stream, get };
  }

  it("sends the changes whose notifications were never sent (a crash between commit and publish), each state once", async () => {
    const { t, tenant, stream, get } = await serverSending(
      (channel) => channel !== channels.expertJobChanged && channel !== channels.checkpointCreated,
    );
    try {
      const job = await startJob(t.app, tenant, { maxSteps: 7 });
      expect(await eventuallyJob(stream, (candidate) => candidate.id === job.id)).toEqual(await get(job.id));
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1 });
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2, status: "completed" });
      expect(await eventuallyJob(stream, (candidate) => candidate.status === "completed")).toEqual(await get(job.id));
      // Several re-reads later: nothing sent twice.
      await new Promise((resolve) => setTimeout(resolve, 600));
      const texts = stream.events.map((event) => event.data);
      expect(new Set(texts).size).toBe(texts.length);
    } finally {
      stream.close();
      await t.close();
    }
  });

  it("adds nothing to what the notifications brought", async () => {
    const { t, tenant, stream, get } = await serverSending(() => true);
    try {
      const job = await startJob(t.app, tenant, { maxSteps: 7 });
      await eventuallyJob(stream, (candidate) => candidate.id === job.id);
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "completed" });
      const completed = await eventuallyJob(stream, (candidate) => candidate.status === "completed");
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(jobsOf(stream).at(-1)).toEqual(completed);
      expect(completed).toEqual(await get(job.id));
      const texts = stream.events.map((event) => event.data);
      expect(new Set(texts).size).toBe(texts.length);
    } finally {
      stream.close();
      await t.close();
    }
  });
});

async function eventuallyJob(stream: SseStream, check: (job: Record<string, any>) => boolean) {
  return eventually(async () => jobsOf(stream).filter(check).at(-1), 10_000);
}

const eventuallyTrue = (check: () => boolean) => eventually(async () => check(), 10_000);
