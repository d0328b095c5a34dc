import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN, startTestApp, type TestApp } from "./helpers/app.ts";
import { jobInStatus, seedTenant } from "./helpers/fixtures.ts";
import { createWorkingFolder } from "./helpers/working-folder.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCli(
  args: string[],
  options: { env?: Record<string, string | undefined>; stdin?: string; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...options.env };
    for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
    const child = spawn(process.execPath, ["--import", "tsx", "src/cli.ts", ...args], { cwd: options.cwd ?? root, env, timeout: 20_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.stdin ?? "");
  });
}

describe("cli", () => {
  let t: TestApp;
  let baseUrl: string;
  let cli: (args: string[], options?: { env?: Record<string, string | undefined>; stdin?: string; cwd?: string }) => Promise<CliResult>;
  /** Runs a command that must succeed and parses its stdout. */
  const cliJson = async (...args: string[]) => {
    const result = await cli(args);
    expect(result, result.stderr).toMatchObject({ code: 0, stderr: "" });
    return JSON.parse(result.stdout).data;
  };
  const studio = (key: string, path: string, init: RequestInit = {}) =>
    fetch(`${baseUrl}/api/studio/v1${path}`, {
      ...init,
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...init.headers },
    });

  let folder: { dir: string; remove(): Promise<void> };

  beforeAll(async () => {
    // A clean working folder: a developer's own .env in the repository must not reach the CLI.
    folder = await createWorkingFolder();
    t = await startTestApp();
    await t.app.listen({ port: 0, host: "127.0.0.1" });
    const address = t.app.server.address();
    if (address === null || typeof address === "string") throw new Error("no TCP address");
    baseUrl = `http://127.0.0.1:${address.port}`;
    cli = (args, options = {}) =>
      runCli(args, { cwd: folder.dir, ...options, env: { EXPERT_JOBS_URL: baseUrl, ADMIN_TOKEN, ...options.env } });
  });
  afterAll(async () => {
    await t.close();
    await folder.remove();
  });

  it("reads ADMIN_TOKEN and EXPERT_JOBS_URL from a .env in the working folder; the environment wins", async () => {
    const withEnvFile = await createWorkingFolder();
    try {
      await writeFile(path.join(withEnvFile.dir, ".env"), `ADMIN_TOKEN=${ADMIN_TOKEN}\nEXPERT_JOBS_URL=http://127.0.0.1:9\n`);
      const fromFile = await cli(["org", "create", `dotenv-${createId().slice(0, 8)}`], {
        cwd: withEnvFile.dir,
        env: { ADMIN_TOKEN: undefined },
      });
      expect(fromFile, fromFile.stderr).toMatchObject({ code: 0 });
      expect(JSON.parse(fromFile.stdout).data.organization.name).toMatch(/^dotenv-/);
    } finally {
      await withEnvFile.remove();
    }
  });

  it("bootstraps an organization, application, key, expert and provider key that start a job", async () => {
    const orgName = `acme-${createId().slice(0, 8)}`;
    const { organization } = await cliJson("org", "create", orgName);
    expect(organization).toMatchObject({ id: expect.any(String), name: orgName });

    const { application } = await cliJson("app", "create", organization.id, "web");
    expect(application).toMatchObject({ organizationId: organization.id, name: "web" });

    const { apiKey } = await cliJson("key", "create", application.id, "client", "laptop");
    expect(apiKey).toMatchObject({ applicationId: application.id, scope: "client", name: "laptop", key: expect.stringMatching(/^ejk_/) });
    expect((await studio(apiKey.key, "/expert_jobs")).status).toBe(200);

    const { expert } = await cliJson(
      "expert",
      "create",
      organization.id,
      "writer",
      "1.0.0",
      "Writes things",
      "--tag",
      "stable",
      "--tag",
      "latest",
    );
    expect(expert).toMatchObject({ key: "writer@1.0.0", description: "Writes things", tags: ["stable", "latest"] });

    const providerSecret = `sk-ant-${createId()}`;
    const set = await cli(["provider-key", "set", application.id, "anthropic", "-"], { stdin: `${providerSecret}\n` });
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).not.toContain(providerSecret);
    expect(JSON.parse(set.stdout).data.providerKey).toMatchObject({ provider: "anthropic" });
    expect(await t.app.providerKeys.reveal(application.id, "anthropic")).toBe(providerSecret);

    const start = await studio(apiKey.key, "/expert_jobs", {
      method: "POST",
      body: JSON.stringify({ expertKey: "writer@stable", query: "Hi" }),
    });
    expect(start.status).toBe(200);
    expect((await start.json()).data.expertJob).toMatchObject({ status: "queued", expertKey: "writer@stable" });
  });

  it("registers, lists and deletes webhook endpoints, and shows and redelivers their deliveries", async () => {
    const tenant = await seedTenant(t.app);
    // TEST-NET-3: public, so allowed without WEBHOOK_ALLOW_PRIVATE; nothing answers there.
    const url = "https://203.0.113.9/hooks";
    const { webhookEndpoint } = await cliJson("webhook", "create", tenant.applicationId, url, "--event", "expert_job.canceled");
    expect(webhookEndpoint).toMatchObject({ url, eventTypes: ["expert_job.canceled"], secret: expect.stringMatching(/^whsec_/) });
    const { secret: _secret, ...listedShape } = webhookEndpoint;
    expect((await cliJson("webhook", "list", tenant.applicationId)).webhookEndpoints).toEqual([listedShape]);

    const { job } = await jobInStatus(t.app, tenant, "canceled");
    const { webhookDeliveries } = await cliJson("webhook", "deliveries", webhookEndpoint.id);
    expect(webhookDeliveries).toMatchObject([{ expertJobId: job.id, eventType: "expert_job.canceled" }]);
    const { webhookDelivery } = await cliJson("webhook", "redeliver", webhookDeliveries[0].id);
    expect(webhookDelivery).toMatchObject({ id: webhookDeliveries[0].id, status: "pending", webhookId: webhookDeliveries[0].webhookId });

    const deleted = await cli(["webhook", "delete", webhookEndpoint.id]);
    expect(deleted).toMatchObject({ code: 0, stdout: "" });
    const again = await cli(["webhook", "delete", webhookEndpoint.id]);
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stderr)).toMatchObject({ code: 404, reason: "Webhook endpoint not found" });
  }, 120_000);

  it("lists organizations, applications, experts, API keys and provider keys as JSON, paged", async () => {
    const organization = (await cliJson("org", "create", `list-${createId().slice(0, 8)}`)).organization;
    const application = (await cliJson("app", "create", organization.id, "web")).application;
    await cliJson("app", "create", organization.id, "batch");
    const laptop = (await cliJson("key", "create", application.id, "client", "laptop")).apiKey;
    await cliJson("key", "create", application.id, "runtime");
    await cliJson("expert", "create", organization.id, "lister", "1.0.0", "Lists");
    await cliJson("provider-key", "set", application.id, "google", "sk-google-listed");

    const organizations = await cli(["org", "list", "--order", "desc", "--take", "1"]);
    expect(JSON.parse(organizations.stdout)).toMatchObject({ data: { organizations: [organization] }, meta: { take: 1, skip: 0 } });
    expect((await cliJson("app", "list", organization.id)).applications.map((entry: { name: string }) => entry.name)).toEqual([
      "web",
      "batch",
    ]);
    expect(
      (await cliJson("app", "list", organization.id, "--skip", "1")).applications.map((entry: { name: string }) => entry.name),
    ).toEqual(["batch"]);
    expect((await cliJson("expert", "list", organization.id)).experts.map((expert: { key: string }) => expert.key)).toEqual([
      "lister@1.0.0",
    ]);
    const keys = await cli(["key", "list", application.id]);
    expect(keys.stdout).not.toContain(laptop.key);
    expect(JSON.parse(keys.stdout).data.apiKeys.map((key: { scope: string; name?: string }) => [key.scope, key.name])).toEqual([
      ["client", "laptop"],
      ["runtime", undefined],
    ]);
    const providerKeys = await cli(["provider-key", "list", application.id]);
    expect(providerKeys.stdout).not.toContain("sk-google-listed");
    expect(JSON.parse(providerKeys.stdout).data.providerKeys).toEqual([
      { provider: "google", createdAt: expect.any(String), updatedAt: expect.any(String) },
    ]);
    const badTake = await cli(["org", "list", "--take", "0"]);
    expect(badTake.code).toBe(1);
    expect(JSON.parse(badTake.stderr)).toMatchObject({ code: 422 });
  }, 120_000);

  it("deletes a stopped job, printing nothing, and refuses a running one with the 409 envelope", async () => {
    const tenant = await seedTenant(t.app);
    const { job } = await jobInStatus(t.app, tenant, "completed");
    expect(await cli(["job", "delete", job.id])).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(await t.app.prisma.expertJob.count({ where: { id: job.id } })).toBe(0);
    const running = (await jobInStatus(t.app, tenant, "processing")).job;
    const refused = await cli(["job", "delete", running.id]);
    expect(refused.code).toBe(1);
    expect(JSON.parse(refused.stderr)).toMatchObject({
      code: 409,
      reason: "Cannot delete a running job (status processing); cancel it first",
    });
  });

  it("revokes a key, printing nothing, after which the key is refused", async () => {
    const organization = (await cliJson("org", "create", `rev-${createId().slice(0, 8)}`)).organization;
    const application = (await cliJson("app", "create", organization.id, "web")).application;
    const { apiKey } = await cliJson("key", "create", application.id, "runtime");
    const revoke = await cli(["key", "revoke", apiKey.id]);
    expect(revoke).toEqual({ code: 0, stdout: "", stderr: "" });
    expect((await studio(apiKey.key, "/expert_jobs")).status).toBe(401);
  });

  it("sets a provider key given inline and deletes it", async () => {
    const organization = (await cliJson("org", "create", `pk-${createId().slice(0, 8)}`)).organization;
    const application = (await cliJson("app", "create", organization.id, "web")).application;
    await cliJson("provider-key", "set", application.id, "openai", "sk-inline");
    expect(await t.app.providerKeys.reveal(application.id, "openai")).toBe("sk-inline");
    expect(await cli(["provider-key", "delete", application.id, "openai"])).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(await t.app.providerKeys.has(application.id, "openai")).toBe(false);
  });

  it("exits 1 with the 409 envelope on stderr for a duplicate organization", async () => {
    const name = `dup-${createId().slice(0, 8)}`;
    await cliJson("org", "create", name);
    const result = await cli(["org", "create", name]);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(JSON.parse(result.stderr)).toEqual({ code: 409, error: "Conflict", reason: "An organization with this name already exists" });
  });

  it("exits 1 with the 422 envelope on stderr for a bad scope", async () => {
    const result = await cli(["key", "create", "zzzzzzzzzzzzzzzzzzzzzzzz", "admin"]);
    expect(result.code).toBe(1);
    const envelope = JSON.parse(result.stderr);
    expect(envelope).toMatchObject({ code: 422, error: "Validation Failed" });
    expect(envelope.reason).toContainEqual({ path: "/scope", message: expect.any(String) });
  });

  it("exits 1 with the 404 envelope on stderr for an unknown application", async () => {
    const result = await cli(["provider-key", "delete", "zzzzzzzzzzzzzzzzzzzzzzzz", "google"]);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stderr)).toEqual({ code: 404, error: "Not Found", reason: "Application not found" });
  });

  it("exits 1 with the 401 envelope on stderr for a wrong ADMIN_TOKEN", async () => {
    const result = await cli(["org", "create", "nope"], { env: { ADMIN_TOKEN: "wrong-token-wrong-token" } });
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stderr)).toEqual({ code: 401, error: "Unauthorized", reason: "Failed to authenticate" });
  });

  it("exits 1 when the server cannot be reached", async () => {
    const result = await cli(["org", "create", "nope"], { env: { EXPERT_JOBS_URL: "http://127.0.0.1:9" } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^request failed: /);
    expect(result.stdout).toBe("");
  });

  it.each([
    ["an unknown command", ["org", "delete", "x"]],
    ["a missing argument", ["app", "create", "zzzzzzzzzzzzzzzzzzzzzzzz"]],
    ["an extra argument", ["key", "revoke", "a", "b"]],
    ["an unknown option", ["org", "create", "acme", "--force"]],
    ["an empty stdin for -", ["provider-key", "set", "zzzzzzzzzzzzzzzzzzzzzzzz", "anthropic", "-"]],
  ])("exits 2 with the usage on stderr for %s", async (_label, args) => {
    const result = await cli(args);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("npm run cli -- help");
  });

  it("exits 2 without ADMIN_TOKEN, before calling the server", async () => {
    const result = await cli(["org", "create", "acme"], { env: { ADMIN_TOKEN: undefined } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("ADMIN_TOKEN is not set");
  });

  it("prints the command list for help", async () => {
    const result = await cli(["help"], { env: { ADMIN_TOKEN: undefined } });
    expect(result.code).toBe(0);
    for (const command of [
      "org create",
      "app create",
      "key create",
      "key revoke",
      "expert create",
      "provider-key set",
      "provider-key delete",
    ]) {
      expect(result.stdout).toContain(command);
    }
  });
});
