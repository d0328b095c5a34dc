import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { StartupError } from "../../../src/errors.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, seedTenant, startJob, type Tenant } from "../../helpers/fixtures.ts";
import { createRestartableDatabase, type RestartableDatabase } from "../../helpers/restartable-database.ts";
import {
  createServerStore,
  seedThroughAdmin,
  startServerProcess,
  startupRefusal,
  type ServerStore,
} from "../../reliability/helpers/server-process.ts";

describe("a SECRETS_KEY that does not match the database", () => {
  let database: RestartableDatabase;
  afterEach(async () => database?.drop());

  it("stops the app from starting, with an error naming SECRETS_KEY; the right key still starts it", async () => {
    database = await createRestartableDatabase();
    const first = await startTestApp({ db: database.db });
    const tenant = await seedTenant(first.app);
    await first.app.close();

    const wrongKey = randomBytes(32);
    const refused = startTestApp({ db: database.reopen(), config: { secretsKey: wrongKey } });
    await expect(refused).rejects.toBeInstanceOf(StartupError);
    await expect(refused).rejects.toThrow(/^SECRETS_KEY does not match/);

    const again = await startTestApp({ db: database.reopen() });
    expect((await api(again.app, tenant.clientKey).get("/expert_jobs")).statusCode).toBe(200);
    await again.app.close();
  });

  it("checks a database written before the check existed against its provider keys, then stores the check", async () => {
    database = await createRestartableDatabase();
    const first = await startTestApp({ db: database.db });
    await seedTenant(first.app);
    await first.app.prisma.secretsKeyCheck.deleteMany();
    await first.app.close();
    await expect(startTestApp({ db: database.reopen(), config: { secretsKey: randomBytes(32) } })).rejects.toThrow(/SECRETS_KEY/);
    const again = await startTestApp({ db: database.reopen() });
    expect(await again.app.prisma.secretsKeyCheck.count()).toBe(1);
    await again.app.close();
  });
});

describe("a claim whose provider key cannot be decrypted", () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await startTestApp({ captureLogs: "error" });
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it("answers 500 and leaves the job queued, unleased: status change and decryption fail together", async () => {
    const jobs = [await startJob(t.app, tenant), await startJob(t.app, tenant)];
    // A row written with another key (or altered): its authentication tag no longer matches.
    await t.app.prisma.providerKey.update({
      where: { applicationId_provider: { applicationId: tenant.applicationId, provider: "anthropic" } },
      data: { authTag: randomBytes(16) },
    });
    for (let attempt = 0; attempt < 3; attempt++) {
      const claim = await api(t.app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs: 0 });
      expect(claim.statusCode).toBe(500);
      expect(claim.body).not.toContain("decrypt");
    }
    const rows = await t.app.prisma.expertJob.findMany({ where: { id: { in: jobs.map((job) => job.id) } } });
    expect(rows.map((row) => [row.status, row.leaseExpiresAt])).toEqual([
      ["queued", null],
      ["queued", null],
    ]);
    expect(t.logs.join("\n")).toContain("cannot be decrypted with this SECRETS_KEY");

    await t.app.providerKeys.put(tenant.applicationId, "anthropic", "sk-anthropic-secret");
    const claim = await api(t.app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs: 0 });
    expect(claim.statusCode).toBe(200);
    expect(claim.json().data.claim.expertJob.id).toBe(jobs[0]!.id);
    expect(claim.json().data.claim.providerKey.key).toBe("sk-anthropic-secret");
  });
});

describe("the server process", () => {
  let store: ServerStore;
  afterAll(async () => store?.drop());

  it("refuses to start with one line naming SECRETS_KEY when the key does not match, and starts with the right one", async () => {
    store = await createServerStore();
    const server = await startServerProcess(store);
    await seedThroughAdmin(server);
    server.child.kill("SIGTERM");
    await server.exited;

    const refusal = await startupRefusal(store, { SECRETS_KEY: randomBytes(32).toString("base64") });
    expect(refusal.code).toBe(1);
    expect(refusal.output).toHaveLength(1);
    expect(refusal.output[0]).toMatch(/^Cannot start: SECRETS_KEY does not match/);

    const again = await startServerProcess(store);
    expect((await fetch(`${again.url}/readyz`)).status).toBe(200);
    again.child.kill("SIGTERM");
    await again.exited;
  }, 120_000);
});
