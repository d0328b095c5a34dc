import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appLimits, serverTimeouts, streamDeliveryDefaults } from "../../src/app.ts";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { MAX_CLAIM_WAIT_MS } from "../../src/modules/runtime/runtime.schemas.ts";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { api, checkpointBody, eventually, formData, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { openSse } from "../helpers/sse.ts";
import { databaseDigest } from "../helpers/database-digest.ts";

const streamPath = (jobId: string) => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const expectEnvelope = (response: { statusCode: number; json(): unknown }, code: number, error: string) => {
  expect(response.statusCode).toBe(code);
  expect(response.json()).toEqual({ code, error, reason: expect.any(String) });
};

describe("body size limit (BODY_LIMIT_BYTES)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ config: { bodyLimitBytes: 16 * 1024 } });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("answers 413 in the envelope to JSON and multipart bodies over the limit, and stores nothing", async () => {
    const job = await startJob(t.app, tenant);
    const before = await databaseDigest(t.app);
    const big = "x".repeat(20 * 1024);
    const json = await api(t.app, tenant.clientKey).post("/expert_jobs", { expertKey: tenant.expert.key, query: big });
    expectEnvelope(json, 413, "Payload Too Large");
    const form = await formData([
      ["expertKey", tenant.expert.key],
      ["query", big],
    ]);
    const multipart = await api(t.app, tenant.clientKey).request({ method: "POST", url: "/expert_jobs", ...form });
    expectEnvelope(multipart, 413, "Payload Too Large");
    const checkpoint = await api(t.app, tenant.runtimeKey).post(
      `/expert_jobs/${job.id}/checkpoints/`,
      checkpointBody(tenant, { messages: [{ type: "userMessage", contents: [{ type: "textPart", text: big }] }] }),
    );
    expectEnvelope(checkpoint, 413, "Payload Too Large");
    expect(await databaseDigest(t.app)).toEqual(before);
  });

  it("answers 413 to a chunked multipart upload (no Content-Length) once it passes the limit", async () => {
    const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const before = await databaseDigest(t.app);
    const form = await formData([
      ["expertKey", tenant.expert.key],
      ["query", "z".repeat(8 * 1024)],
      ["files", "a".repeat(8 * 1024)],
      ["files", "b".repeat(8 * 1024)],
    ]);
    const response = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = httpRequest(`${base}/api/studio/v1/expert_jobs`, {
        method: "POST",
        headers: { ...form.headers, authorization: `Bearer ${tenant.clientKey}`, "transfer-encoding": "chunked" },
      });
      request.on("response", (incoming) => {
        let body = "";
        incoming.on("data", (chunk) => (body += chunk));
        incoming.on("end", () => resolve({ status: incoming.statusCode!, body }));
      });
      request.on("error", reject);
      for (let offset = 0; offset < form.payload.length; offset += 4096) request.write(form.payload.subarray(offset, offset + 4096));
      request.end();
    });
    expect(response.status).toBe(413);
    expect(JSON.parse(response.body)).toEqual({ code: 413, error: "Payload Too Large", reason: "Request body is too large" });
    expect(await databaseDigest(t.app)).toEqual(before);
  });

  it("accepts a body just under the limit", async () => {
    const response = await api(t.app, tenant.clientKey).post("/expert_jobs", {
      expertKey: tenant.expert.key,
      query: "y".repeat(15 * 1024),
    });
    expect(response.statusCode).toBe(200);
  });
});

