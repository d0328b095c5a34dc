import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { api, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { openSse } from "../helpers/sse.ts";

const streamPath = (jobId: string) => `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`;

describe("security headers (helmet)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("are on every JSON answer, errors included: nothing may load, frame or sniff it", async () => {
    const job = await startJob(t.app, tenant);
    const responses = [
      await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`),
      await api(t.app, tenant.clientKey).get("/expert_jobs/NOT-AN-ID"),
      await t.app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs" }),
      await t.app.inject({ method: "GET", url: "/nothing-here" }),
      await t.app.inject({ method: "GET", url: "/healthz" }),
    ];
    expect(responses.map((response) => response.statusCode)).toEqual([200, 422, 401, 404, 200]);
    for (const response of responses) {
      expect(response.headers["content-security-policy"]).toBe(
        "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'",
      );
      expect(response.headers["x-content-type-options"]).toBe("nosniff");
      expect(response.headers["x-frame-options"]).toBe("SAMEORIGIN");
      expect(response.headers["strict-transport-security"]).toMatch(/^max-age=\d+/);
      expect(response.headers["referrer-policy"]).toBe("no-referrer");
      expect(response.headers["cross-origin-resource-policy"]).toBe("same-origin");
      expect(response.headers["x-powered-by"]).toBeUndefined();
      expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    }
  });

  it("relax the content security policy for the docs page only", async () => {
    const docs = await t.app.inject({ method: "GET", url: "/docs/" });
    expect(docs.statusCode).toBe(200);
    const policy = String(docs.headers["content-security-policy"]);
    expect(policy).toContain("script-src 'self';");
    expect(policy).toContain("connect-src 'self'");
    expect(policy).not.toMatch(/https:|http:|\*/);
    expect(policy).toContain("object-src 'none'");
    expect(docs.headers["x-content-type-options"]).toBe("nosniff");
  });
});

describe("CORS", () => {
  it("is off by default: no Access-Control-* headers, and a preflight is an unknown route", async () => {
    const t = await startTestApp();
    try {
      const tenant = await seedTenant(t.app);
      const response = await api(t.app, tenant.clientKey).get("/expert_jobs", { origin: "https://dash.example.com" });
      expect(response.statusCode).toBe(200);
      expect(Object.keys(response.headers).filter((name) => name.startsWith("access-control-"))).toEqual([]);
      const preflight = await t.app.inject({
        method: "OPTIONS",
        url: "/api/studio/v1/expert_jobs",
        headers: { origin: "https://dash.example.com", "access-control-request-method": "GET" },
      });
      expect(preflight.statusCode).toBe(404);
      expect(preflight.json()).toMatchObject({ code: 404, error: "Not Found" });
      expect(preflight.headers["access-control-allow-origin"]).toBeUndefined();
    } finally {
      await t.close();
    }
  });

  it("reads CORS_ORIGINS as a comma-separated list (unset: off)", () => {
    expect(loadConfig({}).corsOrigins).toBeUndefined();
    expect(loadConfig({ CORS_ORIGINS: "https://a.example, https://b.example:8443" }).corsOrigins).toEqual([
      "https://a.example",
      "https://b.example:8443",
    ]);
    expect(loadConfig({ CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
  });

  describe("with CORS_ORIGINS set", () => {
    let t: TestApp;
    let tenant: Tenant;
    let base: string;
    const origin = "https://dash.example.com";
    beforeAll(async () => {
      t = await startTestApp({ config: { corsOrigins: [origin] } });
      tenant = await seedTenant(t.app);
      base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    });
    afterAll(async () => t.close());

    it("allows the listed origin, with the headers a dashboard needs to read", async () => {
      const response = await api(t.app, tenant.clientKey).get("/expert_jobs", { origin });
      expect(response.statusCode).toBe(200);
      expect(response.headers["access-control-allow-origin"]).toBe(origin);
      expect(response.headers["access-control-allow-credentials"]).toBeUndefined();
      expect(String(response.headers.vary)).toMatch(/origin/i);
      expect(String(response.headers["access-control-expose-headers"])).toContain("x-request-id");
      expect(String(response.headers["access-control-expose-headers"])).toContain("retry-after");
    });

    it("answers a preflight for the listed origin and gives nothing to others", async () => {
      const preflight = await t.app.inject({
        method: "OPTIONS",
        url: "/api/studio/v1/expert_jobs/claim",
        headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
      });
      expect(preflight.statusCode).toBe(204);
      expect(preflight.headers["access-control-allow-origin"]).toBe(origin);
      expect(String(preflight.headers["access-control-allow-methods"])).toContain("POST");
      expect(String(preflight.headers["access-control-allow-headers"])).toContain("authorization");
      expect(String(preflight.headers["access-control-allow-headers"])).toContain("last-event-id");

      const other = await api(t.app, tenant.clientKey).get("/expert_jobs", { origin: "https://evil.example" });
      expect(other.statusCode).toBe(200);
      expect(other.headers["access-control-allow-origin"]).toBeUndefined();
    });

    it("reaches the stream too (its headers are written by hand)", async () => {
      const job = await startJob(t.app, tenant);
      const stream = await openSse(base + streamPath(job.id), { authorization: `Bearer ${tenant.clientKey}`, origin });
      expect(stream.status).toBe(200);
      expect(stream.headers.get("access-control-allow-origin")).toBe(origin);
      expect(stream.headers.get("content-type")).toMatch(/^text\/event-stream/);
      stream.close();
    });
  });
});
