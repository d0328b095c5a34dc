import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_TOKEN } from "../../helpers/app.ts";
import { createWorkingFolder } from "../../helpers/working-folder.ts";
import {
  createServerStore,
  seedThroughAdmin,
  startServerProcess,
  type ServerProcess,
  type ServerStore,
} from "../../reliability/helpers/server-process.ts";
import type { Tenant } from "../../helpers/fixtures.ts";

const root = path.resolve(import.meta.dirname, "../../..");
const newKey = () => randomBytes(32).toString("base64");

/** `npm run cli -- secrets rotate` as a process, with the store's database and the two keys only. */
async function rotate(store: ServerStore, cwd: string, keys: { OLD_SECRETS_KEY: string; NEW_SECRETS_KEY: string }) {
  const { SECRETS_KEY: _unused, ...database } = store.env;
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ["--import", "tsx", path.join(root, "src/cli.ts"), "secrets", "rotate"],
      {
        cwd,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...database, ...keys },
        timeout: 60_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    return error as { code: number; stdout: string; stderr: string };
  }
}

async function stop(server: ServerProcess) {
  server.child.kill("SIGTERM");
  await server.exited;
}

describe("npm run cli -- secrets rotate", () => {
  let store: ServerStore;
  let folder: { dir: string; remove(): Promise<void> };
  let tenant: Tenant;
  let webhookSecret: string;
  const oldKey = newKey();
  const nextKey = newKey();

  beforeAll(async () => {
    folder = await createWorkingFolder();
    store = await createServerStore();
    store.env.SECRETS_KEY = oldKey;
    const server = await startServerProcess(store);
    try {
      tenant = await seedThroughAdmin(server);
      const put = await fetch(`${server.url}/api/admin/v1/applications/${tenant.applicationId}/provider_keys/openai`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ key: "sk-openai-secret" }),
      });
      expect(put.status).toBe(200);
      // TEST-NET-3: a public address nothing answers at; no event is sent to it in these tests.
      const hook = await fetch(`${server.url}/api/admin/v1/applications/${tenant.applicationId}/webhook_endpoints`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ url: "https://203.0.113.10/hooks" }),
      });
      expect(hook.status).toBe(200);
      webhookSecret = (await hook.json()).data.webhookEndpoint.secret;
    } finally {
      await stop(server);
    }
  }, 120_000);
  afterAll(async () => {
    await store?.drop();
    await folder?.remove();
  });

  it("re-encrypts every provider key and webhook secret, and a second run finds nothing left to do", async () => {
    const first = await rotate(store, folder.dir, { OLD_SECRETS_KEY: oldKey, NEW_SECRETS_KEY: nextKey });
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({
      data: { providerKeys: { reencrypted: 2, alreadyCurrent: 0 }, webhookEndpoints: { reencrypted: 1, alreadyCurrent: 0 } },
    });
    expect(first.stdout + first.stderr).not.toContain("sk-");
    expect(first.stdout + first.stderr).not.toContain(webhookSecret.slice(6));

    const again = await rotate(store, folder.dir, { OLD_SECRETS_KEY: oldKey, NEW_SECRETS_KEY: nextKey });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({
      data: { providerKeys: { reencrypted: 0, alreadyCurrent: 2 }, webhookEndpoints: { reencrypted: 0, alreadyCurrent: 1 } },
    });
  }, 120_000);

  it("changes nothing when a stored key opens with neither key (the old one no longer does)", async () => {
    const wrong = await rotate(store, folder.dir, { OLD_SECRETS_KEY: oldKey, NEW_SECRETS_KEY: newKey() });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^failed: neither key opens the provider keys of \w+\/anthropic, \w+\/openai: nothing was changed/);
    const unchanged = await rotate(store, folder.dir, { OLD_SECRETS_KEY: oldKey, NEW_SECRETS_KEY: nextKey });
    expect(JSON.parse(unchanged.stdout).data).toEqual({
      providerKeys: { reencrypted: 0, alreadyCurrent: 2 },
      webhookEndpoints: { reencrypted: 0, alreadyCurrent: 1 },
    });
  }, 120_000);

  it("refuses a malformed key before touching the database", async () => {
    const result = await rotate(store, folder.dir, { OLD_SECRETS_KEY: "c2hvcnQ=", NEW_SECRETS_KEY: nextKey });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("OLD_SECRETS_KEY: must be 32 bytes, base64-encoded");
  });

  it("the server started with the new key hands the provider key to a runtime's claim", async () => {
    const server = await startServerProcess({ env: { ...store.env, SECRETS_KEY: nextKey } });
    try {
      const studio = `${server.url}/api/studio/v1/expert_jobs`;
      const started = await fetch(studio, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json" },
        body: JSON.stringify({ expertKey: tenant.expert.key, query: "Do it" }),
      });
      expect(started.status).toBe(200);
      const claim = await fetch(`${studio}/claim`, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.runtimeKey}`, "content-type": "application/json" },
        body: JSON.stringify({ waitMs: 0 }),
      });
      expect(claim.status).toBe(200);
      expect((await claim.json()).data.claim.providerKey).toEqual({ provider: "anthropic", key: "sk-anthropic-secret" });
    } finally {
      await stop(server);
    }
  }, 120_000);
});
