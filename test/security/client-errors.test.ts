import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { seedTenant, type Tenant } from "../helpers/fixtures.ts";

/** Sends raw bytes, then reads until the server closes the connection (or `waitMs` passes): status, headers, body. */
async function rawExchange(port: number, request: string, waitMs = 10_000) {
  return new Promise<{ status: number; headers: Record<string, string>; body: string }>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on("data", (chunk) => (received += chunk.toString("latin1")));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      const [head = "", body = ""] = received.split("\r\n\r\n", 2);
      const [statusLine = "", ...headerLines] = head.split("\r\n");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
      if (!status) return reject(new Error(`no HTTP response: ${JSON.stringify(received.slice(0, 200))}`));
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(":")).toLowerCase(), line.slice(line.indexOf(":") + 1).trim()]),
      );
      resolve({ status, headers, body });
    });
    socket.write(request, "latin1");
  });
}

const expectEnvelope = (response: { status: number; headers: Record<string, string>; body: string }, code: number, error: string) => {
  expect(response.status).toBe(code);
  expect(response.headers["content-type"]).toMatch(/^application\/json/);
  expect(JSON.parse(response.body)).toEqual({
    code,
    error,
    reason: code === 422 ? [{ path: expect.any(String), message: expect.any(String) }] : expect.any(String),
  });
  expect(response.headers["x-request-id"]).toBeTruthy();
};

describe("errors raised before routing get the envelope too", () => {
  let t: TestApp;
  let tenant: Tenant;
  let port: number;
  beforeAll(async () => {
    // Slow headers are given 1 s here (30 s by default), checked every 250 ms.
    t = await startTestApp({ timeouts: { headersTimeoutMs: 1_000, requestTimeoutMs: 2_000, checkIntervalMs: 250 } });
    tenant = await seedTenant(t.app);
    port = new URL(await t.app.listen({ port: 0, host: "127.0.0.1" })).port as unknown as number;
  });
  afterAll(async () => t.close());

  it("431: a URL or headers past 16 KiB", async () => {
    const longUrl = await rawExchange(port, `GET /api/studio/v1/expert_jobs?filter=${"a".repeat(17_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectEnvelope(longUrl, 431, "Request Header Fields Too Large");
    const bigHeader = await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(17_000)}\r\n\r\n`);
    expectEnvelope(bigHeader, 431, "Request Header Fields Too Large");
  });

  it.each([
    ["a header line without a colon", "GET /healthz HTTP/1.1\r\nHost: x\r\nNot a header\r\n\r\n"],
    ["a broken request line", "GET\r\n\r\n"],
    [
      "an invalid chunk size",
      "POST /api/studio/v1/expert_jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    ],
    [
      "both Content-Length and chunked",
      "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
  ])("400: malformed framing (%s)", async (_label, request) => {
    expectEnvelope(await rawExchange(port, request), 400, "Bad Request");
  });

  it("408: headers that do not arrive in time", async () => {
    expectEnvelope(await rawExchange(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n"), 408, "Request Timeout");
  });

  it("417: an expectation the server does not support (100-continue works)", async () => {
    const response = await rawExchange(port, "GET /healthz HTTP/1.1\r\nHost: x\r\nExpect: the-unexpected\r\nConnection: close\r\n\r\n");
    expectEnvelope(response, 417, "Expectation Failed");
    const body = JSON.stringify({ expertKey: tenant.expert.key, query: "Do it" });
    const continued = await rawExchange(
      port,
      `POST /api/studio/v1/expert_jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tenant.clientKey}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(continued.status).toBe(100);
  });

  it("400: an HTTP/1.1 request without Host (HTTP/1.0 may leave it out)", async () => {
    expectEnvelope(await rawExchange(port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"), 400, "Bad Request");
    expect(JSON.parse((await rawExchange(port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")).body).reason).toBe(
      "Missing Host header",
    );
    expect((await rawExchange(port, "GET /healthz HTTP/1.0\r\n\r\n")).status).toBe(200);
  });

  it("422 for any over-long path id up to the header limit: the router's (past 1,024 characters) and the schema's", async () => {
    const auth = `Authorization: Bearer ${tenant.clientKey}\r\nConnection: close\r\n`;
    for (const length of [25, 1_000, 1_025, 15_000]) {
      const response = await rawExchange(port, `GET /api/studio/v1/expert_jobs/${"a".repeat(length)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`);
      expectEnvelope(response, 422, "Validation Failed");
    }
  });
});