describe("limits from the environment", () => {
  it("defaults to 1,200 requests a minute, 100 streams per key and 30 failed authentications a minute per address; 0 turns a limit off", () => {
    expect(appLimits(loadConfig({}))).toEqual({
      rateLimit: { max: 1200, timeWindowMs: 60_000 },
      maxStreamsPerKey: 100,
      authFailureLimit: { max: 30, timeWindowMs: 60_000 },
      streamDelivery: streamDeliveryDefaults,
    });
    expect(appLimits(loadConfig({ RATE_LIMIT_PER_MINUTE: "0", MAX_STREAMS_PER_KEY: "7", AUTH_FAILURES_PER_MINUTE: "0" }))).toMatchObject({
      rateLimit: false,
      maxStreamsPerKey: 7,
      authFailureLimit: false,
    });
  });

  it("takes the stream delivery settings: SSE_STALL_TIMEOUT_MS, SSE_MAX_LAG_EVENTS (0: off), SSE_BATCH_BYTES, SSE_CACHE_BYTES", () => {
    expect(streamDeliveryDefaults).toEqual({
      stallTimeoutMs: 30_000,
      maxLagEvents: 1_000,
      batchBytes: 4 * 1024 * 1024,
      cacheBytes: 32 * 1024 * 1024,
    });
    const env = { SSE_STALL_TIMEOUT_MS: "5000", SSE_MAX_LAG_EVENTS: "0", SSE_BATCH_BYTES: "1048576", SSE_CACHE_BYTES: "0" };
    expect(appLimits(loadConfig(env)).streamDelivery).toEqual({
      stallTimeoutMs: 5_000,
      maxLagEvents: 0,
      batchBytes: 1_048_576,
      cacheBytes: 0,
    });
  });

  it("refuses values that are not whole numbers in range", () => {
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: "-1" })).toThrow(ConfigError);
    expect(() => loadConfig({ RATE_LIMIT_PER_MINUTE: "lots" })).toThrow(ConfigError);
    expect(() => loadConfig({ MAX_STREAMS_PER_KEY: "0" })).toThrow(/MAX_STREAMS_PER_KEY/);
    expect(() => loadConfig({ SSE_STALL_TIMEOUT_MS: "50" })).toThrow(/SSE_STALL_TIMEOUT_MS/);
    expect(() => loadConfig({ SSE_MAX_LAG_EVENTS: "-1" })).toThrow(/SSE_MAX_LAG_EVENTS/);
    expect(() => loadConfig({ SSE_BATCH_BYTES: "1000" })).toThrow(/SSE_BATCH_BYTES/);
    expect(() => loadConfig({ SSE_CACHE_BYTES: "lots" })).toThrow(/SSE_CACHE_BYTES/);
    expect(() => loadConfig({ AUTH_FAILURES_PER_MINUTE: "-1" })).toThrow(/AUTH_FAILURES_PER_MINUTE/);
  });

  it("TRUST_PROXY: unset trusts no proxy; true, or the proxies' addresses", () => {
    expect(loadConfig({}).trustProxy).toBeUndefined();
    expect(loadConfig({ TRUST_PROXY: "true" }).trustProxy).toBe(true);
    expect(loadConfig({ TRUST_PROXY: "10.0.0.1, 192.168.0.0/16" }).trustProxy).toEqual(["10.0.0.1", "192.168.0.0/16"]);
  });
});

describe("failed authentications per client address (AUTH_FAILURES_PER_MINUTE)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ ...appLimits(loadConfig({ AUTH_FAILURES_PER_MINUTE: "5" })), config: { trustProxy: ["127.0.0.1"] } });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const from = (address: string, key: string) =>
    t.app.inject({
      method: "GET",
      url: "/api/studio/v1/expert_jobs",
      headers: { authorization: `Bearer ${key}`, "x-forwarded-for": address },
      remoteAddress: "127.0.0.1",
    });
  const unknownKey = `ejk_${"a".repeat(24)}_${"b".repeat(43)}`;

  it("answers 429 in the envelope with Retry-After past the limit, before any key lookup, then only for that address", async () => {
    for (let attempt = 0; attempt < 4; attempt++) expect((await from("203.0.113.7", unknownKey)).statusCode).toBe(401);
    const fifth = await from("203.0.113.7", `${tenant.clientKey}x`);
    expect(fifth.statusCode).toBe(429);
    const blocked = await from("203.0.113.7", tenant.clientKey);
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json()).toEqual({
      code: 429,
      error: "Too Many Requests",
      reason: expect.stringMatching(/failed authentications from this address/),
    });
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
    // An admin token guessed from the same address is refused too, and other addresses are untouched.
    const admin = await t.app.inject({
      method: "POST",
      url: "/api/admin/v1/organizations",
      headers: { authorization: "Bearer wrong-admin-token-000", "x-forwarded-for": "203.0.113.7" },
      payload: { name: "x" },
      remoteAddress: "127.0.0.1",
    });
    expect(admin.statusCode).toBe(429);
    expect((await from("203.0.113.8", tenant.clientKey)).statusCode).toBe(200);
    expect((await from("203.0.113.8", unknownKey)).statusCode).toBe(401);
  });

  it("does not count successful requests", async () => {
    for (let attempt = 0; attempt < 20; attempt++) expect((await from("198.51.100.1", tenant.clientKey)).statusCode).toBe(200);
    expect((await from("198.51.100.1", unknownKey)).statusCode).toBe(401);
  });

  it("documents 429 on every route that authenticates", () => {
    const document = t.app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    for (const [path, operations] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (operation.responses["401"]) expect(operation.responses, `${method} ${path}`).toHaveProperty("429");
      }
    }
  });
});

