import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createClient,
  ExpertJobInterruptedError,
  ExpertJobsApiError,
  ExpertJobsStreamError,
  type ExpertJobsClient,
  type JobChange,
  type PostCheckpointBody,
  type StreamEvent,
} from "@expert-jobs/client";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { createRestartableDatabase } from "../helpers/restartable-database.ts";
import { registerTraceExperts, traceLines } from "../helpers/corpus.ts";
import { askUserToolCall, checkpointBody, eventually, seedTenant, type CheckpointBodyOptions, type Tenant } from "../helpers/fixtures.ts";

const body = (tenant: Tenant, options: CheckpointBodyOptions = {}) => checkpointBody(tenant, options) as PostCheckpointBody;

async function collect(stream: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

const rejection = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
};

describe("@expert-jobs/client against the server", () => {
  let t: TestApp;
  let tenant: Tenant;
  let client: ExpertJobsClient;
  let runtime: ExpertJobsClient;
  let baseUrl: string;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    baseUrl = await t.app.listen({ port: 0, host: "127.0.0.1" });
    client = createClient({ baseUrl, apiKey: tenant.clientKey });
    runtime = createClient({ baseUrl: `${baseUrl}/`, apiKey: tenant.runtimeKey });
  });
  afterAll(async () => t.close());

  it("calls every endpoint: start, get, list, claim, report, post, checkpoints, continue, resume_from, cancel", async () => {
    const started = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Do it", maxSteps: 5 });
    expect(started).toMatchObject({ type: "expertJob", status: "queued", maxSteps: 5 });
    expect(await client.expertJobs.get(started.id)).toEqual(started);
    const page = await client.expertJobs.list({ status: "queued", take: 100, order: "desc" });
    expect(page.meta).toMatchObject({ take: 100, skip: 0 });
    expect(page.expertJobs.map((job) => job.id)).toContain(started.id);

    const claim = await runtime.runtime.claim({ waitMs: 0 });
    expect(claim?.expertJob.id).toBe(started.id);
    expect(claim?.providerKey).toEqual({ provider: "anthropic", key: "sk-anthropic-secret" });
    expect(await runtime.runtime.claim()).toBeUndefined();
    expect((await runtime.runtime.reportStatus(started.id, "processing")).status).toBe("processing");

    const first = await runtime.runtime.postCheckpoint(started.id, body(tenant, { stepNumber: 1 }));
    expect(first).toMatchObject({ type: "checkpoint", stepNumber: 1, expertJobId: started.id });
    expect(await client.expertJobs.checkpoints.get(started.id, first.id)).toEqual(first);
    const light = await client.expertJobs.checkpoints.get(started.id, first.id, { exclude: "messages" });
    expect(light.messages).toBeUndefined();
    await runtime.runtime.postCheckpoint(
      started.id,
      body(tenant, { stepNumber: 2, status: "stoppedByInteractiveTool", toolCall: askUserToolCall }),
    );
    const checkpoints = await client.expertJobs.checkpoints.list(started.id, { exclude: "messages" });
    expect(checkpoints.meta).toEqual({ total: 2, take: 10, skip: 0 });
    expect(checkpoints.checkpoints.map((checkpoint) => checkpoint.stepNumber)).toEqual([1, 2]);

    const continued = await client.expertJobs.continue(started.id, { query: "yes", interactiveToolCallResult: true });
    expect(continued).toMatchObject({ status: "queued", query: "yes", interactiveToolCallResult: true });
    await runtime.runtime.claim();
    await runtime.runtime.postCheckpoint(started.id, body(tenant, { stepNumber: 3, status: "completed" }));
    const resumed = await client.expertJobs.resumeFrom(started.id, { checkpointId: first.id, query: "again" });
    expect(resumed).toMatchObject({ status: "queued", query: "again" });
    expect((await client.expertJobs.cancel(started.id)).status).toBe("canceled");

    const events = await collect(client.expertJobs.checkpoints.stream(started.id, { exclude: "messages" }));
    expect(events.map((event) => (event.type === "checkpoint" ? event.id : event.type))).toEqual([1, 2, 3, "complete"]);
    expect(events.at(-1)).toEqual({ type: "complete", status: "canceled", expertJobId: started.id });
  });

  it("throws ExpertJobsApiError carrying the server's {code, error, reason}", async () => {
    const missing = await rejection(client.expertJobs.get("a".repeat(24)));
    expect(missing).toBeInstanceOf(ExpertJobsApiError);
    expect(missing).toMatchObject({ code: 404, error: "Not Found", reason: "Expert job not found", retryable: false });
    expect((missing as ExpertJobsApiError).requestId).toBeTruthy();

    const invalid = (await rejection(client.expertJobs.get("not-an-id"))) as ExpertJobsApiError;
    expect(invalid.code).toBe(422);
    expect(invalid.reason).toEqual([expect.objectContaining({ path: "/expertJobId" })]);

    const forbidden = await rejection(client.runtime.claim());
    expect(forbidden).toMatchObject({ code: 403, error: "Forbidden" });
    const unauthorized = createClient({ baseUrl, apiKey: "nope" });
    expect(await rejection(unauthorized.expertJobs.list())).toMatchObject({ code: 401, reason: "Failed to authenticate" });
    expect(await rejection(client.expertJobs.start({ expertKey: tenant.expert.key }))).toMatchObject({
      code: 400,
      reason: "Query or files are required",
    });
  });

  it("stream: a 4xx before the stream starts is thrown, not retried", async () => {
    const error = await rejection(collect(client.expertJobs.checkpoints.stream("b".repeat(24), { retry: { initialDelayMs: 1 } })));
    expect(error).toMatchObject({ code: 404, reason: "Expert job not found" });
  });

  it("stream: AbortSignal and break both end the connection", async () => {
    const job = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Do it" });
    await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber: 1 }));
    const controller = new AbortController();
    const seen: StreamEvent[] = [];
    const aborted = rejection(
      (async () => {
        for await (const event of client.expertJobs.checkpoints.stream(job.id, { signal: controller.signal })) {
          seen.push(event);
          controller.abort();
        }
      })(),
    );
    expect(await aborted).toMatchObject({ name: "AbortError" });
    expect(seen).toHaveLength(1);

    for await (const event of client.expertJobs.checkpoints.stream(job.id)) {
      expect(event.type).toBe("checkpoint");
      break;
    }
    await eventually(async () => t.app.streamHub.openStreams === 0);
  });

  it("stream: gives up with ExpertJobsStreamError after maxRetries failed reconnects", async () => {
    const unreachable = createClient({ baseUrl: "http://127.0.0.1:9", apiKey: tenant.clientKey });
    const attempts: number[] = [];
    const error = await rejection(
      collect(
        unreachable.expertJobs.checkpoints.stream("c".repeat(24), {
          retry: { initialDelayMs: 1, maxDelayMs: 2, maxRetries: 2 },
          onReconnect: ({ attempt }) => attempts.push(attempt),
        }),
      ),
    );
    expect(error).toBeInstanceOf(ExpertJobsStreamError);
    expect(attempts).toEqual([1, 2]);
  });

  it("types and reads sequence and createdAt: list by sequence, then stream on from the last one listed", async () => {
    const started = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Count", maxSteps: 10 });
    const posted = [];
    for (let step = 1; step <= 4; step++) posted.push(await runtime.runtime.postCheckpoint(started.id, body(tenant, { stepNumber: step })));
    const page = await client.expertJobs.checkpoints.list(started.id, { sort: "sequence", order: "asc", take: 2 });
    const sequences: number[] = page.checkpoints.map((checkpoint) => checkpoint.sequence);
    expect(sequences).toEqual([1, 2]);
    const createdAt: string = page.checkpoints[0]!.createdAt;
    expect(createdAt).toBe(posted[0]!.createdAt);
    await runtime.runtime.postCheckpoint(started.id, body(tenant, { stepNumber: 5, status: "completed" }));
    const rest = await collect(client.expertJobs.checkpoints.stream(started.id, { after: sequences.at(-1)! }));
    expect(rest.flatMap((event) => (event.type === "checkpoint" ? [[event.id, event.checkpoint.sequence]] : []))).toEqual([
      [3, 3],
      [4, 4],
      [5, 5],
    ]);
  });
  it("runtime: sends each claim's lease token (a lost lease is a 409, nothing stored); watch() aborts on a cancel", async () => {
    const owner = await seedTenant(t.app);
    const ownerClient = createClient({ baseUrl, apiKey: owner.clientKey });
    const a = createClient({ baseUrl, apiKey: owner.runtimeKey }).runtime;
    const b = createClient({ baseUrl, apiKey: owner.runtimeKey }).runtime;

    const job = await ownerClient.expertJobs.start({ expertKey: owner.expert.key, query: "Watch me", maxRetries: 3 });
    const claim = await a.claim();
    expect(claim?.expertJob.id).toBe(job.id);
    expect(typeof claim?.leaseToken).toBe("string");
    await a.postCheckpoint(job.id, body(owner, { stepNumber: 1 }));
    await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
    await t.app.runtime.sweep();
    const next = await b.claim();
    expect(next?.expertJob.id).toBe(job.id);
    const refused = await rejection(a.postCheckpoint(job.id, body(owner, { stepNumber: 2 })));
    expect(refused).toBeInstanceOf(ExpertJobsApiError);
    expect(refused).toMatchObject({ code: 409, error: "Conflict" });
    // Explicitly without a token, nothing is checked.
    expect((await a.waitForStatus(job.id, {}, { leaseToken: null })).status).toBe("processing");
    await b.postCheckpoint(job.id, body(owner, { stepNumber: 2 }));
    expect((await ownerClient.expertJobs.checkpoints.list(job.id, { sort: "sequence" })).checkpoints.map((c) => c.stepNumber)).toEqual([
      1, 2,
    ]);

    const watch = b.watch(job.id);
    await eventually(async () => t.app.runtime.watchingStatuses > 0);
    await ownerClient.expertJobs.cancel(job.id);
    if (!watch.signal.aborted) await new Promise((resolve) => watch.signal.addEventListener("abort", resolve, { once: true }));
    expect(watch.signal.reason).toBeInstanceOf(ExpertJobInterruptedError);
    expect((watch.signal.reason as ExpertJobInterruptedError).status).toBe("canceling");
    watch.stop();
    expect((await b.reportStatus(job.id, "canceled")).status).toBe("canceled");
  });
});

