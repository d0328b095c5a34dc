import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reasons } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, formData, jobInStatus, seedSiblingApplication, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("POST /expert_jobs (start)", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  const start = (body?: unknown) => api(t.app, tenant.clientKey).post("/expert_jobs", body);

  it("queues a job with the documented defaults and returns it as GET does", async () => {
    const response = await start({ expertKey: tenant.expert.key, query: "Summarise" });
    expect(response.statusCode, response.body).toBe(200);
    const job = response.json().data.expertJob;
    expect(job).toMatchObject({
      type: "expertJob",
      status: "queued",
      runtimeVersion: "v1.0",
      expertKey: tenant.expert.key,
      query: "Summarise",
      files: [],
      model: "claude-sonnet-4-5",
      temperature: 0,
      maxSteps: 100,
      maxRetries: 5,
      currentStep: 0,
      totalSteps: 0,
      totalDuration: 0,
      usage: { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, totalTokens: 0, cachedInputTokens: 0 },
      organizationId: tenant.organizationId,
      applicationId: tenant.applicationId,
      expert: tenant.expert,
    });
    expect(job).not.toHaveProperty("interactiveToolCallResult");
    expect(job.id).toMatch(/^[a-z0-9]{24}$/);
    expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob).toEqual(job);
  });

  it("resolves a bare expert name to its latest version but keeps the key as given", async () => {
    const response = await start({ expertKey: tenant.expert.name, query: "Hi" });
    expect(response.statusCode).toBe(200);
    expect(response.json().data.expertJob.expertKey).toBe(tenant.expert.name);
    expect(response.json().data.expertJob.expert.id).toBe(tenant.expert.id);
  });

  it("accepts multipart/form-data as the original client sends it", async () => {
    const { payload, headers } = await formData([
      ["expertKey", tenant.expert.key],
      ["query", "From a form"],
      ["temperature", "0.25"],
      ["maxSteps", "12"],
      ["maxRetries", "1"],
      ["model", "claude-haiku-4-5"],
      ["files", "a.txt"],
      ["files", "b.txt"],
    ]);
    const response = await api(t.app, tenant.clientKey).request({ method: "POST", url: "/expert_jobs", payload, headers });
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json().data.expertJob).toMatchObject({
      query: "From a form",
      temperature: 0.25,
      maxSteps: 12,
      maxRetries: 1,
      model: "claude-haiku-4-5",
      files: ["a.txt", "b.txt"],
    });
  });

  it("answers the 400s in order: query or files, then expert, then provider key", async () => {
    const noInput = await start({ expertKey: "@acme/unknown", query: "", model: "gpt-5" });
    expect(noInput.json()).toEqual({ code: 400, error: "Bad Request", reason: reasons.queryOrFilesRequired });
    const noExpert = await start({ expertKey: "@acme/unknown", query: "x", model: "gpt-5" });
    expect(noExpert.json()).toEqual({ code: 400, error: "Bad Request", reason: reasons.expertNotFound });
    const noKey = await start({ expertKey: tenant.expert.key, query: "x", model: "gpt-5" });
    expect(noKey.json()).toEqual({ code: 400, error: "Bad Request", reason: reasons.providerKeyNotFound });
  });

  it("does not resolve another organization's expert", async () => {
    const other = await seedTenant(t.app, { expertName: "@other/only-theirs" });
    const response = await start({ expertKey: other.expert.key, query: "x" });
    expect(response.statusCode).toBe(400);
    expect(response.json().reason).toBe(reasons.expertNotFound);
  });

  it("answers 422 to bad fields and 401 before 422", async () => {
    for (const body of [
      { query: "x" },
      { expertKey: "Not A Key!", query: "x" },
      { expertKey: tenant.expert.key, query: "x", temperature: 1.01 },
      { expertKey: tenant.expert.key, query: "x", maxSteps: "0" },
      { expertKey: tenant.expert.key, query: "x", maxRetries: -1 },
      { expertKey: tenant.expert.key, query: "x", model: "claude-2" },
    ]) {
      const response = await start(body);
      expect(response.statusCode, JSON.stringify(body)).toBe(422);
      expect(response.json().error).toBe("Validation Failed");
    }
    const unauthenticated = await t.app.inject({ method: "POST", url: "/api/studio/v1/expert_jobs", payload: { temperature: 9 } });
    expect(unauthenticated.statusCode).toBe(401);
  });
});

