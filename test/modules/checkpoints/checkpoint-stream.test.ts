import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, createTestDatabase, startTestApp, usingPostgres, type TestApp, type TestDatabase } from "../../helpers/app.ts";
import { api, checkpointBody, eventually, seedTenant, startJob, userMessage, type Tenant } from "../../helpers/fixtures.ts";
import { backendCases } from "../../helpers/nats.ts";
import { openSse, streamThroughOutage, type SseStream } from "../../helpers/sse.ts";

const streamPath = (jobId: string, query = "") => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream${query}`;

async function postSteps(t: TestApp, tenant: Tenant, jobId: string, steps: number[], extra: Parameters<typeof checkpointBody>[1] = {}) {
  const runtime = api(t.app, tenant.runtimeKey);
  const ids: string[] = [];
  for (const stepNumber of steps) {
    const response = await runtime.post(`/expert_jobs/${jobId}/checkpoints/`, checkpointBody(tenant, { stepNumber, ...extra }));
    expect(response.statusCode, response.body).toBe(200);
    ids.push(response.json().data.checkpoint.id);
  }
  return ids;
}

const messageIds = (stream: SseStream) => stream.events.filter((event) => event.event === "message").map((event) => event.id);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, index) => String(from + index));

describe("GET .../checkpoints/stream", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 100 }, captureLogs: true });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  const open = (jobId: string, query = "", headers: Record<string, string> = {}) =>
    openSse(base + streamPath(jobId, query), { authorization: `Bearer ${tenant.clientKey}`, ...headers });

  it("replays stored checkpoints, sends new ones live, then completes and ends", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1, 2]);
    const stream = await open(job.id);
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(stream.headers.get("cache-control")).toBe("no-cache, no-transform");
    expect(stream.headers.get("x-accel-buffering")).toBe("no");
    expect(stream.headers.get("content-encoding")).toBeNull();
    expect(stream.headers.get("x-request-id")).toBeTruthy();
    await stream.waitFor(2);
    const [finalId] = await postSteps(t, tenant, job.id, [3], { status: "completed", toolCall: undefined });
    await stream.ended;
    expect(stream.events.map((event) => [event.id, event.event])).toEqual([
      ["1", "message"],
      ["2", "message"],
      ["3", "message"],
      [undefined, "complete"],
    ]);
    expect(JSON.parse(stream.events[3]!.data)).toEqual({ status: "completed", expertJobId: job.id });
    const got = await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}/checkpoints/${finalId}`);
    // The event's data is, byte for byte, what GET returns.
    expect(stream.events[2]!.data).toBe(JSON.stringify(got.json().data.checkpoint));
  });

  it("writes every event in one chunk as id, event, one-line data and a blank line", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1, 2, 3]);
    await postSteps(t, tenant, job.id, [4], {
      status: "stoppedByInteractiveTool",
      toolCall: { id: "c", skillName: "ui", toolName: "ask", args: {} },
    });
    const chunks: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const request = httpRequest(base + streamPath(job.id), { headers: { authorization: `Bearer ${tenant.clientKey}` } }, (response) => {
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => chunks.push(chunk));
        response.on("end", resolve);
      });
      request.on("error", reject);
      request.end();
    });
    const text = chunks.join("");
    for (const chunk of chunks) expect(chunk.endsWith("\n\n")).toBe(true);
    // This suite pings every 100 ms; heartbeats may fall between events.
    const blocks = text.split("\n\n").filter((block) => block !== "" && block !== ": ping");
    expect(blocks).toHaveLength(5);
    blocks.slice(0, 4).forEach((block, index) => {
      const lines = block.split("\n");
      expect(lines).toHaveLength(3);
      expect(lines[0]).toBe(`id: ${index + 1}`);
      expect(lines[1]).toBe("event: message");
      expect(lines[2]).toMatch(/^data: \{.*\}$/);
    });
    expect(blocks[4]).toBe(`event: complete\ndata: ${JSON.stringify({ status: "requestInteractiveToolResult", expertJobId: job.id })}`);
  });

  it("resumes after Last-Event-ID, after ?after=, and prefers the header when both are sent", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1, 2, 3, 4]);
    const byHeader = await open(job.id, "", { "last-event-id": "2" });
    const byQuery = await open(job.id, "?after=3");
    const both = await open(job.id, "?after=0", { "last-event-id": "3" });
    await Promise.all([byHeader.waitFor(2), byQuery.waitFor(1), both.waitFor(1)]);
    await postSteps(t, tenant, job.id, [5]);
    await Promise.all([byHeader.waitFor(3), byQuery.waitFor(2), both.waitFor(2)]);
    expect(messageIds(byHeader)).toEqual(["3", "4", "5"]);
    expect(messageIds(byQuery)).toEqual(["4", "5"]);
    expect(messageIds(both)).toEqual(["4", "5"]);
    [byHeader, byQuery, both].forEach((stream) => stream.close());
  });

  it("replays a stopped job, sends complete and closes", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1]);
    await postSteps(t, tenant, job.id, [2], { status: "stoppedByError", toolCall: undefined });
    const stream = await open(job.id);
    await stream.ended;
    expect(stream.events.map((event) => event.event)).toEqual(["message", "message", "complete"]);
    expect(JSON.parse(stream.events[2]!.data)).toEqual({ status: "failed", expertJobId: job.id });
  });

  it("resuming a stopped job after its last event only sends complete", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1], { status: "completed", toolCall: undefined });
    const stream = await open(job.id, "", { "last-event-id": "1" });
    await stream.ended;
    expect(stream.events.map((event) => event.event)).toEqual(["complete"]);
  });

  it("delivers 40 checkpoints posted back to back to 20 streams, each exactly once and in order", async () => {
    const job = await startJob(t.app, tenant);
    const streams = await Promise.all(Array.from({ length: 20 }, () => open(job.id)));
    await postSteps(t, tenant, job.id, range(1, 40).map(Number));
    await Promise.all(streams.map((stream) => stream.waitFor(40, 20_000)));
    for (const stream of streams) {
      expect(messageIds(stream)).toEqual(range(1, 40));
      stream.close();
    }
  });

  it("sends : ping comments on an idle stream", async () => {
    const job = await startJob(t.app, tenant);
    const stream = await open(job.id);
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(stream.comments.filter((comment) => comment === "ping").length).toBeGreaterThanOrEqual(2);
    stream.close();
  });

  it("leaves out messages and inputMessages with exclude=messages", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1], { inputMessages: [userMessage("in")] });
    const full = await open(job.id);
    const light = await open(job.id, "?exclude=messages");
    await Promise.all([full.waitFor(1), light.waitFor(1)]);
    const [fullCheckpoint, lightCheckpoint] = [JSON.parse(full.events[0]!.data), JSON.parse(light.events[0]!.data)];
    expect(fullCheckpoint.messages.length).toBeGreaterThan(0);
    expect(fullCheckpoint.inputMessages).toHaveLength(1);
    expect(lightCheckpoint).not.toHaveProperty("messages");
    expect(lightCheckpoint).not.toHaveProperty("inputMessages");
    expect(lightCheckpoint.newMessages).toEqual(fullCheckpoint.newMessages);
    full.close();
    light.close();
  });

  it("accepts ?access_token= for EventSource and keeps the token out of the logs", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1]);
    const stream = await openSse(base + streamPath(job.id, `?access_token=${encodeURIComponent(tenant.clientKey)}`));
    expect(stream.status).toBe(200);
    await stream.waitFor(1);
    stream.close();
    // The secret is base64url and may itself contain "_", so cut after the fixed-length prefix.
    const secret = tenant.clientKey.slice("ejk_".length + 24 + 1);
    expect(secret).toHaveLength(43);
    expect(t.logs.some((line) => line.includes("access_token=[REDACTED]"))).toBe(true);
    expect(t.logs.filter((line) => line.includes(secret))).toEqual([]);
  });

  it("ends the streams of a key when it is revoked, and its reconnect gets 401; other keys' streams go on", async () => {
    const job = await startJob(t.app, tenant);
    await postSteps(t, tenant, job.id, [1]);
    const doomedKey = await t.app.admin.createApiKey(tenant.applicationId, "client");
    const doomed = await openSse(base + streamPath(job.id), { authorization: `Bearer ${doomedKey.key}` });
    const survivor = await open(job.id);
    await Promise.all([doomed.waitFor(1), survivor.waitFor(1)]);

    const revoked = await fetch(`${base}/api/admin/v1/api_keys/${doomedKey.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(revoked.status).toBe(204);
    await doomed.ended;
    expect(doomed.events.map((event) => event.event)).toEqual(["message"]);

    const reconnect = await fetch(base + streamPath(job.id), {
      headers: { authorization: `Bearer ${doomedKey.key}`, "last-event-id": "1" },
    });
    expect(reconnect.status).toBe(401);
    expect(await reconnect.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });

    await postSteps(t, tenant, job.id, [2]);
    await survivor.waitFor(2);
    expect(messageIds(survivor)).toEqual(["1", "2"]);
    survivor.close();
  });

  describe("answers JSON errors before the stream starts", () => {
    const expectJson = async (response: Response, code: number, error: string) => {
      expect(response.status).toBe(code);
      expect(response.headers.get("content-type")).toMatch(/^application\/json/);
      const body = await response.json();
      expect(body).toMatchObject({ code, error });
      return body;
    };

    it("no key → 401", async () => {
      const job = await startJob(t.app, tenant);
      const body = await expectJson(await fetch(base + streamPath(job.id)), 401, "Unauthorized");
      expect(body.reason).toBe("Failed to authenticate");
    });

    it("unknown job or another application's job → 404 Expert job not found", async () => {
      const other = await seedTenant(t.app);
      const job = await startJob(t.app, other);
      for (const id of [job.id, "a".repeat(24)]) {
        const response = await fetch(base + streamPath(id), { headers: { authorization: `Bearer ${tenant.clientKey}` } });
        expect((await expectJson(response, 404, "Not Found")).reason).toBe("Expert job not found");
      }
    });

    it("bad job id, bad after, bad Last-Event-ID → 422", async () => {
      const job = await startJob(t.app, tenant);
      const auth = { authorization: `Bearer ${tenant.clientKey}` };
      await expectJson(await fetch(base + streamPath("short"), { headers: auth }), 422, "Validation Failed");
      await expectJson(await fetch(base + streamPath(job.id, "?after=-1"), { headers: auth }), 422, "Validation Failed");
      for (const lastEventId of ["abc", "-1", "1.5", "2147483648", "9999999999"]) {
        const badHeader = await fetch(base + streamPath(job.id), { headers: { ...auth, "last-event-id": lastEventId } });
        expect((await expectJson(badHeader, 422, "Validation Failed")).reason).toEqual([
          { path: "/headers/last-event-id", message: "must be a non-negative integer event id of at most 2147483647" },
        ]);
      }
      await expectJson(await fetch(base + streamPath(job.id, "?after=2147483648"), { headers: auth }), 422, "Validation Failed");
      expect(t.app.streamHub.openStreams).toBe(0);
    });

    it("HEAD answers the stream's headers and ends, holding no subscriber", async () => {
      const job = await startJob(t.app, tenant);
      const response = await fetch(base + streamPath(job.id), { method: "HEAD", headers: { authorization: `Bearer ${tenant.clientKey}` } });
      expect(response.status).toBe(200);
      expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
      expect(await response.text()).toBe("");
      expect(t.app.streamHub.openStreams).toBe(0);
    });
  });
});

describe("slow stream clients", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    // A short stall timeout, so that a stalled client is cut off soon after its socket stops taking bytes.
    t = await startTestApp({ config: { sseHeartbeatMs: 60_000 }, streamDelivery: { stallTimeoutMs: 1_000 } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("cuts off a client that stops reading while the others keep receiving", async () => {
    const job = await startJob(t.app, tenant);
    const reader = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
    const url = new URL(base);
    const stalled = connect(Number(url.port), url.hostname);
    stalled.write(`GET ${streamPath(job.id)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tenant.clientKey}\r\n\r\n`);
    stalled.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(t.app.streamHub.openStreams).toBe(2);
    const big = "x".repeat(400_000);
    // 12 MB in all: more than the kernel's socket buffers take.
    for (const stepNumber of range(1, 30).map(Number)) {
      await postSteps(t, tenant, job.id, [stepNumber], { messages: [userMessage(`${stepNumber}${big}`)] });
    }
    await reader.waitFor(30, 60_000);
    expect(messageIds(reader)).toEqual(range(1, 30));
    // The server drops the stalled client once its socket took nothing for the stall timeout; reading what
    // the kernel buffered then shows the connection's end.
    await eventually(async () => t.app.streamHub.openStreams === 1, 10_000);
    let received = "";
    stalled.on("data", (chunk) => (received += chunk.toString()));
    const closed = new Promise<void>((resolve) => stalled.on("close", () => resolve()));
    stalled.resume();
    await closed;
    expect(received).toContain("id: 1\n");
    expect(received).not.toContain("id: 30\n");
    reader.close();
  }, 60_000);
});

describe("stream resilience", () => {
  it("a client resumes with Last-Event-ID after a server restart and misses nothing", async () => {
    const dataDir = usingPostgres() ? undefined : await mkdtemp(path.join(tmpdir(), "ej-restart-"));
    const db: TestDatabase = dataDir
      ? { database: { kind: "pglite", dataDir }, drop: () => rm(dataDir, { recursive: true, force: true }) }
      : await createTestDatabase();
    let t = await startTestApp({ db });
    const tenant = await seedTenant(t.app);
    const job = await startJob(t.app, tenant);
    let base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const first = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
    await postSteps(t, tenant, job.id, [1, 2, 3]);
    await first.waitFor(3);
    const closing = Date.now();
    await t.app.close();
    await first.ended;
    expect(Date.now() - closing).toBeLessThan(2000);

    t = await startTestApp({ db });
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    await postSteps(t, tenant, job.id, [4, 5]);
    const lastEventId = first.events.at(-1)!.id!;
    const second = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}`, "last-event-id": lastEventId });
    await second.waitFor(2);
    await postSteps(t, tenant, job.id, [6], { status: "completed", toolCall: undefined });
    await second.ended;
    expect([...messageIds(first), ...messageIds(second)]).toEqual(range(1, 6));
    await t.app.close();
    await db.drop();
  });

  it("shuts down with 100 open streams in under 2 s", async () => {
    const t = await startTestApp();
    const tenant = await seedTenant(t.app);
    const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const jobs = await Promise.all(Array.from({ length: 10 }, () => startJob(t.app, tenant)));
    const streams = await Promise.all(
      Array.from({ length: 100 }, (_, index) =>
        openSse(base + streamPath(jobs[index % 10]!.id), { authorization: `Bearer ${tenant.clientKey}` }),
      ),
    );
    expect(t.app.streamHub.openStreams).toBe(100);
    const started = Date.now();
    await t.close();
    await Promise.all(streams.map((stream) => stream.ended));
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

for (const backend of backendCases) {
  describe.skipIf(!usingPostgres() || backend.skip !== undefined)(
    `streams across instances and connection loss, notifications over ${backend.name} (${backend.skip ?? "Postgres only: PGlite is one process"})`,
    () => {
      let db: TestDatabase;
      let a: TestApp;
      let b: TestApp;
      let tenant: Tenant;
      let baseB: string;

      beforeAll(async () => {
        db = await createTestDatabase();
        // The safety re-read is slowed down: here only the notifications and the reconnect catch-up deliver.
        const options = {
          db,
          config: { notify: backend.notify(db), notifySafetyIntervalMs: 600_000 },
          notifications: { reconnect: { initialDelayMs: 20, maxDelayMs: 200 } },
        };
        a = await startTestApp(options);
        b = await startTestApp(options);
        tenant = await seedTenant(a.app);
        baseB = await b.app.listen({ port: 0, host: "127.0.0.1" });
      });
      afterAll(async () => {
        await a?.app.close();
        await b?.app.close();
        await db?.drop();
      });

      const terminate = async (where: string, params: unknown[] = []) => {
        const client = new pg.Client({ connectionString: db.url });
        await client.connect();
        const { rowCount } = await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${where}`, params);
        await client.end();
        return rowCount ?? 0;
      };

      it("a checkpoint posted to instance A reaches a stream on instance B", async () => {
        const job = await startJob(a.app, tenant);
        const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
        await postSteps(a, tenant, job.id, [1, 2]);
        await stream.waitFor(2);
        expect(messageIds(stream)).toEqual(["1", "2"]);
        stream.close();
      });

      it("ends a revoked key's streams on every instance; the other key's streams go on", async () => {
        const job = await startJob(a.app, tenant);
        await postSteps(a, tenant, job.id, [1]);
        const baseA = await a.app.listen({ port: 0, host: "127.0.0.1" });
        const doomedKey = await a.app.admin.createApiKey(tenant.applicationId, "client");
        const doomed = [baseA, baseB].map((base) => openSse(base + streamPath(job.id), { authorization: `Bearer ${doomedKey.key}` }));
        const survivors = [baseA, baseB].map((base) => openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` }));
        const streams = await Promise.all([...doomed, ...survivors]);
        await Promise.all(streams.map((stream) => stream.waitFor(1)));
        // Revoked through instance A: B hears of it only by notification.
        const revoked = await a.app.inject({
          method: "DELETE",
          url: `/api/admin/v1/api_keys/${doomedKey.id}`,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        expect(revoked.statusCode).toBe(204);
        await Promise.all(streams.slice(0, 2).map((stream) => stream.ended));
        await postSteps(a, tenant, job.id, [2]);
        for (const survivor of streams.slice(2)) {
          await survivor.waitFor(2);
          expect(messageIds(survivor)).toEqual(["1", "2"]);
          survivor.close();
        }
        for (const stream of streams.slice(0, 2)) expect(messageIds(stream)).toEqual(["1"]);
      });

      // NATS has no LISTEN connection; its restart is test/plugins/notifications.test.ts's.
      if (backend.name === "postgres") {
        it("loses and repeats nothing when the LISTEN connection is killed mid-stream", async () => {
          const job = await startJob(a.app, tenant);
          const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
          // Posted while B's listener is down, 3 and 4 can only come by its reconnect catch-up.
          await streamThroughOutage(stream, (steps) => postSteps(a, tenant, job.id, steps), {
            begin: async () => expect(await terminate("pid = $1", [b.app.listenerProcessId])).toBe(1),
          });
        });
      }

      it("survives every connection of the database being killed", async () => {
        const job = await startJob(a.app, tenant);
        const stream = await openSse(baseB + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
        await postSteps(a, tenant, job.id, [1]);
        await stream.waitFor(1);
        const killed = await terminate("datname = current_database() AND pid <> pg_backend_pid()");
        expect(killed).toBeGreaterThanOrEqual(2);
        // The pools reconnect on demand; retry the first post in case it met a dead pooled connection.
        let posted = false;
        for (let attempt = 0; attempt < 20 && !posted; attempt++) {
          const response = await api(a.app, tenant.runtimeKey).post(
            `/expert_jobs/${job.id}/checkpoints/`,
            checkpointBody(tenant, { stepNumber: 2 }),
          );
          posted = response.statusCode === 200;
          if (!posted) await new Promise((resolve) => setTimeout(resolve, 100));
        }
        expect(posted).toBe(true);
        await postSteps(a, tenant, job.id, [3]);
        await stream.waitFor(3, 15_000);
        expect(messageIds(stream)).toEqual(range(1, 3));
        const ready = await b.app.inject({ method: "GET", url: "/readyz" });
        expect(ready.statusCode).toBe(200);
        stream.close();
      });
    },
  );
}