/** A server on a database that outlives it, listening over HTTP; `restart()` brings a new one up on the same port. */
async function restartableServer() {
  const database = await createRestartableDatabase();
  let t = await startTestApp({ db: database.db });
  const tenant = await seedTenant(t.app);
  const baseUrl = await t.app.listen({ port: 0, host: "127.0.0.1" });
  const port = Number(new URL(baseUrl).port);
  return {
    tenant,
    client: createClient({ baseUrl, apiKey: tenant.clientKey }),
    runtime: createClient({ baseUrl, apiKey: tenant.runtimeKey }),
    async restart() {
      await t.app.close();
      t = await startTestApp({ db: database.reopen() });
      await t.app.listen({ port, host: "127.0.0.1" });
    },
    async close() {
      await t.app.close();
      await database.drop();
    },
  };
}

describe("@expert-jobs/client stream across a server restart", () => {
  it("reconnects with Last-Event-ID and delivers every checkpoint exactly once", async () => {
    const server = await restartableServer();
    try {
      const { tenant, client, runtime } = server;
      const job = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Do it" });

      const received: StreamEvent[] = [];
      const reconnects: unknown[] = [];
      const consuming = (async () => {
        const stream = client.expertJobs.checkpoints.stream(job.id, {
          exclude: "messages",
          retry: { initialDelayMs: 20, maxDelayMs: 200 },
          onReconnect: ({ error }) => reconnects.push(error),
        });
        for await (const event of stream) received.push(event);
      })();

      const posted: string[] = [];
      for (const stepNumber of [1, 2, 3]) posted.push((await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber }))).id);
      await eventually(async () => received.length === 3);

      await server.restart();
      for (const stepNumber of [4, 5]) posted.push((await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber }))).id);
      await eventually(async () => received.length === 5, 10_000);
      posted.push((await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber: 6, status: "completed" }))).id);
      await consuming;

      expect(reconnects.length).toBeGreaterThanOrEqual(1);
      expect(received.map((event) => (event.type === "checkpoint" ? event.id : event.type))).toEqual([1, 2, 3, 4, 5, 6, "complete"]);
      expect(received.flatMap((event) => (event.type === "checkpoint" ? [event.checkpoint.id] : []))).toEqual(posted);
    } finally {
      await server.close();
    }
  }, 60_000);
});