describe("rate limit per API key (RATE_LIMIT_PER_MINUTE)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp(appLimits(loadConfig({ RATE_LIMIT_PER_MINUTE: "5" })));
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("answers 429 in the envelope with Retry-After once a key used up its window, and changes nothing", async () => {
    const client = api(t.app, tenant.clientKey);
    for (let index = 0; index < 5; index++) {
      const response = await client.get("/expert_jobs");
      expect(response.statusCode).toBe(200);
      expect(response.headers["x-ratelimit-limit"]).toBe("5");
      expect(response.headers["x-ratelimit-remaining"]).toBe(String(4 - index));
    }
    const before = await databaseDigest(t.app);
    const limited = await client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "Do it" });
    expectEnvelope(limited, 429, "Too Many Requests");
    expect(limited.json().reason).toMatch(/^Rate limit exceeded: at most 5 requests per 60 s per API key; retry in /);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(Number(limited.headers["retry-after"])).toBeLessThanOrEqual(60);
    expect(await databaseDigest(t.app)).toEqual(before);
  });

  it("counts each key on its own, and leaves unauthenticated routes alone", async () => {
    const other = await seedTenant(t.app);
    expect((await api(t.app, other.runtimeKey).get("/expert_jobs")).statusCode).toBe(200);
    for (let index = 0; index < 10; index++) {
      expect((await t.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
    }
    // An unknown key is refused by authentication before it could be counted.
    expect((await t.app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs" })).statusCode).toBe(401);
  });

  it("applies to opening a stream too (429 before the stream starts)", async () => {
    const stranger = await seedTenant(t.app);
    const job = await startJob(t.app, stranger);
    for (let index = 0; index < 4; index++) await api(t.app, stranger.clientKey).get("/expert_jobs");
    const response = await api(t.app, stranger.clientKey).get(`/expert_jobs/${job.id}/checkpoints/stream`);
    expectEnvelope(response, 429, "Too Many Requests");
  });
});

describe("load shedding (@fastify/under-pressure)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ underPressure: { maxEventLoopDelayMs: 40, sampleIntervalMs: 100 } });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("answers 503 in the envelope with Retry-After while the event loop is saturated; /healthz stays 200", async () => {
    const busy = (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end);
    };
    const saturator = setInterval(() => busy(120), 1);
    const app = t.app as TestApp["app"] & { isUnderPressure(): boolean };
    try {
      await eventually(async () => app.isUnderPressure(), 10_000, 5);
      // Nothing is shed during the first sample interval after ready (that is start-up, not load).
      const shed = await eventually(
        async () => {
          const response = await api(t.app, tenant.clientKey).get("/expert_jobs");
          return response.statusCode === 503 && response;
        },
        10_000,
        5,
      );
      expectEnvelope(shed, 503, "Service Unavailable");
      expect(shed.json().reason).toBe("The server is overloaded; retry later");
      expect(Number(shed.headers["retry-after"])).toBeGreaterThan(0);
      expect((await t.app.inject({ method: "GET", url: "/readyz" })).statusCode).toBe(503);
      expect((await t.app.inject({ method: "GET", url: "/healthz" })).statusCode).toBe(200);
      // The dashboard's own files are never shed (its page waits out the API's 503s itself), nor the icon.
      for (const url of ["/dashboard/", "/dashboard/job-view.js", "/dashboard/dashboard.css"]) {
        expect((await t.app.inject({ method: "GET", url })).statusCode, url).toBe(200);
      }
      const icon = await t.app.inject({ method: "GET", url: "/favicon.ico" });
      expect(icon.statusCode).toBe(200);
      expect(icon.headers["content-type"]).toBe("image/svg+xml");
    } finally {
      clearInterval(saturator);
    }
    await eventually(async () => !app.isUnderPressure(), 10_000);
    expect((await api(t.app, tenant.clientKey).get("/expert_jobs")).statusCode).toBe(200);
  });
});

