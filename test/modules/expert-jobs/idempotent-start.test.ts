import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@expert-jobs/client";
import { reasons } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, formData, seedSiblingApplication, seedTenant, type Tenant } from "../../helpers/fixtures.ts";

// One server (real HTTP) for both parts: the API and the typed client.
let t: TestApp;
let tenant: Tenant;
let baseUrl: string;
beforeAll(async () => {
  t = await startTestApp();
  tenant = await seedTenant(t.app);
  await t.app.listen({ port: 0, host: "127.0.0.1" });
  baseUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
});
afterAll(async () => t.close());

describe("POST /expert_jobs with Idempotency-Key", () => {
  let keyCounter = 0;
  const freshKey = () => `key-${Date.now()}-${++keyCounter}`;
  const body = (query = "Do it") => ({ expertKey: tenant.expert.key, query });
  const start = (key: string | undefined, payload: unknown = body(), who = tenant) =>
    api(t.app, who.clientKey).post("/expert_jobs", payload, key === undefined ? {} : { "idempotency-key": key });
  const jobCount = async (who = tenant) => t.app.prisma.expertJob.count({ where: { applicationId: who.applicationId } });

  it("answers a retry with the same key and body with the same job, and starts no other", async () => {
    const key = freshKey();
    const before = await jobCount();
    const first = await start(key);
    expect(first.statusCode, first.body).toBe(200);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    const retry = await start(key);
    expect(retry.statusCode, retry.body).toBe(200);
    expect(retry.headers["idempotent-replayed"]).toBe("true");
    expect(retry.json().data.expertJob).toEqual(first.json().data.expertJob);
    expect(await jobCount()).toBe(before + 1);
  });

  it("treats the same body with its keys in another order as the same body", async () => {
    const key = freshKey();
    const first = await start(key, { expertKey: tenant.expert.key, query: "Order", maxSteps: 7 });
    const retry = await start(key, { maxSteps: 7, query: "Order", expertKey: tenant.expert.key });
    expect(retry.statusCode).toBe(200);
    expect(retry.json().data.expertJob.id).toBe(first.json().data.expertJob.id);
  });

  it("answers the job as it is now, not as it was when it started", async () => {
    const key = freshKey();
    const first = (await start(key)).json().data.expertJob;
    await api(t.app, tenant.clientKey).post(`/expert_jobs/${first.id}/cancel`);
    const retry = await start(key);
    expect(retry.json().data.expertJob).toMatchObject({ id: first.id, status: "canceled" });
  });

  it("answers 409 in the envelope to the same key with another body, and starts nothing", async () => {
    const key = freshKey();
    await start(key, body("First"));
    const before = await jobCount();
    const other = await start(key, body("Second"));
    expect(other.statusCode).toBe(409);
    expect(other.json()).toEqual({ code: 409, error: "Conflict", reason: reasons.idempotencyKeyReused });
    expect(await jobCount()).toBe(before);
  });

  it("keeps keys per application: another application's start with the same key is its own job", async () => {
    const sibling = await seedSiblingApplication(t.app, tenant);
    const key = freshKey();
    const mine = (await start(key)).json().data.expertJob;
    const theirs = await start(key, body(), sibling);
    expect(theirs.statusCode, theirs.body).toBe(200);
    expect(theirs.headers["idempotent-replayed"]).toBeUndefined();
    expect(theirs.json().data.expertJob.id).not.toBe(mine.id);
    expect(theirs.json().data.expertJob.applicationId).toBe(sibling.applicationId);
    // And another body there is no conflict with this application's body.
    expect((await start(key, body("Else"), sibling)).statusCode).toBe(409);
  });

  it("creates exactly one job for 20 concurrent requests with one key over real HTTP", async () => {
    const key = freshKey();
    const before = await jobCount();
    const responses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${baseUrl}/api/studio/v1/expert_jobs`, {
          method: "POST",
          headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json", "idempotency-key": key },
          body: JSON.stringify(body("Concurrent")),
        }),
      ),
    );
    const answers = await Promise.all(responses.map(async (response) => ({ status: response.status, json: await response.json() })));
    expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
    const ids = new Set(answers.map((answer) => answer.json.data.expertJob.id));
    expect(ids.size).toBe(1);
    expect(responses.filter((response) => response.headers.get("idempotent-replayed") === "true")).toHaveLength(19);
    expect(await jobCount()).toBe(before + 1);
    expect(await t.app.prisma.idempotencyKey.count({ where: { applicationId: tenant.applicationId, key } })).toBe(1);
  });

  it("gives 20 concurrent requests with one key and two bodies one job per body at most, and 409s for the rest", async () => {
    const key = freshKey();
    const before = await jobCount();
    const responses = await Promise.all(Array.from({ length: 20 }, (_, index) => start(key, body(index % 2 === 0 ? "Even" : "Odd"))));
    const statuses = responses.map((response) => response.statusCode);
    expect(statuses.every((status) => status === 200 || status === 409)).toBe(true);
    expect(new Set(responses.filter((response) => response.statusCode === 200).map((r) => r.json().data.expertJob.id)).size).toBe(1);
    expect(statuses.filter((status) => status === 409)).toHaveLength(10);
    expect(await jobCount()).toBe(before + 1);
  });

  it("starts a new job for a key older than 24 hours", async () => {
    const key = freshKey();
    const first = (await start(key)).json().data.expertJob;
    await t.app.prisma.idempotencyKey.update({
      where: { applicationId_key: { applicationId: tenant.applicationId, key } },
      data: { createdAt: new Date(Date.now() - 24 * 60 * 60 * 1000 - 1000) },
    });
    // Another body too: an expired key is free again.
    const later = await start(key, body("A day later"));
    expect(later.statusCode, later.body).toBe(200);
    expect(later.json().data.expertJob.id).not.toBe(first.id);
    expect((await start(key, body("A day later"))).json().data.expertJob.id).toBe(later.json().data.expertJob.id);
  });

  it("the sweeper's cleanup forgets keys past the window and keeps the others", async () => {
    const [old, recent] = [freshKey(), freshKey()];
    await start(old);
    await start(recent);
    await t.app.prisma.idempotencyKey.update({
      where: { applicationId_key: { applicationId: tenant.applicationId, key: old } },
      data: { createdAt: new Date(Date.now() - 25 * 60 * 60 * 1000) },
    });
    expect(await t.app.expertJobs.deleteExpiredIdempotencyKeys()).toBeGreaterThanOrEqual(1);
    const left = await t.app.prisma.idempotencyKey.findMany({ where: { key: { in: [old, recent] } }, select: { key: true } });
    expect(left.map((row) => row.key)).toEqual([recent]);
  });

  it("does not remember a start that failed: the retry after the fix starts the job", async () => {
    const key = freshKey();
    const failed = await start(key, { expertKey: "@acme/missing", query: "x" });
    expect(failed.statusCode).toBe(400);
    const fixed = await start(key, body());
    expect(fixed.statusCode, fixed.body).toBe(200);
    expect(fixed.headers["idempotent-replayed"]).toBeUndefined();
  });

  it("takes the key on multipart/form-data starts too", async () => {
    const key = freshKey();
    const form = await formData([
      ["expertKey", tenant.expert.key],
      ["query", "From a form"],
    ]);
    const send = () => api(t.app, tenant.clientKey).post("/expert_jobs", form.payload, { ...form.headers, "idempotency-key": key });
    const first = await send();
    const retry = await send();
    expect(first.statusCode, first.body).toBe(200);
    expect(retry.json().data.expertJob.id).toBe(first.json().data.expertJob.id);
  });

  it("still starts a job per request without the header", async () => {
    const before = await jobCount();
    await start(undefined);
    await start(undefined);
    expect(await jobCount()).toBe(before + 2);
  });

  const badKeys: Array<[string, string]> = [
    ["empty", ""],
    ["256 characters", "k".repeat(256)],
    ["a space", "two words"],
    ["non-ASCII", "clé"],
    ["a control character", "a\tb"],
  ];
  for (const [what, key] of badKeys) {
    it(`answers 422 in the envelope to a key with ${what}, and starts nothing`, async () => {
      const before = await jobCount();
      const response = await t.app.inject({
        method: "POST",
        url: "/api/studio/v1/expert_jobs",
        // inject sends header values as given (latin1), which is how a raw client would.
        headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json", "idempotency-key": key },
        payload: body(),
      });
      expect(response.statusCode, response.body).toBe(422);
      expect(response.json()).toMatchObject({ code: 422, error: "Validation Failed", reason: [{ path: "/idempotency-key" }] });
      expect(await jobCount()).toBe(before);
    });
  }

  it("accepts a 255-character key of printable ASCII", async () => {
    const key = `${"!~".repeat(127)}${keyCounter++ % 10}`;
    expect(key).toHaveLength(255);
    expect((await start(key)).statusCode).toBe(200);
  });

  it("is documented in OpenAPI: the header, its rules and the 409", async () => {
    const document = t.app.swagger() as any;
    const operation = document.paths["/api/studio/v1/expert_jobs"].post;
    const parameter = operation.parameters.find((p: any) => p.name === "idempotency-key");
    expect(parameter).toMatchObject({ in: "header", required: false, schema: { type: "string", minLength: 1, maxLength: 255 } });
    expect(parameter.description ?? parameter.schema.description).toMatch(/24 hours/);
    expect(operation.responses["409"]).toBeDefined();
  });
});

describe("the typed client's start", () => {
  it("sends an Idempotency-Key and retries a start whose answer was lost without starting a second job", async () => {
    const sent: Array<string | null> = [];
    let lost = 0;
    // The first two answers never reach the client (the connection drops after the server handled the request).
    const flakyFetch: typeof fetch = async (input, init) => {
      sent.push(new Headers(init?.headers).get("idempotency-key"));
      const response = await fetch(input, init);
      if (lost < 2) {
        lost++;
        await response.body?.cancel();
        throw new TypeError("fetch failed");
      }
      return response;
    };
    const client = createClient({ baseUrl, apiKey: tenant.clientKey, fetch: flakyFetch });
    const job = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "Lost answers" });
    expect(sent).toHaveLength(3);
    expect(sent[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(sent).size).toBe(1);
    const jobs = await t.app.prisma.expertJob.findMany({ where: { applicationId: tenant.applicationId, query: "Lost answers" } });
    expect(jobs.map((row) => row.id)).toEqual([job.id]);
  });

  it("uses a fresh key per start, or the one given", async () => {
    const sent: Array<string | null> = [];
    const recordingFetch: typeof fetch = (input, init) => {
      sent.push(new Headers(init?.headers).get("idempotency-key"));
      return fetch(input, init);
    };
    const client = createClient({ baseUrl, apiKey: tenant.clientKey, fetch: recordingFetch });
    const a = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "A" });
    const b = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "A" });
    expect(a.id).not.toBe(b.id);
    const c = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "C" }, { idempotencyKey: "my-own-key" });
    const d = await client.expertJobs.start({ expertKey: tenant.expert.key, query: "C" }, { idempotencyKey: "my-own-key" });
    expect(d.id).toBe(c.id);
    expect(sent[0]).not.toBe(sent[1]);
    expect(sent.slice(2)).toEqual(["my-own-key", "my-own-key"]);
  });

  it("does not retry an error answer the server gave (a 409 is final)", async () => {
    let calls = 0;
    const countingFetch: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const client = createClient({ baseUrl, apiKey: tenant.clientKey, fetch: countingFetch });
    await client.expertJobs.start({ expertKey: tenant.expert.key, query: "One" }, { idempotencyKey: "conflicting-key" });
    calls = 0;
    await expect(
      client.expertJobs.start({ expertKey: tenant.expert.key, query: "Two" }, { idempotencyKey: "conflicting-key" }),
    ).rejects.toMatchObject({ code: 409, reason: reasons.idempotencyKeyReused });
    expect(calls).toBe(1);
  });

  it("gives up after `retries` network errors with the last one", async () => {
    let calls = 0;
    const downFetch: typeof fetch = async () => {
      calls++;
      throw new TypeError("fetch failed");
    };
    const client = createClient({ baseUrl, apiKey: tenant.clientKey, fetch: downFetch });
    await expect(client.expertJobs.start({ expertKey: tenant.expert.key, query: "x" }, { retries: 2 })).rejects.toThrow(TypeError);
    expect(calls).toBe(3);
  });
});