describe("@expert-jobs/client job changes", () => {
  it("yields connected, then each changed job as GET answers it; across a server restart, connected again and the changes after it", async () => {
    const server = await restartableServer();
    const stop = new AbortController();
    try {
      const { tenant, client, runtime } = server;
      const changes: JobChange[] = [];
      const consuming = (async () => {
        for await (const change of client.expertJobs.changes({ signal: stop.signal, retry: { initialDelayMs: 20, maxDelayMs: 200 } }))
          changes.push(change);
      })().catch((error: unknown) => error);
      await eventually(async () => changes.length === 1);
      expect(changes).toEqual([{ type: "connected" }]);

      const job = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Do it" });
      await eventually(async () => changes.some((change) => change.type === "job" && change.expertJob.id === job.id));
      await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber: 1 }));
      const processing = await eventually(async () =>
        changes.find((change) => change.type === "job" && change.expertJob.status === "processing"),
      );
      expect(processing).toEqual({ type: "job", expertJob: await client.expertJobs.get(job.id) });

      await server.restart();
      await eventually(async () => changes.filter((change) => change.type === "connected").length === 2, 10_000);
      await runtime.runtime.postCheckpoint(job.id, body(tenant, { stepNumber: 2, status: "completed" }));
      const completed = await eventually(async () =>
        changes.find((change) => change.type === "job" && change.expertJob.status === "completed"),
      );
      expect(completed).toEqual({ type: "job", expertJob: await client.expertJobs.get(job.id) });
      // The second `connected` comes before any change after the restart.
      expect(changes.findIndex((change) => change === completed)).toBeGreaterThan(
        changes.map((change) => change.type).lastIndexOf("connected"),
      );

      stop.abort(new Error("done"));
      expect(await consuming).toMatchObject({ message: "done" });
    } finally {
      stop.abort();
      await server.close();
    }
  }, 60_000);

  it("a key the server refuses ends the changes stream with ExpertJobsApiError (401), not endless reconnects", async () => {
    const t = await startTestApp();
    try {
      const baseUrl = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const stranger = createClient({ baseUrl, apiKey: "ejk_not_a_key" });
      const error = await rejection(
        (async () => {
          for await (const change of stranger.expertJobs.changes()) void change;
        })(),
      );
      expect(error).toBeInstanceOf(ExpertJobsApiError);
      expect((error as ExpertJobsApiError).code).toBe(401);
    } finally {
      await t.close();
    }
  });
});

