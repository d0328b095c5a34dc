import { createHash } from "node:crypto";
import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "../helpers/app.ts";
import { api, checkpointBody, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";

const unauthorized = { code: 401, error: "Unauthorized", reason: "Failed to authenticate" };
const UNKNOWN_ID = "zzzzzzzzzzzzzzzzzzzzzzzz";

const listJobs = (app: FastifyInstance, headers: Record<string, string>, query = "") =>
  app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs${query}`, headers });

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** `ejk_<id>_<secret>` split into its parts. */
const keyParts = (key: string) => {
  const [, id, secret] = /^ejk_([a-z0-9]{24})_(.+)$/.exec(key)!;
  return { id: id!, secret: secret! };
};

/** The same key id with another secret of the same shape. */
const withWrongSecret = (key: string) => {
  const { id, secret } = keyParts(key);
  return `ejk_${id}_${secret.startsWith("A") ? "B" : "A"}${secret.slice(1)}`;
};

describe("API key authentication", () => {
  let t: TestApp;
  let app: FastifyInstance;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp();
    app = t.app;
    tenant = await seedTenant(app);
  });
  afterAll(async () => t.close());

  it("admits a valid key", async () => {
    const response = await listJobs(app, bearer(tenant.clientKey));
    expect(response.statusCode).toBe(200);
  });

  it("admits the bearer scheme in any case", async () => {
    expect((await listJobs(app, { authorization: `bearer ${tenant.clientKey}` })).statusCode).toBe(200);
  });

  describe("401 Failed to authenticate", () => {
    it.each<[string, () => Record<string, string>]>([
      ["a missing Authorization header", () => ({})],
      ["an empty Authorization header", () => ({ authorization: "" })],
      ["a key without the Bearer scheme", () => ({ authorization: tenant.clientKey })],
      ["the Basic scheme", () => ({ authorization: `Basic ${Buffer.from(`x:${tenant.clientKey}`).toString("base64")}` })],
      ["Bearer with no key", () => ({ authorization: "Bearer " })],
      ["Bearer with two words", () => ({ authorization: `Bearer ${tenant.clientKey} extra` })],
      ["a key that is not of the ejk_ shape", () => bearer("sk-not-a-key")],
      ["a truncated key", () => bearer(tenant.clientKey.slice(0, -1))],
      ["a well-formed key whose id is unknown", () => bearer(`ejk_${UNKNOWN_ID}_${keyParts(tenant.clientKey).secret}`)],
      ["a known key id with a wrong secret", () => bearer(withWrongSecret(tenant.clientKey))],
      ["the ADMIN_TOKEN", () => bearer(ADMIN_TOKEN)],
    ])("answers 401 to %s", async (_label, headers) => {
      const response = await listJobs(app, headers());
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual(unauthorized);
    });

    it("answers 401 to a revoked key, on its very next request", async () => {
      const apiKey = await app.admin.createApiKey(tenant.applicationId, "client");
      expect((await listJobs(app, bearer(apiKey.key))).statusCode).toBe(200);
      await app.admin.revokeApiKey(apiKey.id);
      const response = await listJobs(app, bearer(apiKey.key));
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual(unauthorized);
    });

    it("answers 401 to ?access_token= on an ordinary endpoint", async () => {
      const response = await listJobs(app, {}, `?access_token=${encodeURIComponent(tenant.clientKey)}`);
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual(unauthorized);
      const post = await app.inject({
        method: "POST",
        url: `/api/studio/v1/expert_jobs?access_token=${encodeURIComponent(tenant.clientKey)}`,
        payload: { expertKey: tenant.expert.key, query: "Do it" },
      });
      expect(post.statusCode).toBe(401);
    });

    it("answers 401, not 422, to a bad path id without a key", async () => {
      const response = await app.inject({ method: "GET", url: "/api/studio/v1/expert_jobs/NOT-AN-ID" });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual(unauthorized);
      expect((await api(app, tenant.clientKey).get("/expert_jobs/NOT-AN-ID")).statusCode).toBe(422);
    });

    it("answers 401, not 404, to an unknown job without a key", async () => {
      const response = await app.inject({ method: "GET", url: `/api/studio/v1/expert_jobs/${UNKNOWN_ID}` });
      expect(response.statusCode).toBe(401);
      expect((await api(app, tenant.clientKey).get(`/expert_jobs/${UNKNOWN_ID}`)).statusCode).toBe(404);
    });

    it("answers 401, not 422, to an invalid body without a key", async () => {
      const response = await app.inject({ method: "POST", url: "/api/studio/v1/expert_jobs", payload: { temperature: "hot" } });
      expect(response.statusCode).toBe(401);
    });
  });

  describe("scopes", () => {
    it.each(["/checkpoints/", "/checkpoints"])("answers 403 to a client key posting to %s", async (suffix) => {
      const job = await startJob(app, tenant);
      const response = await api(app, tenant.clientKey).post(`/expert_jobs/${job.id}${suffix}`, checkpointBody(tenant));
      expect(response.statusCode).toBe(403);
      expect(response.json()).toEqual({ code: 403, error: "Forbidden", reason: expect.any(String) });
      expect(response.json().reason.length).toBeGreaterThan(0);
      expect(await app.prisma.checkpoint.count({ where: { expertJobId: job.id } })).toBe(0);
    });

    it("answers 403, not 422, to a client key posting to a bad job id", async () => {
      const response = await api(app, tenant.clientKey).post("/expert_jobs/NOT-AN-ID/checkpoints/", {});
      expect(response.statusCode).toBe(403);
    });

    it("admits a runtime key to post a checkpoint", async () => {
      const job = await startJob(app, tenant);
      const response = await api(app, tenant.runtimeKey).post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant));
      expect(response.statusCode, response.body).toBe(200);
    });

    it("admits a runtime key to the client endpoints", async () => {
      expect((await listJobs(app, bearer(tenant.runtimeKey))).statusCode).toBe(200);
    });

    it("answers 404, not 403, to another application's job", async () => {
      const job = await startJob(app, tenant);
      const stranger = await seedTenant(app);
      const response = await api(app, stranger.clientKey).get(`/expert_jobs/${job.id}`);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Expert job not found" });
    });
  });

  describe("storage", () => {
    it("stores only a hash of the key's secret", async () => {
      const apiKey = await app.admin.createApiKey(tenant.applicationId, "runtime", "stored");
      const { secret } = keyParts(apiKey.key);
      const rows = await app.prisma.$queryRaw<Array<{ row: string; secret_hash: Uint8Array }>>`
        SELECT row_to_json(k)::text AS row, secret_hash FROM api_key k WHERE id = ${apiKey.id}`;
      expect(rows).toHaveLength(1);
      const { row, secret_hash } = rows[0]!;
      expect(row).toContain(apiKey.id);
      for (const plaintext of [apiKey.key, secret, Buffer.from(secret).toString("hex"), Buffer.from(secret, "base64url").toString("hex")]) {
        expect(row).not.toContain(plaintext);
        expect(Buffer.from(secret_hash).toString("latin1")).not.toContain(plaintext);
      }
      expect(Buffer.from(secret_hash)).toEqual(createHash("sha256").update(secret).digest());
    });
  });
});

describe("logs", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ captureLogs: true });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("never contain an API key, the ADMIN_TOKEN or an Authorization header value", async () => {
    const { app } = t;
    const job = await startJob(app, tenant);
    await listJobs(app, bearer(tenant.clientKey));
    await listJobs(app, bearer(withWrongSecret(tenant.clientKey)));
    await listJobs(app, { authorization: "Bearer not-a-key-but-secret-looking" });
    await listJobs(app, {}, `?access_token=${tenant.clientKey}&take=5`);
    await api(app, tenant.clientKey).post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant));
    await api(app, tenant.runtimeKey).post(`/expert_jobs/${job.id}/checkpoints/`, checkpointBody(tenant));
    await app.inject({
      method: "POST",
      url: "/api/admin/v1/organizations",
      headers: bearer(ADMIN_TOKEN),
      payload: { name: `org-${createId()}` },
    });
    await app.inject({ method: "POST", url: "/api/admin/v1/organizations", headers: bearer(`${ADMIN_TOKEN}-wrong`), payload: {} });

    const text = t.logs.join("\n");
    expect(t.logs.length).toBeGreaterThan(10);
    expect(text).toContain(job.id);
    expect(text).toContain("access_token=[REDACTED]");
    for (const key of [tenant.clientKey, tenant.runtimeKey]) {
      expect(text).not.toContain(key);
      expect(text).not.toContain(keyParts(key).secret);
    }
    expect(text).not.toContain(ADMIN_TOKEN);
    expect(text).not.toContain("not-a-key-but-secret-looking");
    expect(text).not.toMatch(/bearer/i);
  });
});
