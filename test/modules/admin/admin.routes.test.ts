import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "../../helpers/app.ts";
import { api } from "../../helpers/fixtures.ts";

const ID = /^[a-z0-9]{24}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UNKNOWN_ID = "zzzzzzzzzzzzzzzzzzzzzzzz";
const unauthorized = { code: 401, error: "Unauthorized", reason: "Failed to authenticate" };
const issues = expect.arrayContaining([{ path: expect.any(String), message: expect.any(String) }]);

type Method = "GET" | "POST" | "PUT" | "DELETE";

/** `token: null` sends no Authorization header. */
function admin(app: FastifyInstance, token: string | null = ADMIN_TOKEN) {
  const send = (method: Method, url: string, body?: unknown) =>
    app.inject({
      method,
      url: `/api/admin/v1${url}`,
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
      ...(body !== undefined && { payload: body as object }),
    });
  return {
    post: (url: string, body?: unknown) => send("POST", url, body),
    put: (url: string, body?: unknown) => send("PUT", url, body),
    delete: (url: string) => send("DELETE", url),
    send,
  };
}

const uniqueName = (prefix: string) => `${prefix}-${createId().slice(0, 10)}`;

function ok<T = any>(response: LightMyRequestResponse): T {
  expect(response.statusCode, response.body).toBe(200);
  return response.json().data;
}

async function createOrganization(app: FastifyInstance, name = uniqueName("org")) {
  return ok(await admin(app).post("/organizations", { name })).organization;
}

async function createApplication(app: FastifyInstance, organizationId: string, name = uniqueName("app")) {
  return ok(await admin(app).post(`/organizations/${organizationId}/applications`, { name })).application;
}

async function createApiKey(app: FastifyInstance, applicationId: string, scope: "client" | "runtime" = "client") {
  return ok(await admin(app).post(`/applications/${applicationId}/api_keys`, { scope })).apiKey;
}

async function registerExpert(
  app: FastifyInstance,
  organizationId: string,
  body: { name: string; version: string; description?: string; tags?: string[] },
) {
  return ok(await admin(app).post(`/organizations/${organizationId}/experts`, { description: "Helps", ...body })).expert;
}

async function putProviderKey(app: FastifyInstance, applicationId: string, provider: string, key: string) {
  return admin(app).put(`/applications/${applicationId}/provider_keys/${provider}`, { key });
}

/** An organization with one application, a client key and an anthropic provider key. */
async function tenant(app: FastifyInstance) {
  const organization = await createOrganization(app);
  const application = await createApplication(app, organization.id);
  const apiKey = await createApiKey(app, application.id);
  expect((await putProviderKey(app, application.id, "anthropic", "sk-ant-test")).statusCode).toBe(200);
  return { organizationId: organization.id as string, applicationId: application.id as string, key: apiKey.key as string };
}

const startJob = (app: FastifyInstance, key: string, expertKey: string) =>
  api(app, key).post("/expert_jobs", { expertKey, query: "Do it" });

async function resolvedVersion(app: FastifyInstance, key: string, expertKey: string): Promise<string> {
  return ok(await startJob(app, key, expertKey)).expertJob.expert.version;
}

async function tagsByVersion(app: FastifyInstance, organizationId: string, name: string): Promise<Record<string, string[]>> {
  const rows = await app.prisma.expert.findMany({ where: { organizationId, name }, select: { version: true, tags: true } });
  return Object.fromEntries(rows.map((row) => [row.version, [...row.tags].sort()]));
}

