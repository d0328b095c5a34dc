import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { api, checkpointBody, jobInStatus, seedSiblingApplication, seedTenant, startJob, type Tenant } from "../helpers/fixtures.ts";
import { databaseDigest } from "../helpers/database-digest.ts";

/**
 * Tenant isolation, endpoint by endpoint: a key of another application (same organization) or of another
 * organization, client or runtime scope, never sees or changes the owner's jobs and checkpoints. It gets
 * 404 for them (403 first when its scope does not allow the endpoint at all), and the database is
 * byte-for-byte what it was.
 */

interface Owned {
  queued: Record<string, any>;
  processing: Record<string, any>;
  completed: Record<string, any>;
  checkpointId: string;
}

type Scope = "client" | "runtime";

interface Case {
  name: string;
  /** The scope the endpoint needs; a client key on a runtime endpoint gets 403. */
  needs: Scope;
  send(key: string, owned: Owned, owner: Tenant): ReturnType<ReturnType<typeof api>["get"]>;
  /** What a stranger gets when its scope is enough. */
  expect: { status: number; reason?: string };
}

const jobNotFound = { status: 404, reason: "Expert job not found" };

const cases: Case[] = [
  {
    name: "GET /expert_jobs/{id}",
    needs: "client",
    send: (key, o) => api(t().app, key).get(`/expert_jobs/${o.completed.id}`),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/{id}/continue",
    needs: "client",
    send: (key, o) => api(t().app, key).post(`/expert_jobs/${o.completed.id}/continue`, { query: "More" }),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/{id}/resume_from",
    needs: "client",
    send: (key, o) =>
      api(t().app, key).post(`/expert_jobs/${o.completed.id}/resume_from`, { checkpointId: o.checkpointId, query: "Again" }),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/{id}/cancel",
    needs: "client",
    send: (key, o) => api(t().app, key).post(`/expert_jobs/${o.processing.id}/cancel`),
    expect: jobNotFound,
  },
  {
    name: "GET /expert_jobs/{id}/checkpoints/{checkpointId}",
    needs: "client",
    send: (key, o) => api(t().app, key).get(`/expert_jobs/${o.completed.id}/checkpoints/${o.checkpointId}`),
    expect: jobNotFound,
  },
  {
    name: "GET /expert_jobs/{id}/checkpoints",
    needs: "client",
    send: (key, o) => api(t().app, key).get(`/expert_jobs/${o.completed.id}/checkpoints`),
    expect: jobNotFound,
  },
  {
    name: "GET /expert_jobs/{id}/checkpoints/stream",
    needs: "client",
    send: (key, o) => api(t().app, key).get(`/expert_jobs/${o.processing.id}/checkpoints/stream`),
    expect: jobNotFound,
  },
  {
    name: "GET /expert_jobs/{id}/checkpoints/stream?access_token=",
    needs: "client",
    send: (key, o) =>
      t().app.inject({
        method: "GET",
        url: `/api/studio/v1/expert_jobs/${o.processing.id}/checkpoints/stream?access_token=${encodeURIComponent(key)}`,
      }),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/{id}/checkpoints",
    needs: "runtime",
    send: (key, o, owner) =>
      api(t().app, key).post(`/expert_jobs/${o.processing.id}/checkpoints/`, checkpointBody(owner, { stepNumber: 9 })),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/{id} (status report)",
    needs: "runtime",
    send: (key, o) => api(t().app, key).post(`/expert_jobs/${o.processing.id}`, { status: "failed" }),
    expect: jobNotFound,
  },
  {
    name: "POST /expert_jobs/claim (the owner's queued job is not claimable)",
    needs: "runtime",
    send: (key) => api(t().app, key).post("/expert_jobs/claim", { waitMs: 0 }),
    expect: { status: 204 },
  },
];

let current: TestApp;
const t = () => current;

