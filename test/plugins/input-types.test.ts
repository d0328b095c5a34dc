import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, ADMIN_TOKEN, type TestApp } from "../helpers/app.ts";
import { databaseDigest } from "../helpers/database-digest.ts";
import { api, formData, jobInStatus, seedTenant, startJob, type Api, type Tenant } from "../helpers/fixtures.ts";

/**
 * JSON bodies keep their types: a value of the wrong type is a 422, never coerced. The exceptions are
 * the numbers the contract types as strings (continue's and start's `temperature`, `maxSteps`,
 * `maxRetries`), and text by nature: query strings and multipart form fields, whose numbers must be in
 * JSON's own number syntax.
 */
describe("strict input types", () => {
  let t: TestApp;
  let tenant: Tenant;
  let client: Api;
  let runtime: Api;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    client = api(t.app, tenant.clientKey);
    runtime = api(t.app, tenant.runtimeKey);
  });
  afterAll(async () => t.close());

  const start = (body: Record<string, unknown>) => client.post("/expert_jobs", { expertKey: tenant.expert.key, query: "Do it", ...body });

  async function expect422(send: () => Promise<{ statusCode: number; body: string; json(): any }>, path: string) {
    const before = await databaseDigest(t.app);
    const response = await send();
    expect(response.statusCode, response.body).toBe(422);
    expect(response.json().reason.map((issue: { path: string }) => issue.path)).toContain(path);
    expect(await databaseDigest(t.app)).toEqual(before);
  }

  it("refuses JSON values of the wrong type that were coerced before", async () => {
    const job = await startJob(t.app, tenant);
    await expect422(() => start({ query: 42 }), "/query");
    await expect422(() => start({ query: true }), "/query");
    await expect422(() => start({ files: [1, 2] }), "/files");
    await expect422(() => start({ model: ["gpt-5"] }), "/model");
    await expect422(() => runtime.post("/expert_jobs/claim", { waitMs: null }), "/waitMs");
    await expect422(() => runtime.post("/expert_jobs/claim", { waitMs: "100" }), "/waitMs");
    await expect422(() => runtime.post("/expert_jobs/claim", { waitMs: [100] }), "/waitMs");
    await expect422(() => runtime.post(`/expert_jobs/${job.id}`, { status: ["processing"] }), "/status");
    await expect422(
      () => client.post(`/expert_jobs/${job.id}/continue`, { query: "x", interactiveToolCallResult: "true" }),
      "/interactiveToolCallResult",
    );
    await expect422(
      () =>
        t.app.inject({
          method: "POST",
          url: `/api/admin/v1/applications/${tenant.applicationId}/api_keys`,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          payload: { scope: ["client"] },
        }),
      "/scope",
    );
  });

  it.each(["0x1", " 0.5", "0.5 ", "+0.5", ".5", "1_0", "Infinity", "NaN", "", "0.5.1", "1e400"])(
    "refuses the numeric string %j for temperature, maxSteps and maxRetries",
    async (value) => {
      await expect422(() => start({ temperature: value }), "/temperature");
      await expect422(() => start({ maxSteps: value }), "/maxSteps");
      await expect422(() => start({ maxRetries: value }), "/maxRetries");
    },
  );

  it("takes temperature, maxSteps and maxRetries as numbers or as numeric strings", async () => {
    const asStrings = await start({ temperature: "0.25", maxSteps: "12", maxRetries: "0" });
    expect(asStrings.statusCode, asStrings.body).toBe(200);
    expect(asStrings.json().data.expertJob).toMatchObject({ temperature: 0.25, maxSteps: 12, maxRetries: 0 });
    const asNumbers = await start({ temperature: 0.75, maxSteps: 3, maxRetries: 2 });
    expect(asNumbers.json().data.expertJob).toMatchObject({ temperature: 0.75, maxSteps: 3, maxRetries: 2 });
    const exponent = await start({ temperature: "1e-1", maxSteps: "1e2" });
    expect(exponent.json().data.expertJob).toMatchObject({ temperature: 0.1, maxSteps: 100 });
    await expect422(() => start({ temperature: "2" }), "/temperature");
    await expect422(() => start({ maxSteps: "1.5" }), "/maxSteps");
  });

  it("takes files as a string or an array of strings, in JSON and in forms", async () => {
    expect((await start({ query: "", files: "one.txt" })).json().data.expertJob.files).toEqual(["one.txt"]);
    expect((await start({ query: "", files: ["a.txt", "b.txt"] })).json().data.expertJob.files).toEqual(["a.txt", "b.txt"]);
    const single = await formData([
      ["expertKey", tenant.expert.key],
      ["files", "one.txt"],
    ]);
    expect((await client.request({ method: "POST", url: "/expert_jobs", ...single })).json().data.expertJob.files).toEqual(["one.txt"]);
    const repeated = await formData([
      ["expertKey", tenant.expert.key],
      ["files", "a.txt"],
      ["files", "b.txt"],
    ]);
    expect((await client.request({ method: "POST", url: "/expert_jobs", ...repeated })).json().data.expertJob.files).toEqual([
      "a.txt",
      "b.txt",
    ]);
  });

  it("converts form fields (always text) by their schema: numbers in JSON syntax, true and false", async () => {
    const form = await formData([
      ["expertKey", tenant.expert.key],
      ["query", "Do it"],
      ["temperature", "0.5"],
      ["maxSteps", "7"],
      ["maxRetries", "1"],
    ]);
    const started = await client.request({ method: "POST", url: "/expert_jobs", ...form });
    expect(started.statusCode, started.body).toBe(200);
    expect(started.json().data.expertJob).toMatchObject({ temperature: 0.5, maxSteps: 7, maxRetries: 1, query: "Do it" });

    for (const [field, value] of [
      ["temperature", "0x1"],
      ["maxSteps", " 5"],
      ["maxRetries", "one"],
    ]) {
      const bad = await formData([
        ["expertKey", tenant.expert.key],
        ["query", "Do it"],
        [field!, value!],
      ]);
      await expect422(() => client.request({ method: "POST", url: "/expert_jobs", ...bad }), `/${field}`);
    }

    const { job } = await jobInStatus(t.app, tenant, "requestInteractiveToolResult");
    const answer = await formData([
      ["query", "yes"],
      ["interactiveToolCallResult", "true"],
    ]);
    const continued = await client.request({ method: "POST", url: `/expert_jobs/${job.id}/continue`, ...answer });
    expect(continued.statusCode, continued.body).toBe(200);
    expect(continued.json().data.expertJob.interactiveToolCallResult).toBe(true);
  });

  it("converts query strings: integers in JSON syntax only, and no arrays for single values", async () => {
    const job = await startJob(t.app, tenant);
    expect((await client.get("/expert_jobs?take=2&skip=0")).json().meta).toMatchObject({ take: 2, skip: 0 });
    for (const query of ["take=0x1", "take=%201", "take=1.0e", "skip=", "take=1&take=2", "status=queued&status=failed"]) {
      const response = await client.get(`/expert_jobs?${query}`);
      expect(response.statusCode, query).toBe(422);
    }
    const stream = await client.get(`/expert_jobs/${job.id}/checkpoints/stream?after=0x1`);
    expect(stream.statusCode).toBe(422);
    expect(stream.json().reason[0].path).toBe("/after");
    const list = await client.get(`/expert_jobs/${job.id}/checkpoints?take=0x10`);
    expect(list.statusCode).toBe(422);
  });
});