describe("admin API", () => {
  let t: TestApp;
  let app: FastifyInstance;
  let org: { id: string };
  let application: { id: string };
  let apiKeyId: string;
  beforeAll(async () => {
    t = await startTestApp();
    app = t.app;
    org = await createOrganization(app);
    application = await createApplication(app, org.id);
    apiKeyId = (await createApiKey(app, application.id)).id;
  });
  afterAll(async () => t.close());

  const endpoints = (): Array<[Method, string, unknown]> => [
    ["GET", "/organizations", undefined],
    ["GET", `/organizations/${org.id}/applications`, undefined],
    ["GET", `/organizations/${org.id}/experts`, undefined],
    ["GET", `/applications/${application.id}/api_keys`, undefined],
    ["GET", `/applications/${application.id}/provider_keys`, undefined],
    ["POST", "/organizations", { name: uniqueName("org") }],
    ["POST", `/organizations/${org.id}/applications`, { name: uniqueName("app") }],
    ["POST", `/applications/${application.id}/api_keys`, { scope: "client" }],
    ["DELETE", `/api_keys/${apiKeyId}`, undefined],
    ["POST", `/organizations/${org.id}/experts`, { name: "x", version: "1.0.0", description: "d" }],
    ["PUT", `/applications/${application.id}/provider_keys/openai`, { key: "sk" }],
    ["DELETE", `/applications/${application.id}/provider_keys/openai`, undefined],
  ];

  describe("authentication", () => {
    it("answers 401 on every endpoint without an Authorization header", async () => {
      for (const [method, url, body] of endpoints()) {
        const response = await admin(app, null).send(method, url, body);
        expect([method, url, response.statusCode]).toEqual([method, url, 401]);
        expect(response.json()).toEqual(unauthorized);
      }
    });

    it("answers 401 on every endpoint with a wrong ADMIN_TOKEN", async () => {
      for (const [method, url, body] of endpoints()) {
        const response = await admin(app, `${ADMIN_TOKEN}x`).send(method, url, body);
        expect([method, url, response.statusCode]).toEqual([method, url, 401]);
        expect(response.json()).toEqual(unauthorized);
      }
      expect(await app.prisma.apiKey.count({ where: { id: apiKeyId, revokedAt: { not: null } } })).toBe(0);
    });

    it("answers 401 to a studio API key used as the admin token", async () => {
      const { key } = await tenant(app);
      const response = await admin(app, key).post("/organizations", { name: uniqueName("org") });
      expect(response.statusCode).toBe(401);
      expect(response.json()).toEqual(unauthorized);
    });

    it("answers 401, not 422, to a bad path id without a token", async () => {
      const response = await admin(app, null).delete("/api_keys/NOT-AN-ID");
      expect(response.statusCode).toBe(401);
    });

    it("answers 404 everywhere when the app is built without an ADMIN_TOKEN", async () => {
      const disabled = await startTestApp({ config: { adminToken: undefined } });
      try {
        for (const token of [ADMIN_TOKEN, null]) {
          const response = await admin(disabled.app, token).post("/organizations", { name: "acme" });
          expect(response.statusCode).toBe(404);
          expect(response.json()).toMatchObject({ code: 404, error: "Not Found", reason: expect.any(String) });
        }
        expect(await disabled.app.prisma.organization.count()).toBe(0);
      } finally {
        await disabled.close();
      }
    });
  });

  describe("POST /organizations", () => {
    it("creates an organization", async () => {
      const name = uniqueName("acme");
      const response = await admin(app).post("/organizations", { name });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({
        data: { organization: { id: expect.stringMatching(ID), name, createdAt: expect.stringMatching(ISO) } },
      });
    });

    it("answers 409 to a duplicate name", async () => {
      const { name } = await createOrganization(app);
      const response = await admin(app).post("/organizations", { name });
      expect(response.statusCode).toBe(409);
      expect(response.json()).toEqual({ code: 409, error: "Conflict", reason: "An organization with this name already exists" });
    });

    it("answers 422 with a reason list to a missing name", async () => {
      const response = await admin(app).post("/organizations", {});
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: [{ path: "/name", message: expect.any(String) }] });
    });

    it.each([
      ["an empty name", ""],
      ["a name with spaces and capitals", "Acme Inc"],
    ])("answers 422 to %s", async (_label, name) => {
      const response = await admin(app).post("/organizations", { name });
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
      expect(response.json().reason[0].path).toBe("/name");
    });

    it("answers 422 to a JSON array body", async () => {
      const response = await admin(app).post("/organizations", [{ name: "acme" }]);
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
    });

    it("answers 422 to an empty JSON body", async () => {
      const response = await app.inject({
        method: "POST",
        url: "/api/admin/v1/organizations",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      });
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
    });

    it("answers 400 to malformed JSON", async () => {
      const response = await app.inject({
        method: "POST",
        url: "/api/admin/v1/organizations",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        payload: '{"name":',
      });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Malformed JSON body" });
    });

    it("answers 415 to an XML body", async () => {
      const response = await app.inject({
        method: "POST",
        url: "/api/admin/v1/organizations",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/xml" },
        payload: "<name>acme</name>",
      });
      expect(response.statusCode).toBe(415);
      expect(response.json()).toMatchObject({ code: 415, error: "Unsupported Media Type", reason: expect.any(String) });
    });
  });

  describe("POST /organizations/:organizationId/applications", () => {
    it("creates an application", async () => {
      const name = uniqueName("web");
      const response = await admin(app).post(`/organizations/${org.id}/applications`, { name });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({
        data: { application: { id: expect.stringMatching(ID), organizationId: org.id, name, createdAt: expect.stringMatching(ISO) } },
      });
    });

    it("answers 409 to a duplicate name in the same organization, not in another", async () => {
      const { name } = await createApplication(app, org.id);
      const duplicate = await admin(app).post(`/organizations/${org.id}/applications`, { name });
      expect(duplicate.statusCode).toBe(409);
      expect(duplicate.json()).toEqual({
        code: 409,
        error: "Conflict",
        reason: "An application with this name already exists in the organization",
      });
      const other = await createOrganization(app);
      expect((await admin(app).post(`/organizations/${other.id}/applications`, { name })).statusCode).toBe(200);
    });

    it("answers 404 to an unknown organization", async () => {
      const response = await admin(app).post(`/organizations/${UNKNOWN_ID}/applications`, { name: "web" });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Organization not found" });
    });

    it.each([
      ["a short id", "abc"],
      ["an id with capitals", "ZZZZZZZZZZZZZZZZZZZZZZZZ"],
      ["an id of 25 characters", `${UNKNOWN_ID}z`],
    ])("answers 422, not 404, to %s", async (_label, id) => {
      const response = await admin(app).post(`/organizations/${id}/applications`, { name: "web" });
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({
        code: 422,
        error: "Validation Failed",
        reason: [{ path: "/organizationId", message: expect.any(String) }],
      });
    });

    it("answers 422 to a missing name", async () => {
      const response = await admin(app).post(`/organizations/${org.id}/applications`, {});
      expect(response.statusCode).toBe(422);
      expect(response.json().reason).toEqual([{ path: "/name", message: expect.any(String) }]);
    });
  });

  describe("POST /applications/:applicationId/api_keys", () => {
    it.each(["client", "runtime"] as const)("creates a %s key that authenticates at once", async (scope) => {
      const response = await admin(app).post(`/applications/${application.id}/api_keys`, { scope, name: "ci" });
      expect(response.statusCode).toBe(200);
      const { apiKey } = response.json().data;
      expect(apiKey).toEqual({
        id: expect.stringMatching(ID),
        applicationId: application.id,
        scope,
        name: "ci",
        key: expect.stringMatching(/^ejk_[a-z0-9]{24}_[A-Za-z0-9_-]{43}$/),
        createdAt: expect.stringMatching(ISO),
      });
      expect(apiKey.key).toContain(apiKey.id);
      expect((await api(app, apiKey.key).get("/expert_jobs")).statusCode).toBe(200);
    });

    it("creates a key without a name and leaves name out", async () => {
      const apiKey = await createApiKey(app, application.id);
      expect(apiKey).not.toHaveProperty("name");
    });

    it("answers 404 to an unknown application", async () => {
      const response = await admin(app).post(`/applications/${UNKNOWN_ID}/api_keys`, { scope: "client" });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Application not found" });
    });

    it.each([
      ["an unknown scope", { scope: "admin" }, "/scope"],
      ["a missing scope", {}, "/scope"],
      ["an empty name", { scope: "client", name: "" }, "/name"],
    ])("answers 422 to %s", async (_label, body, path) => {
      const response = await admin(app).post(`/applications/${application.id}/api_keys`, body);
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
      expect(response.json().reason.map((issue: { path: string }) => issue.path)).toContain(path);
    });

    it("answers 422 to a bad application id", async () => {
      const response = await admin(app).post("/applications/not-an-id/api_keys", { scope: "client" });
      expect(response.statusCode).toBe(422);
      expect(response.json().reason).toEqual([{ path: "/applicationId", message: expect.any(String) }]);
    });
  });

  describe("DELETE /api_keys/:apiKeyId", () => {
    it("revokes a key so its very next request is 401, and leaves the application's other keys working", async () => {
      const doomed = await createApiKey(app, application.id, "runtime");
      const kept = await createApiKey(app, application.id);
      expect((await api(app, doomed.key).get("/expert_jobs")).statusCode).toBe(200);

      const response = await admin(app).delete(`/api_keys/${doomed.id}`);
      expect(response.statusCode).toBe(204);
      expect(response.body).toBe("");

      const after = await api(app, doomed.key).get("/expert_jobs");
      expect(after.statusCode).toBe(401);
      expect(after.json()).toEqual(unauthorized);
      expect((await api(app, kept.key).get("/expert_jobs")).statusCode).toBe(200);
    });

    it("answers 204 again to revoking a revoked key", async () => {
      const { id } = await createApiKey(app, application.id);
      expect((await admin(app).delete(`/api_keys/${id}`)).statusCode).toBe(204);
      expect((await admin(app).delete(`/api_keys/${id}`)).statusCode).toBe(204);
    });

    it("answers 404 to an unknown key", async () => {
      const response = await admin(app).delete(`/api_keys/${UNKNOWN_ID}`);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "API key not found" });
    });

    it("answers 422 to a bad key id", async () => {
      const response = await admin(app).delete("/api_keys/ejk_abc");
      expect(response.statusCode).toBe(422);
      expect(response.json().reason).toEqual([{ path: "/apiKeyId", message: expect.any(String) }]);
    });
  });

  describe("POST /organizations/:organizationId/experts", () => {
    it("registers an expert and answers its digest", async () => {
      const owner = await createOrganization(app);
      const response = await admin(app).post(`/organizations/${owner.id}/experts`, {
        name: "@acme/writer",
        version: "1.2.3",
        description: "Writes",
      });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({
        data: {
          expert: {
            type: "expertDigest",
            id: expect.stringMatching(ID),
            key: "@acme/writer@1.2.3",
            name: "@acme/writer",
            minRuntimeVersion: "v1.0",
            description: "Writes",
            owner: { name: owner.name, organizationId: owner.id, createdAt: owner.createdAt },
            createdAt: expect.stringMatching(ISO),
            updatedAt: expect.stringMatching(ISO),
            version: "1.2.3",
            tags: ["latest"],
          },
        },
      });
    });

    it("answers 409 to a version registered twice", async () => {
      await registerExpert(app, org.id, { name: "twice", version: "1.0.0" });
      const response = await admin(app).post(`/organizations/${org.id}/experts`, { name: "twice", version: "1.0.0", description: "d" });
      expect(response.statusCode).toBe(409);
      expect(response.json()).toEqual({ code: 409, error: "Conflict", reason: "This expert version already exists" });
      expect(await tagsByVersion(app, org.id, "twice")).toEqual({ "1.0.0": ["latest"] });
    });

    it("answers 404 to an unknown organization", async () => {
      const response = await admin(app).post(`/organizations/${UNKNOWN_ID}/experts`, { name: "x", version: "1.0.0", description: "d" });
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Organization not found" });
    });

    it.each([
      ["a version that is not semver", { name: "x", version: "1.0" }, "/version"],
      ["a version with a v prefix", { name: "x", version: "v1.0.0" }, "/version"],
      ["a name with capitals", { name: "Writer", version: "1.0.0" }, "/name"],
      ["a name with an @version suffix", { name: "writer@1.0.0", version: "1.0.0" }, "/name"],
      ["a missing description", { name: "x", version: "1.0.0", description: undefined }, "/description"],
      ["a tag with spaces", { name: "x", version: "1.0.0", tags: ["release candidate"] }, "/tags/0"],
    ])("answers 422 to %s", async (_label, body, path) => {
      const response = await admin(app).post(`/organizations/${org.id}/experts`, { description: "d", ...body });
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
      expect(response.json().reason.map((issue: { path: string }) => issue.path)).toContain(path);
    });

    describe("tags", () => {
      it("gives `latest` to the first version", async () => {
        expect((await registerExpert(app, org.id, { name: "first", version: "0.1.0" })).tags).toEqual(["latest"]);
      });

      it("moves `latest` to a higher version, by semver precedence rather than string order", async () => {
        await registerExpert(app, org.id, { name: "climber", version: "1.9.0" });
        expect((await registerExpert(app, org.id, { name: "climber", version: "1.10.0" })).tags).toEqual(["latest"]);
        expect(await tagsByVersion(app, org.id, "climber")).toEqual({ "1.9.0": [], "1.10.0": ["latest"] });
      });

      it("moves `latest` up to numbers of 2^53 - 1, and refuses larger ones (422, as npm does)", async () => {
        await registerExpert(app, org.id, { name: "huge", version: "9007199254740990.0.0" });
        expect((await registerExpert(app, org.id, { name: "huge", version: "9007199254740991.0.0" })).tags).toEqual(["latest"]);
        const tooLarge = await admin(app).post(`/organizations/${org.id}/experts`, {
          name: "huge",
          version: "9007199254740993.0.0",
          description: "Too large",
        });
        expect(tooLarge.statusCode).toBe(422);
        expect(tooLarge.json().reason).toEqual([{ path: "/version", message: "must be a semver version with numbers up to 2^53 - 1" }]);
      });

      it("orders pre-releases and ignores build metadata, by semver precedence", async () => {
        for (const version of ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1"]) {
          expect((await registerExpert(app, org.id, { name: "prerelease", version })).tags, version).toEqual(["latest"]);
        }
        expect((await registerExpert(app, org.id, { name: "prerelease", version: "1.0.0+build.5" })).tags).toEqual(["latest"]);
        expect((await registerExpert(app, org.id, { name: "prerelease", version: "1.0.0-rc.2" })).tags).toEqual([]);
      });

      it("does not give `latest` to a lower version registered later", async () => {
        await registerExpert(app, org.id, { name: "backport", version: "2.0.0" });
        expect((await registerExpert(app, org.id, { name: "backport", version: "1.5.0" })).tags).toEqual([]);
        expect((await registerExpert(app, org.id, { name: "backport", version: "2.0.0-rc.1" })).tags).toEqual([]);
        expect(await tagsByVersion(app, org.id, "backport")).toEqual({ "2.0.0": ["latest"], "1.5.0": [], "2.0.0-rc.1": [] });
      });

      it("moves explicit tags, and only those, to the new version", async () => {
        await registerExpert(app, org.id, { name: "tagged", version: "1.0.0", tags: ["latest", "stable"] });
        await registerExpert(app, org.id, { name: "tagged", version: "2.0.0", tags: ["beta"] });
        expect(await tagsByVersion(app, org.id, "tagged")).toEqual({ "1.0.0": ["latest", "stable"], "2.0.0": ["beta"] });

        await registerExpert(app, org.id, { name: "tagged", version: "0.9.0", tags: ["latest", "beta"] });
        expect(await tagsByVersion(app, org.id, "tagged")).toEqual({ "0.9.0": ["beta", "latest"], "1.0.0": ["stable"], "2.0.0": [] });
      });

      it("leaves `latest` on exactly the highest version when versions are registered concurrently", async () => {
        const versions = ["1.0.0", "1.1.0", "2.0.0", "1.2.0", "0.9.0"];
        await Promise.all(versions.map((version) => registerExpert(app, org.id, { name: "racer", version })));
        const tags = await tagsByVersion(app, org.id, "racer");
        expect(Object.entries(tags).filter(([, versionTags]) => versionTags.includes("latest"))).toEqual([["2.0.0", ["latest"]]]);
      });

      it("keeps one copy of a tag listed twice", async () => {
        expect((await registerExpert(app, org.id, { name: "dupe", version: "1.0.0", tags: ["stable", "stable"] })).tags).toEqual([
          "stable",
        ]);
      });
    });

    describe("resolving expert keys when starting a job", () => {
      let owner: Awaited<ReturnType<typeof tenant>>;
      beforeAll(async () => {
        owner = await tenant(app);
        await registerExpert(app, owner.organizationId, { name: "@acme/resolver", version: "1.0.0" });
        await registerExpert(app, owner.organizationId, { name: "@acme/resolver", version: "2.0.0" });
        await registerExpert(app, owner.organizationId, { name: "@acme/resolver", version: "1.1.0", tags: ["stable"] });
      });

      it.each([
        ["a bare name", "@acme/resolver", "2.0.0"],
        ["name@version", "@acme/resolver@1.0.0", "1.0.0"],
        ["name@latest", "@acme/resolver@latest", "2.0.0"],
        ["name@tag", "@acme/resolver@stable", "1.1.0"],
      ])("resolves %s", async (_label, expertKey, version) => {
        const job = ok(await startJob(app, owner.key, expertKey)).expertJob;
        expect(job.expertKey).toBe(expertKey);
        expect(job.expert).toMatchObject({ name: "@acme/resolver", version, key: `@acme/resolver@${version}` });
      });

      it("follows `latest` to a version registered after the first job", async () => {
        await registerExpert(app, owner.organizationId, { name: "@acme/mover", version: "1.0.0" });
        expect(await resolvedVersion(app, owner.key, "@acme/mover")).toBe("1.0.0");
        await registerExpert(app, owner.organizationId, { name: "@acme/mover", version: "1.0.1" });
        expect(await resolvedVersion(app, owner.key, "@acme/mover")).toBe("1.0.1");
      });

      it.each([
        ["an unknown name", "@acme/nobody"],
        ["an unknown version", "@acme/resolver@3.0.0"],
        ["an unknown tag", "@acme/resolver@nightly"],
      ])("answers 400 Expert not found to %s", async (_label, expertKey) => {
        const response = await startJob(app, owner.key, expertKey);
        expect(response.statusCode).toBe(400);
        expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Expert not found" });
      });

      it("answers 400 Expert not found to another organization's expert", async () => {
        const stranger = await tenant(app);
        const response = await startJob(app, stranger.key, "@acme/resolver@1.0.0");
        expect(response.statusCode).toBe(400);
        expect(response.json().reason).toBe("Expert not found");
      });
    });
  });

  describe("provider keys", () => {
    const secret = () => `sk-live-${createId()}${createId()}`;
    const path = (applicationId: string, provider = "anthropic") => `/applications/${applicationId}/provider_keys/${provider}`;

    it("stores a key and answers its metadata without the key", async () => {
      const { id } = await createApplication(app, org.id);
      const key = secret();
      const response = await putProviderKey(app, id, "anthropic", key);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({
        data: { providerKey: { provider: "anthropic", createdAt: expect.stringMatching(ISO), updatedAt: expect.stringMatching(ISO) } },
      });
      expect(response.body).not.toContain(key);
      expect(await app.providerKeys.reveal(id, "anthropic")).toBe(key);
    });

    it("replaces a key in place: createdAt stays, updatedAt moves", async () => {
      const { id } = await createApplication(app, org.id);
      const first = ok(await putProviderKey(app, id, "openai", secret())).providerKey;
      await new Promise((resolve) => setTimeout(resolve, 5));
      const replacement = secret();
      const second = ok(await putProviderKey(app, id, "openai", replacement)).providerKey;
      expect(second.createdAt).toBe(first.createdAt);
      expect(Date.parse(second.updatedAt)).toBeGreaterThan(Date.parse(first.updatedAt));
      expect(await app.providerKeys.reveal(id, "openai")).toBe(replacement);
      expect(await app.prisma.providerKey.count({ where: { applicationId: id } })).toBe(1);
    });

    it("keeps no plaintext in the provider_key table", async () => {
      const { id } = await createApplication(app, org.id);
      const key = secret();
      ok(await putProviderKey(app, id, "google", key));
      const rows = await app.prisma.$queryRaw<Array<{ row: string; ciphertext: Uint8Array }>>`
        SELECT row_to_json(p)::text AS row, ciphertext FROM provider_key p WHERE application_id = ${id}`;
      expect(rows).toHaveLength(1);
      const stored = rows[0]!.row + Buffer.from(rows[0]!.ciphertext).toString("latin1");
      expect(stored).toContain(id);
      expect(stored).not.toContain(key);
      expect(stored).not.toContain(Buffer.from(key).toString("hex"));
      expect(stored).not.toContain(Buffer.from(key).toString("base64"));
    });

    it("never returns the key from the admin or studio API", async () => {
      const owner = await tenant(app);
      const key = secret();
      await registerExpert(app, owner.organizationId, { name: "leaky", version: "1.0.0" });
      const responses = [await putProviderKey(app, owner.applicationId, "anthropic", key)];
      const start = await startJob(app, owner.key, "leaky");
      responses.push(start);
      const jobId = start.json().data.expertJob.id;
      const studio = api(app, owner.key);
      responses.push(await studio.get(`/expert_jobs/${jobId}`), await studio.get("/expert_jobs"));
      responses.push(await app.inject({ method: "GET", url: "/openapi.json" }));
      for (const response of responses) {
        expect(response.statusCode).not.toBe(500);
        expect(response.body).not.toContain(key);
        expect(JSON.stringify(response.headers)).not.toContain(key);
      }
    });

    it("is per application: another application of the organization cannot use it", async () => {
      const owner = await tenant(app);
      await registerExpert(app, owner.organizationId, { name: "shared", version: "1.0.0" });
      const sibling = await createApplication(app, owner.organizationId);
      const siblingKey = await createApiKey(app, sibling.id);
      const response = await startJob(app, siblingKey.key, "shared");
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ code: 400, error: "Bad Request", reason: "Provider API key not found" });
      expect((await startJob(app, owner.key, "shared")).statusCode).toBe(200);
    });

    it("deletes a key, after which jobs needing it answer 400 Provider API key not found", async () => {
      const owner = await tenant(app);
      await registerExpert(app, owner.organizationId, { name: "needs-key", version: "1.0.0" });
      const response = await admin(app).delete(path(owner.applicationId));
      expect(response.statusCode).toBe(204);
      expect(response.body).toBe("");
      const start = await startJob(app, owner.key, "needs-key");
      expect(start.statusCode).toBe(400);
      expect(start.json().reason).toBe("Provider API key not found");
    });

    it("answers 404 to deleting a key that is not stored", async () => {
      const { id } = await createApplication(app, org.id);
      const response = await admin(app).delete(path(id, "deepseek"));
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Provider key not found" });
    });

    it.each([
      ["PUT", { key: "sk" }],
      ["DELETE", undefined],
    ] as const)("answers 404 to %s for an unknown application", async (method, body) => {
      const response = await admin(app).send(method, path(UNKNOWN_ID), body);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Application not found" });
    });

    it.each([
      ["an unknown provider", "mistral", { key: "sk" }, "/provider"],
      ["a capitalised provider", "Anthropic", { key: "sk" }, "/provider"],
      ["an empty key", "anthropic", { key: "" }, "/key"],
      ["a missing key", "anthropic", {}, "/key"],
    ])("answers 422 to %s", async (_label, provider, body, issuePath) => {
      const response = await admin(app).put(path(application.id, provider), body);
      expect(response.statusCode).toBe(422);
      expect(response.json()).toEqual({ code: 422, error: "Validation Failed", reason: issues });
      expect(response.json().reason[0].path).toBe(issuePath);
    });

    it("answers 422 to deleting an unknown provider", async () => {
      const response = await admin(app).delete(path(application.id, "mistral"));
      expect(response.statusCode).toBe(422);
      expect(response.json().reason[0].path).toBe("/provider");
    });
  });
});