describe("tenant isolation matrix", () => {
  let owner: Tenant;
  let sibling: Tenant;
  let stranger: Tenant;
  let owned: Owned;

  beforeAll(async () => {
    current = await startTestApp();
    owner = await seedTenant(current.app);
    sibling = await seedSiblingApplication(current.app, owner);
    stranger = await seedTenant(current.app);
    const completed = await jobInStatus(current.app, owner, "completed");
    const processing = await jobInStatus(current.app, owner, "processing");
    const queued = await startJob(current.app, owner);
    owned = { queued, processing: processing.job, completed: completed.job, checkpointId: completed.checkpoints[0]!.id };
  });
  afterAll(async () => current?.close());

  const intruders = () =>
    [
      ["another application's client key", sibling.clientKey, "client"],
      ["another application's runtime key", sibling.runtimeKey, "runtime"],
      ["another organization's client key", stranger.clientKey, "client"],
      ["another organization's runtime key", stranger.runtimeKey, "runtime"],
    ] as Array<[string, string, Scope]>;

  it.each(cases.map((c) => [c.name, c] as const))("%s: strangers get 404 (or 403 for scope) and change nothing", async (_name, c) => {
    for (const [label, key, scope] of intruders()) {
      const before = await databaseDigest(current.app);
      const response = await c.send(key, owned, owner);
      const expected = c.needs === "runtime" && scope === "client" ? { status: 403, reason: undefined } : c.expect;
      expect(response.statusCode, `${label}: ${response.body}`).toBe(expected.status);
      if (expected.status >= 400) {
        expect(response.json()).toEqual({
          code: expected.status,
          error: expect.any(String),
          reason: expected.reason ?? expect.any(String),
        });
      }
      expect(await databaseDigest(current.app), label).toEqual(before);
    }
    // The 404 is the key's, not the id's: the owner reads the same resource (reads only: this test changes nothing).
    if (c.name.startsWith("GET") && !c.name.includes("stream")) expect((await c.send(owner.clientKey, owned, owner)).statusCode).toBe(200);
  });

  it("GET /expert_jobs lists only the key's own application's jobs", async () => {
    for (const [label, key] of intruders()) {
      const response = await api(current.app, key).get(`/expert_jobs?take=100&filter=${encodeURIComponent(owner.expert.name)}`);
      expect(response.statusCode, label).toBe(200);
      const ids = response.json().data.expertJobs.map((job: { id: string }) => job.id);
      expect(ids, label).not.toEqual(expect.arrayContaining([owned.queued.id]));
      for (const id of [owned.queued.id, owned.processing.id, owned.completed.id]) expect(ids, label).not.toContain(id);
    }
  });

  it("POST /expert_jobs: another organization cannot start a job on the owner's expert", async () => {
    const before = await databaseDigest(current.app);
    const response = await api(current.app, stranger.clientKey).post("/expert_jobs", { expertKey: owner.expert.key, query: "Mine now" });
    // The stranger's own organization has an expert of the same name, so the key is resolved there, never in the owner's.
    if (response.statusCode === 200) {
      expect(response.json().data.expertJob.applicationId).toBe(stranger.applicationId);
      expect(response.json().data.expertJob.expert.owner.organizationId).toBe(stranger.organizationId);
    } else {
      expect(response.statusCode).toBe(400);
      expect(await databaseDigest(current.app)).toEqual(before);
    }
    const unique = await current.app.admin.registerExpert(owner.organizationId, {
      name: "@owner/private",
      version: "1.0.0",
      description: "Owner only",
    });
    const refused = await api(current.app, stranger.clientKey).post("/expert_jobs", { expertKey: unique.key, query: "Mine now" });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toEqual({ code: 400, error: "Bad Request", reason: "Expert not found" });
  });

  it("a stranger's own job cannot reach the owner's checkpoints by id", async () => {
    const theirs = await jobInStatus(current.app, sibling, "completed");
    const before = await databaseDigest(current.app);
    const read = await api(current.app, sibling.clientKey).get(`/expert_jobs/${theirs.job.id}/checkpoints/${owned.checkpointId}`);
    expect(read.statusCode).toBe(404);
    expect(read.json().reason).toBe("Checkpoint not found");
    const resumed = await api(current.app, sibling.clientKey).post(`/expert_jobs/${theirs.job.id}/resume_from`, {
      checkpointId: owned.checkpointId,
      query: "From theirs",
    });
    expect(resumed.statusCode).toBe(404);
    expect(resumed.json().reason).toBe("Checkpoint not found");
    expect(await databaseDigest(current.app)).toEqual(before);
  });

  it("leaves the owner's jobs exactly as they were", async () => {
    const client = api(current.app, owner.clientKey);
    expect((await client.get(`/expert_jobs/${owned.queued.id}`)).json().data.expertJob.status).toBe("queued");
    expect((await client.get(`/expert_jobs/${owned.completed.id}`)).json().data.expertJob.status).toBe("completed");
    const processing = (await client.get(`/expert_jobs/${owned.processing.id}`)).json().data.expertJob;
    expect(processing.status).toBe("processing");
    expect(processing.totalSteps).toBe(owned.processing.totalSteps);
  });
});