describe("open streams per API key (MAX_STREAMS_PER_KEY)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  beforeAll(async () => {
    t = await startTestApp(appLimits(loadConfig({ MAX_STREAMS_PER_KEY: "3" })));
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("answers 429 in the envelope before the stream starts once a key holds the maximum", async () => {
    const job = await startJob(t.app, tenant);
    const auth = { authorization: `Bearer ${tenant.clientKey}` };
    const streams = await Promise.all([1, 2, 3].map(() => openSse(base + streamPath(job.id), auth)));
    expect(streams.map((stream) => stream.status)).toEqual([200, 200, 200]);

    const refused = await fetch(base + streamPath(job.id), { headers: auth });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("content-type")).toMatch(/^application\/json/);
    expect(refused.headers.get("retry-after")).toBeTruthy();
    expect(await refused.json()).toEqual({
      code: 429,
      error: "Too Many Requests",
      reason: "Too many open streams for this API key (at most 3); close one or retry later",
    });

    // Another key of the same application has its own allowance.
    const runtimeStream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.runtimeKey}` });
    expect(runtimeStream.status).toBe(200);

    streams[0]!.close();
    await eventually(async () => t.app.streamHub.streamsOf(tenant.clientKey.split("_")[1]!) === 2);
    const again = await openSse(base + streamPath(job.id), auth);
    expect(again.status).toBe(200);
    for (const stream of [...streams, runtimeStream, again]) stream.close();
    await eventually(async () => t.app.streamHub.openStreams === 0);
  });
});

describe("server timeouts", () => {
  it("defaults: claims and streams outlive the idle timeout, headers must arrive sooner than whole requests", () => {
    expect(serverTimeouts.connectionTimeoutMs).toBeGreaterThan(MAX_CLAIM_WAIT_MS);
    expect(serverTimeouts.headersTimeoutMs).toBeLessThanOrEqual(serverTimeouts.requestTimeoutMs);
    expect(serverTimeouts.keepAliveTimeoutMs).toBeGreaterThan(60_000);
  });

  describe("with short timeouts", () => {
    let t: TestApp;
    let tenant: Tenant;
    let base: string;
    beforeAll(async () => {
      t = await startTestApp({
        captureLogs: "warn",
        config: { sseHeartbeatMs: 60_000 },
        timeouts: { headersTimeoutMs: 300, requestTimeoutMs: 400, connectionTimeoutMs: 300, checkIntervalMs: 100 },
      });
      tenant = await seedTenant(t.app);
      base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    });
    afterAll(async () => t.close());

    it("cut a client that never finishes its headers", async () => {
      const url = new URL(base);
      const socket = connect(Number(url.port), url.hostname);
      const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now())));
      let received = "";
      socket.on("data", (chunk) => (received += chunk.toString()));
      socket.on("error", () => {});
      const started = Date.now();
      socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: `);
      const closedAt = await closed;
      expect(closedAt - started).toBeLessThan(3_000);
      expect(received).not.toContain("200 OK");
    });

    it("do not cut a quiet stream: it still delivers after every timeout has passed", async () => {
      const job = await startJob(t.app, tenant);
      const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}` });
      expect(stream.status).toBe(200);
      await sleep(1_200);
      const posted = await api(t.app, tenant.runtimeKey).post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant));
      expect(posted.statusCode, t.logs.join("\n")).toBe(200);
      const [event] = await stream.waitFor(1, 5_000);
      expect(event!.id).toBe("1");
      stream.close();
    });
  });
});
