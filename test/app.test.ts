import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { createTestDatabase, startTestApp, testConfig, type TestApp } from "./helpers/app.ts";
import { api, seedTenant, startJob, type Tenant } from "./helpers/fixtures.ts";

describe("the app's wire rules", () => {
  let t: TestApp;
  let tenant: Tenant;

  beforeAll(async () => {
    t = await startTestApp({ config: { bodyLimitBytes: 64 * 1024 } });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("malformed JSON → 400 in the envelope", async () => {
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: "/expert_jobs",
      headers: { "content-type": "application/json" },
      payload: '{"expertKey": ',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Malformed JSON body" });
  });

  it("a prototype-pollution key in JSON is an unknown key like any other: ignored, nothing polluted", async () => {
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: "/expert_jobs",
      headers: { "content-type": "application/json" },
      payload: `{"expertKey":"${tenant.expert.key}","query":"x","__proto__":{"admin":true,"query":"y"}}`,
    });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().data.expertJob.query).toBe("x");
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  it("unknown route → 404 in the envelope", async () => {
    const response = await t.app.inject({ method: "GET", url: "/api/studio/v1/nothing-here?access_token=abc" });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Route GET /api/studio/v1/nothing-here not found" });
  });

  it("body over BODY_LIMIT_BYTES → 413 in the envelope", async () => {
    const response = await api(t.app, tenant.clientKey).post("/expert_jobs", {
      expertKey: tenant.expert.key,
      query: "x".repeat(70 * 1024),
    });
    expect(response.statusCode).toBe(413);
    expect(response.json()).toMatchObject({ code: 413, error: "Payload Too Large" });
  });

  it("unsupported content type → 415 in the envelope", async () => {
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: "/expert_jobs",
      headers: { "content-type": "application/xml" },
      payload: "<job/>",
    });
    expect(response.statusCode).toBe(415);
    expect(response.json()).toMatchObject({ code: 415, error: "Unsupported Media Type" });
  });

  it("schema violations → 422 with a list of {path, message}", async () => {
    const response = await api(t.app, tenant.clientKey).post("/expert_jobs", { expertKey: tenant.expert.key, query: "x", temperature: 2 });
    expect(response.statusCode).toBe(422);
    expect(response.json()).toEqual({
      code: 422,
      error: "Validation Failed",
      reason: [{ path: "/temperature", message: "must be <= 1" }],
    });
  });

  it("a bad path id → 422 naming the parameter, never 404", async () => {
    const response = await api(t.app, tenant.clientKey).get("/expert_jobs/NOT-AN-ID");
    expect(response.statusCode).toBe(422);
    expect(response.json().reason[0].path).toBe("/expertJobId");
  });

  it("401 comes before 422 and 404", async () => {
    const response = await t.app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs/NOT-AN-ID" });
    expect(response.json()).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
  });

  it("a GET with Content-Type: application/json and no body works (the Perstack client sends that)", async () => {
    const job = await startJob(t.app, tenant);
    const response = await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}/`, { "content-type": "application/json" });
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.id).toBe(job.id);
  });

  it("trailing slashes are optional", async () => {
    const job = await startJob(t.app, tenant);
    const client = api(t.app, tenant.clientKey);
    for (const url of [`/expert_jobs/${job.id}/checkpoints`, `/expert_jobs/${job.id}/checkpoints/`, "/expert_jobs/", "/expert_jobs"]) {
      expect((await client.get(url)).statusCode, url).toBe(200);
    }
  });

  it("every response carries a request id, and a sane incoming x-request-id is kept", async () => {
    const generated = await t.app.inject({ method: "GET", url: "/healthz" });
    expect(generated.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    const kept = await t.app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": "trace-123" } });
    expect(kept.headers["x-request-id"]).toBe("trace-123");
    const replaced = await t.app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": "bad id with spaces" } });
    expect(replaced.headers["x-request-id"]).not.toBe("bad id with spaces");
  });

  it("absent optional job fields are omitted, never null", async () => {
    const job = await startJob(t.app, tenant, { query: undefined, files: ["a.txt"] });
    expect(job).not.toHaveProperty("query");
    expect(job).not.toHaveProperty("interactiveToolCallResult");
    expect(JSON.stringify(job)).not.toContain("null");
  });

  it("/healthz and /readyz answer 200 when the database is reachable", async () => {
    expect((await t.app.inject({ method: "GET", url: "/healthz" })).json()).toEqual({ status: "ok" });
    expect((await t.app.inject({ method: "GET", url: "/readyz" })).json()).toEqual({ status: "ok" });
  });
});

describe("unexpected errors", () => {
  it("a 500 is masked: the envelope carries the request id, never the internals, and the log has them", async () => {
    const db = await createTestDatabase();
    const lines: string[] = [];
    const app = await buildApp(testConfig(db.database), {
      logger: { level: "error", stream: { write: (line: string) => void lines.push(line) } },
      // Load shedding answers for the machine, not for this route (a busy CI host would get a 503).
      underPressure: false,
    });
    app.get("/explode", async () => {
      throw new Error("connection string postgres://secret@db");
    });
    await app.ready();
    const response = await app.inject({ method: "GET", url: "/explode" });
    expect(response.statusCode).toBe(500);
    const requestId = response.headers["x-request-id"];
    expect(response.json()).toEqual({
      code: 500,
      error: "Internal Server Error",
      reason: `Internal server error (request id ${requestId})`,
    });
    expect(response.body).not.toContain("secret");
    expect(lines.some((line) => line.includes("secret") && line.includes(String(requestId)))).toBe(true);
    await app.close();
    await db.drop();
  });
});

describe("the OpenAPI document", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t.close());

  it("is served at /openapi.json with the contract's operations", async () => {
    const response = await t.app.inject({ method: "GET", url: "/openapi.json" });
    expect(response.statusCode).toBe(200);
    const document = response.json();
    expect(document.openapi).toBe("3.1.0");
    const operations = Object.values(document.paths as Record<string, Record<string, { operationId?: string }>>)
      .flatMap((path) => Object.values(path))
      .map((operation) => operation.operationId);
    expect(operations).toEqual(
      expect.arrayContaining([
        "postApiStudioV1Expert_jobsByExpertJobIdContinue",
        "getApiStudioV1Expert_jobsByExpertJobIdCheckpointsByCheckpointId",
        "getApiStudioV1Expert_jobsByExpertJobIdCheckpoints",
        "postApiStudioV1Expert_jobsByExpertJobIdCheckpoints",
        "getApiStudioV1Expert_jobsByExpertJobIdCheckpointsStream",
      ]),
    );
    const list = document.paths["/api/studio/v1/expert_jobs/{expertJobId}/checkpoints"].get;
    expect(list.responses).toHaveProperty("200");
    expect(list.responses).toHaveProperty("422");
  });

  it("has a docs page at /docs", async () => {
    const response = await t.app.inject({ method: "GET", url: "/docs/" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toMatch(/text\/html/);
  });
});

describe("validation messages", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("a value outside an enum → 422 naming the allowed values once", async () => {
    const response = await api(t.app, tenant.clientKey).post("/expert_jobs", { expertKey: tenant.expert.key, query: "x", model: "gpt-2" });
    expect(response.statusCode).toBe(422);
    const [issue, ...rest] = response.json().reason;
    expect(rest).toEqual([]);
    expect(issue.path).toBe("/model");
    expect(issue.message).toMatch(/^must be one of: "claude-opus-4-5", .*"deepseek-reasoner"$/);
  });

  it("a text/plain body → 415", async () => {
    const response = await api(t.app, tenant.clientKey).request({
      method: "POST",
      url: "/expert_jobs",
      headers: { "content-type": "text/plain" },
      payload: "hello",
    });
    expect(response.statusCode).toBe(415);
  });
});
