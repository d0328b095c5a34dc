import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "../../helpers/app.ts";

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UNKNOWN_ID = "zzzzzzzzzzzzzzzzzzzzzzzz";

const send = (
  app: FastifyInstance,
  method: "GET" | "POST" | "PUT" | "DELETE",
  url: string,
  body?: object,
  token: string | null = ADMIN_TOKEN,
) =>
  app.inject({
    method,
    url: `/api/admin/v1${url}`,
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
    ...(body !== undefined && { payload: body }),
  });

function ok(response: LightMyRequestResponse) {
  expect(response.statusCode, response.body).toBe(200);
  return response.json();
}

const name = (prefix: string) => `${prefix}-${createId().slice(0, 10)}`;

describe("admin API lists", () => {
  let t: TestApp;
  let app: FastifyInstance;
  const get = (url: string) => send(app, "GET", url);
  beforeAll(async () => {
    t = await startTestApp();
    app = t.app;
  });
  afterAll(async () => t.close());

  describe("GET /organizations", () => {
    let created: Array<{ id: string; name: string; createdAt: string }>;
    beforeAll(async () => {
      created = [];
      for (let index = 0; index < 5; index++)
        created.push(ok(await send(app, "POST", "/organizations", { name: name("org") })).data.organization);
    });

    it("lists them oldest first, ten by default, with the page's total", async () => {
      const page = ok(await get("/organizations"));
      expect(page.meta).toEqual({ total: 5, take: 10, skip: 0 });
      expect(page.data.organizations).toEqual(created);
      for (const organization of page.data.organizations) expect(organization.createdAt).toMatch(ISO);
    });

    it("pages with take and skip, and newest first with order=desc", async () => {
      const seen: string[] = [];
      for (let skip = 0; skip < 6; skip += 2) {
        const page = ok(await get(`/organizations?take=2&skip=${skip}`));
        expect(page.meta).toEqual({ total: 5, take: 2, skip });
        seen.push(...page.data.organizations.map((organization: { id: string }) => organization.id));
      }
      expect(seen).toEqual(created.map((organization) => organization.id));
      const newest = ok(await get("/organizations?order=desc&take=1")).data.organizations;
      expect(newest).toEqual([created.at(-1)]);
    });

    it("answers 422 to paging it cannot serve", async () => {
      for (const query of ["take=0", "take=101", "skip=-1", "order=up", "take=ten"]) {
        expect((await get(`/organizations?${query}`)).statusCode, query).toBe(422);
      }
    });

    it("answers 401 without the admin token", async () => {
      expect((await send(app, "GET", "/organizations", undefined, null)).statusCode).toBe(401);
      expect((await send(app, "GET", "/organizations", undefined, `${ADMIN_TOKEN}x`)).statusCode).toBe(401);
    });
  });

  describe("an organization's applications and experts, an application's keys", () => {
    let organization: { id: string };
    let other: { id: string };
    let application: { id: string };
    let apiKeys: Array<{ id: string; key: string }>;

    beforeAll(async () => {
      organization = ok(await send(app, "POST", "/organizations", { name: name("owner") })).data.organization;
      other = ok(await send(app, "POST", "/organizations", { name: name("other") })).data.organization;
      application = ok(await send(app, "POST", `/organizations/${organization.id}/applications`, { name: "web" })).data.application;
      await send(app, "POST", `/organizations/${organization.id}/applications`, { name: "batch" });
      const otherApplication = ok(await send(app, "POST", `/organizations/${other.id}/applications`, { name: "web" })).data.application;
      apiKeys = [];
      for (const body of [{ scope: "client", name: "laptop" }, { scope: "runtime" }, { scope: "client", name: "old" }]) {
        apiKeys.push(ok(await send(app, "POST", `/applications/${application.id}/api_keys`, body)).data.apiKey);
      }
      await send(app, "POST", `/applications/${otherApplication.id}/api_keys`, { scope: "client" });
      expect((await send(app, "DELETE", `/api_keys/${apiKeys[2]!.id}`)).statusCode).toBe(204);
      for (const version of ["1.0.0", "1.1.0"]) {
        await send(app, "POST", `/organizations/${organization.id}/experts`, { name: "@acme/helper", version, description: "Helps" });
      }
      await send(app, "POST", `/organizations/${other.id}/experts`, { name: "elsewhere", version: "1.0.0", description: "Not theirs" });
      await send(app, "PUT", `/applications/${application.id}/provider_keys/openai`, { key: "sk-openai-plaintext-1" });
      await send(app, "PUT", `/applications/${application.id}/provider_keys/anthropic`, { key: "sk-ant-plaintext-2" });
    });

    it("GET /organizations/{id}/applications lists that organization's only", async () => {
      const page = ok(await get(`/organizations/${organization.id}/applications`));
      expect(page.meta).toEqual({ total: 2, take: 10, skip: 0 });
      expect(page.data.applications.map((entry: { name: string }) => entry.name)).toEqual(["web", "batch"]);
      expect(page.data.applications[0]).toEqual({
        id: application.id,
        organizationId: organization.id,
        name: "web",
        createdAt: expect.stringMatching(ISO),
      });
    });

    it("GET /organizations/{id}/experts lists every version, with its tags", async () => {
      const page = ok(await get(`/organizations/${organization.id}/experts`));
      expect(page.meta.total).toBe(2);
      expect(page.data.experts.map((expert: { key: string; tags: string[] }) => [expert.key, expert.tags])).toEqual([
        ["@acme/helper@1.0.0", []],
        ["@acme/helper@1.1.0", ["latest"]],
      ]);
      expect(page.data.experts[0].owner.organizationId).toBe(organization.id);
    });

    it("GET /applications/{id}/api_keys lists scope, name and dates, revoked ones included, never a secret", async () => {
      const response = await get(`/applications/${application.id}/api_keys`);
      const page = ok(response);
      expect(page.meta).toEqual({ total: 3, take: 10, skip: 0 });
      expect(page.data.apiKeys).toEqual([
        { id: apiKeys[0]!.id, applicationId: application.id, scope: "client", name: "laptop", createdAt: expect.stringMatching(ISO) },
        { id: apiKeys[1]!.id, applicationId: application.id, scope: "runtime", createdAt: expect.stringMatching(ISO) },
        {
          id: apiKeys[2]!.id,
          applicationId: application.id,
          scope: "client",
          name: "old",
          createdAt: expect.stringMatching(ISO),
          revokedAt: expect.stringMatching(ISO),
        },
      ]);
      for (const { key } of apiKeys) expect(response.body).not.toContain(key.slice(-43));
    });

    it("GET /applications/{id}/provider_keys lists provider and dates, never the key", async () => {
      const response = await get(`/applications/${application.id}/provider_keys`);
      const page = ok(response);
      expect(page.meta.total).toBe(2);
      expect(page.data.providerKeys).toEqual([
        { provider: "openai", createdAt: expect.stringMatching(ISO), updatedAt: expect.stringMatching(ISO) },
        { provider: "anthropic", createdAt: expect.stringMatching(ISO), updatedAt: expect.stringMatching(ISO) },
      ]);
      expect(response.body).not.toContain("plaintext");
    });

    it("answers 404 for an unknown organization or application, 422 for a malformed id", async () => {
      for (const url of [`/organizations/${UNKNOWN_ID}/applications`, `/organizations/${UNKNOWN_ID}/experts`]) {
        const response = await get(url);
        expect(response.statusCode, url).toBe(404);
        expect(response.json()).toEqual({ code: 404, error: "Not Found", reason: "Organization not found" });
      }
      for (const url of [`/applications/${UNKNOWN_ID}/api_keys`, `/applications/${UNKNOWN_ID}/provider_keys`]) {
        expect((await get(url)).json()).toEqual({ code: 404, error: "Not Found", reason: "Application not found" });
      }
      expect((await get("/applications/NOT-AN-ID/api_keys")).statusCode).toBe(422);
    });
  });
});