describe("GET /expert_jobs/{id} and GET /expert_jobs", () => {
  let t: TestApp;
  let tenant: Tenant;
  let other: Tenant;
  const created: Array<Record<string, any>> = [];
  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    other = await seedTenant(t.app);
    const writer = await t.app.admin.registerExpert(tenant.organizationId, {
      name: "@acme/writer",
      version: "2.0.0",
      description: "Writes",
    });
    for (let i = 0; i < 5; i++) {
      created.push(await startJob(t.app, tenant, { expertKey: i % 2 === 0 ? tenant.expert.key : writer.key, query: `job ${i}` }));
      await sleep(5);
    }
    await startJob(t.app, other);
  });
  afterAll(async () => t.close());

  const list = (query = "") => api(t.app, tenant.clientKey).get(`/expert_jobs${query}`);

  it("answers 422 to a malformed id, 404 to an unknown one, and 404 to another application's job", async () => {
    expect((await api(t.app, tenant.clientKey).get("/expert_jobs/UPPERCASE0123456789ABCDE")).statusCode).toBe(422);
    expect((await api(t.app, tenant.clientKey).get("/expert_jobs/tooshort")).statusCode).toBe(422);
    const unknown = await api(t.app, tenant.clientKey).get(`/expert_jobs/${"b".repeat(24)}`);
    expect(unknown.json()).toEqual({ code: 404, error: "Not Found", reason: reasons.expertJobNotFound });
    const theirs = await api(t.app, other.clientKey).get(`/expert_jobs/${created[0]!.id}`);
    expect(theirs.statusCode).toBe(404);
    expect(theirs.json().reason).toBe(reasons.expertJobNotFound);
    const sibling = await seedSiblingApplication(t.app, tenant);
    expect((await api(t.app, sibling.clientKey).get(`/expert_jobs/${created[0]!.id}`)).statusCode).toBe(404);
  });

  it("lists only the application's jobs with paging metadata, oldest first by default", async () => {
    const response = await list();
    expect(response.statusCode).toBe(200);
    const body = response.json();
    expect(body.meta).toEqual({ total: 5, take: 10, skip: 0 });
    expect(body.data.expertJobs.map((job: { id: string }) => job.id)).toEqual(created.map((job) => job.id));
    const theirs = (await api(t.app, other.clientKey).get("/expert_jobs")).json();
    expect(theirs.meta.total).toBe(1);
    expect(theirs.data.expertJobs.map((job: { id: string }) => job.id)).not.toContain(created[0]!.id);
  });

  it("pages with take and skip (numbers coerced from the query string)", async () => {
    const page = (await list("?take=2&skip=1")).json();
    expect(page.meta).toEqual({ total: 5, take: 2, skip: 1 });
    expect(page.data.expertJobs.map((job: { id: string }) => job.id)).toEqual([created[1]!.id, created[2]!.id]);
    const past = (await list("?skip=10")).json();
    expect(past.data.expertJobs).toEqual([]);
    expect(past.meta.total).toBe(5);
  });

  it("sorts by createdAt or updatedAt, ascending or descending", async () => {
    const newestFirst = (await list("?order=desc")).json().data.expertJobs.map((job: { id: string }) => job.id);
    expect(newestFirst).toEqual(created.map((job) => job.id).reverse());
    await sleep(5);
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${created[0]!.id}/cancel`);
    const recentlyUpdated = (await list("?sort=updatedAt&order=desc&take=1")).json().data.expertJobs;
    expect(recentlyUpdated[0].id).toBe(created[0]!.id);
    expect(recentlyUpdated[0].status).toBe("canceled");
  });

  it("filters by a case-insensitive substring of the expert key, and by status", async () => {
    const writers = (await list("?filter=WRITER")).json();
    expect(writers.meta.total).toBe(2);
    expect(writers.data.expertJobs.every((job: { expertKey: string }) => job.expertKey.startsWith("@acme/writer"))).toBe(true);
    const canceled = (await list("?status=canceled")).json();
    expect(canceled.data.expertJobs.map((job: { id: string }) => job.id)).toEqual([created[0]!.id]);
    const queuedWriters = (await list("?status=queued&filter=writer")).json();
    expect(queuedWriters.meta.total).toBe(2);
  });

  it("takes % and _ in the filter literally, not as LIKE wildcards", async () => {
    const owner = await seedTenant(t.app, { expertName: "@acme/data_bot" });
    const job = await startJob(t.app, owner);
    const ownList = (query: string) => api(t.app, owner.clientKey).get(`/expert_jobs${query}`);
    expect((await ownList("?filter=%25")).json().meta.total).toBe(0);
    expect((await ownList("?filter=data%25bot")).json().meta.total).toBe(0);
    expect((await ownList("?filter=dat_")).json().meta.total).toBe(0);
    expect((await ownList("?filter=_")).json().data.expertJobs.map((item: { id: string }) => item.id)).toEqual([job.id]);
    expect((await ownList("?filter=DATA_BOT")).json().meta.total).toBe(1);
    expect((await list("?filter=%25")).json().meta.total).toBe(0);
    expect((await list("?filter=_")).json().meta.total).toBe(0);
  });

  it("answers 422 to paging values out of range and unknown statuses", async () => {
    for (const query of ["?take=0", "?take=101", "?take=ten", "?skip=-1", "?sort=name", "?order=up", "?status=running", "?filter="]) {
      const response = await list(query);
      expect(response.statusCode, query).toBe(422);
      expect(response.json().code).toBe(422);
    }
  });

  it("lists a job in every status it reached through the API", async () => {
    const owner = await seedTenant(t.app);
    for (const status of ["completed", "requestInteractiveToolResult", "failed", "canceling"]) await jobInStatus(t.app, owner, status);
    const statuses = (await api(t.app, owner.clientKey).get("/expert_jobs"))
      .json()
      .data.expertJobs.map((job: { status: string }) => job.status);
    expect(statuses).toEqual(["completed", "requestInteractiveToolResult", "failed", "canceling"]);
  });
});