describe("@expert-jobs/client on the real runtime traces", () => {
  let t: TestApp;
  let tenant: Tenant;
  let client: ExpertJobsClient;
  let runtime: ExpertJobsClient;

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 60_000 } });
    tenant = await seedTenant(t.app);
    await registerTraceExperts(t.app, tenant);
    const baseUrl = await t.app.listen({ port: 0, host: "127.0.0.1" });
    client = createClient({ baseUrl, apiKey: tenant.clientKey });
    runtime = createClient({ baseUrl, apiKey: tenant.runtimeKey });
  });
  afterAll(async () => t.close());

  it("posts every line of the long-research trace, then gets, lists and streams it back whole and as a timeline", async () => {
    const lines = traceLines("long-research").map((line) => JSON.parse(line) as PostCheckpointBody);
    const job = await client.expertJobs.start({ expertKey: lines[0]!.checkpoint.expert.key, query: "Research", maxSteps: 100 });
    const posted = [];
    for (const line of lines) posted.push(await runtime.runtime.postCheckpoint(job.id, line));
    expect(posted.map((checkpoint) => checkpoint.messages)).toEqual(lines.map((line) => line.checkpoint.messages));
    expect((await client.expertJobs.get(job.id)).status).toBe("completed");

    const largest = posted[72]!;
    expect(await client.expertJobs.checkpoints.get(job.id, largest.id)).toEqual(largest);
    const light = await client.expertJobs.checkpoints.get(job.id, largest.id, { exclude: ["messages", "toolResult"] });
    expect(light).not.toHaveProperty("messages");
    expect(light).not.toHaveProperty("toolResult");
    expect(light.newMessages).toEqual(largest.newMessages);

    const timeline = await client.expertJobs.checkpoints.list(job.id, {
      take: 100,
      exclude: ["messages", "newMessages", "toolCall", "toolResult", "actionContent"],
    });
    expect(timeline.meta.total).toBe(79);
    expect(timeline.checkpoints.map((checkpoint) => [checkpoint.stepNumber, checkpoint.action.type])).toEqual(
      posted.map((checkpoint) => [checkpoint.stepNumber, checkpoint.action.type]),
    );
    expect(JSON.stringify(timeline.checkpoints).length).toBeLessThan(100_000);

    const streamed = await collect(client.expertJobs.checkpoints.stream(job.id));
    expect(streamed.at(-1)).toEqual({ type: "complete", status: "completed", expertJobId: job.id });
    expect(streamed.slice(0, -1)).toEqual(posted.map((checkpoint, index) => ({ type: "checkpoint", id: index + 1, checkpoint })));
    const resumed = await collect(client.expertJobs.checkpoints.stream(job.id, { after: 70, exclude: "messages" }));
    expect(resumed.slice(0, -1).map((event) => event.type === "checkpoint" && event.checkpoint.id)).toEqual(
      posted.slice(70).map((checkpoint) => checkpoint.id),
    );
  }, 120_000);
});
