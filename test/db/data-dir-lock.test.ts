import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { StartupError } from "../../src/errors.ts";
import { lockDataDir } from "../../src/db/data-dir-lock.ts";
import { startTestApp, type TestDatabase } from "../helpers/app.ts";
import { api, seedTenant, startJob } from "../helpers/fixtures.ts";
import { startServerProcess, startupRefusal, type ServerStore } from "../reliability/helpers/server-process.ts";

/** The pid of a process that has exited (so no process runs with it, until the system reuses it). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ["-e", ""], { stdio: "ignore" });
  await new Promise((resolve) => child.once("exit", resolve));
  return child.pid!;
}

/** A PGlite DATA_DIR on disk, whichever database the suite runs on: the lock guards PGlite's files only. */
async function pgliteStore(): Promise<ServerStore & { dataDir: string }> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "ej-lock-"));
  return { dataDir, env: { DATA_DIR: dataDir }, query: async () => [], drop: () => rm(dataDir, { recursive: true, force: true }) };
}

describe("one process per PGlite folder (DATA_DIR)", () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it("a second app on the same folder refuses to start, naming the folder and the holder; the first keeps serving", async () => {
    const store = await pgliteStore();
    cleanups.push(store.drop);
    const folder = path.join(store.dataDir, "pglite");
    const db: TestDatabase = { database: { kind: "pglite", dataDir: folder }, drop: async () => {} };
    const first = await startTestApp({ db });
    cleanups.push(() => first.close());
    const tenant = await seedTenant(first.app);

    const second = startTestApp({ db });
    await expect(second).rejects.toBeInstanceOf(StartupError);
    await expect(second).rejects.toThrow(`The PGlite folder ${folder} (DATA_DIR) is in use by process ${process.pid}`);

    const job = await startJob(first.app, tenant);
    expect((await api(first.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).statusCode).toBe(200);
    expect(JSON.parse(await readFile(`${folder}.lock`, "utf8")).pid).toBe(process.pid);
    // A fresh PGlite folder runs initdb and every migration: seconds, more on a busy machine.
  }, 120_000);

  it("takes over a lock whose process is gone, or one left by an earlier process with this pid; releases it on close", async () => {
    const store = await pgliteStore();
    cleanups.push(store.drop);
    const folder = path.join(store.dataDir, "pglite");
    for (const stale of [{ pid: await deadPid(), startedAt: 1 }, { pid: process.pid, startedAt: 1 }, "half-written {"]) {
      await writeFile(`${folder}.lock`, typeof stale === "string" ? stale : JSON.stringify(stale));
      const lock = await lockDataDir(folder);
      expect(JSON.parse(await readFile(lock.path, "utf8")).pid).toBe(process.pid);
      await expect(lockDataDir(folder)).rejects.toThrow(/in use by process/);
      await lock.release();
      await expect(readFile(lock.path)).rejects.toMatchObject({ code: "ENOENT" });
    }
  });

  it("of many processes racing for a stale lock, exactly one gets it", async () => {
    const store = await pgliteStore();
    cleanups.push(store.drop);
    const folder = path.join(store.dataDir, "pglite");
    await writeFile(`${folder}.lock`, JSON.stringify({ pid: await deadPid(), startedAt: 1 }));
    const script = `
      const { lockDataDir } = await import(${JSON.stringify(path.resolve("src/db/data-dir-lock.ts"))});
      try { await lockDataDir(${JSON.stringify(folder)}); console.log("locked"); await new Promise((r) => setTimeout(r, 3000)); }
      catch (error) { console.log("refused"); }`;
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, async () => {
        const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
          stdio: ["ignore", "pipe", "inherit"],
        });
        let output = "";
        child.stdout!.on("data", (chunk) => (output += chunk));
        await new Promise((resolve) => child.once("exit", resolve));
        return output.trim();
      }),
    );
    expect(outcomes.sort()).toEqual(["locked", "refused", "refused", "refused", "refused", "refused"]);
  }, 60_000);

  it("a second server process exits with one line naming the folder and the first's pid; the first keeps serving and keeps its data", async () => {
    const store = await pgliteStore();
    cleanups.push(store.drop);
    const first = await startServerProcess(store);
    cleanups.push(async () => {
      first.child.kill("SIGKILL");
      await first.exited;
    });
    const headers = { authorization: `Bearer ${first.bootstrap!.clientKey}` };

    const refusal = await startupRefusal(store);
    expect(refusal.code).toBe(1);
    expect(refusal.output).toHaveLength(1);
    expect(refusal.output[0]).toContain(
      `The PGlite folder ${path.join(store.dataDir, "pglite")} (DATA_DIR) is in use by process ${first.child.pid}`,
    );

    expect((await fetch(`${first.url}/api/studio/v1/expert_jobs`, { headers })).status).toBe(200);
    // Killed: its lock stays behind, and the next start takes it over.
    first.child.kill("SIGKILL");
    await first.exited;
    const next = await startServerProcess(store);
    cleanups.push(async () => {
      next.child.kill("SIGTERM");
      await next.exited;
    });
    expect((await fetch(`${next.url}/api/studio/v1/expert_jobs`, { headers })).status).toBe(200);
  }, 120_000);
});
