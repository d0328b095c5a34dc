import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort } from "../helpers/ports.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, usingPostgres } from "../helpers/app.ts";
import { createWorkingFolder } from "../helpers/working-folder.ts";
import { createServerStore, runServerToExit, startServerProcess, type ExitedServer } from "../reliability/helpers/server-process.ts";

const secretsKey = () => randomBytes(32).toString("base64");

/** The server's own line on stderr: exactly one, however the start failed. */
function theOneLine(result: ExitedServer): string {
  const lines = result.stderr.filter((line) => line.startsWith("Cannot start:") || line.startsWith("Invalid configuration:"));
  expect(lines, [...result.stdout, ...result.stderr].join("\n")).toHaveLength(1);
  // Nothing else on stderr: no stack trace.
  expect(result.stderr.filter((line) => /^\s+at /.test(line))).toEqual([]);
  return lines[0]!;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), "ej-start-"));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe("PORT already in use", () => {
  it("exits 1 with one line naming PORT and the address, before creating anything; the next start that serves prints the keys", async () => {
    const occupier = net.createServer();
    await new Promise<void>((resolve) => occupier.listen(0, "127.0.0.1", resolve));
    const { port } = occupier.address() as net.AddressInfo;
    const store = await createServerStore();
    try {
      const failed = await runServerToExit({ ...store.env, PORT: String(port) });
      expect(failed.code).toBe(1);
      expect(theOneLine(failed)).toBe(
        `Cannot start: PORT=${port}: 127.0.0.1:${port} is already in use by another process: stop that process, or set PORT to a free port`,
      );
      expect(failed.stdout.join("\n")).not.toContain("clientKey");
      occupier.close();

      const server = await startServerProcess(store, { PORT: String(port) });
      try {
        expect(server.url).toBe(`http://127.0.0.1:${port}`);
        expect(server.bootstrap?.clientKey).toMatch(/^ejk_/);
        const jobs = await fetch(`${server.url}/api/studio/v1/expert_jobs`, {
          headers: { authorization: `Bearer ${server.bootstrap!.clientKey}` },
        });
        expect(jobs.status).toBe(200);
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
    } finally {
      occupier.close();
      await store.drop();
    }
  }, 120_000);
});

describe("DATA_DIR that cannot hold the data", () => {
  it("under a file: one line, exit 1", async () => {
    const file = path.join(scratch, "a-file");
    await writeFile(file, "not a folder");
    const result = await runServerToExit({ DATA_DIR: path.join(file, "data") });
    expect(result.code).toBe(1);
    expect(theOneLine(result)).toBe(
      `Cannot start: DATA_DIR=${file}/data: ${file} is a file, not a folder (ENOTDIR): set DATA_DIR to a folder`,
    );
  });

  it("in /proc (where Node's recursive mkdir never returns): one line, exit 1", async () => {
    const result = await runServerToExit({ DATA_DIR: "/proc/expert-jobs" }, { timeoutMs: 30_000 });
    expect(result.code).toBe(1);
    expect(theOneLine(result)).toBe(
      "Cannot start: DATA_DIR=/proc/expert-jobs: /proc/expert-jobs cannot be created (ENOENT): set DATA_DIR to a folder on an ordinary file system",
    );
  });

  // root writes through permission bits: there the folder is made immutable instead (EPERM).
  const asRoot = process.getuid?.() === 0;
  const canMakeImmutable = (() => {
    if (!asRoot) return true;
    try {
      execFileSync("chattr", ["--help"], { stdio: "ignore" });
      return true;
    } catch (error) {
      return (error as { status?: number }).status !== undefined;
    }
  })();
  it.skipIf(!canMakeImmutable)(
    `not writable: one line, exit 1${canMakeImmutable ? "" : " (skipped: running as root without chattr, nothing is unwritable)"}`,
    async () => {
      const dir = path.join(scratch, "read-only");
      execFileSync("mkdir", [dir]);
      if (asRoot) execFileSync("chattr", ["+i", dir]);
      else await chmod(dir, 0o555);
      try {
        const result = await runServerToExit({ DATA_DIR: dir });
        expect(result.code).toBe(1);
        expect(theOneLine(result)).toBe(
          asRoot
            ? `Cannot start: DATA_DIR=${dir}: writing to ${dir} is not permitted (EPERM): give the server's user write access, or set DATA_DIR to a folder it can write`
            : `Cannot start: DATA_DIR=${dir}: the server's user may not write to ${dir} (EACCES): give it write access, or set DATA_DIR to a folder it can write`,
        );
      } finally {
        if (asRoot) execFileSync("chattr", ["-i", dir]);
      }
    },
  );
});

describe("DATABASE_URL that does not answer", () => {
  it("refusing connections: retried for DATABASE_CONNECT_TIMEOUT_MS, then one line and exit 1", async () => {
    const port = await freePort();
    const result = await runServerToExit({
      DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/expert_jobs`,
      SECRETS_KEY: secretsKey(),
      DATABASE_CONNECT_TIMEOUT_MS: "2500",
    });
    expect(result.code).toBe(1);
    expect(theOneLine(result)).toBe(
      `Cannot start: DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:${port} within 3 s (ECONNREFUSED): start PostgreSQL, fix the host and port in DATABASE_URL, or raise DATABASE_CONNECT_TIMEOUT_MS`,
    );
    const retries = result.stdout.filter((line) => line.includes("database not reachable yet"));
    expect(retries.length).toBeGreaterThanOrEqual(2);
    expect(retries[0]).toContain(`127.0.0.1:${port}: ECONNREFUSED`);
  });

  it("with DATABASE_CONNECT_TIMEOUT_MS=0: no retry at all", async () => {
    const port = await freePort();
    const result = await runServerToExit({
      DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/expert_jobs`,
      SECRETS_KEY: secretsKey(),
      DATABASE_CONNECT_TIMEOUT_MS: "0",
    });
    expect(result.code).toBe(1);
    expect(theOneLine(result)).toMatch(/^Cannot start: DATABASE_URL: cannot connect to PostgreSQL at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    expect(result.stdout.filter((line) => line.includes("database not reachable yet"))).toEqual([]);
  });
});

describe.skipIf(!usingPostgres())(`DATABASE_URL on a real PostgreSQL${usingPostgres() ? "" : " (skipped: needs DATABASE_URL)"}`, () => {
  it("naming a missing database: one line at once (no retry), exit 1", async () => {
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = "/ej_no_such_database";
    const result = await runServerToExit({ DATABASE_URL: url.toString(), SECRETS_KEY: secretsKey() });
    expect(result.code).toBe(1);
    expect(theOneLine(result)).toBe(
      `Cannot start: DATABASE_URL: database "ej_no_such_database" does not exist on ${url.hostname}:${url.port || 5432}: create it (createdb ej_no_such_database), or fix the database name in DATABASE_URL`,
    );
    expect(result.stdout.filter((line) => line.includes("database not reachable yet"))).toEqual([]);
  });

  it("that comes up after the server started (containers): the server waits for it and serves", async () => {
    const db = await createTestDatabase();
    const target = new URL(db.url!);
    const port = await freePort();
    const proxied = new URL(db.url!);
    proxied.port = String(port);
    proxied.hostname = "127.0.0.1";
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname);
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
    });
    try {
      // The database "starts" once the server has tried it and is retrying.
      let retrying = 0;
      const server = await startServerProcess(
        { env: { DATABASE_URL: proxied.toString(), SECRETS_KEY: secretsKey() } },
        { DATABASE_CONNECT_TIMEOUT_MS: "60000" },
        {
          onLine: (line) => {
            if (line.includes("database not reachable yet") && ++retrying === 2) proxy.listen(port, "127.0.0.1");
          },
        },
      );
      try {
        expect(retrying).toBeGreaterThanOrEqual(2);
        expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
    } finally {
      proxy.close();
      await db.drop();
    }
  }, 120_000);
});

describe(".env in the working folder", () => {
  it("is read, and the real environment wins over it", async () => {
    const folder = await createWorkingFolder();
    const store = await createServerStore();
    try {
      const fromFile = Object.entries({
        ...store.env,
        ADMIN_TOKEN: `from-env-file-${randomBytes(8).toString("hex")}`,
        HOST: "203.0.113.9",
      });
      await writeFile(path.join(folder.dir, ".env"), fromFile.map(([name, value]) => `${name}=${value}`).join("\n") + "\n");
      // No DATA_DIR / DATABASE_URL, SECRETS_KEY or ADMIN_TOKEN in the environment: they come from .env.
      // HOST is set in both: the environment's 127.0.0.1 wins over the file's unreachable address.
      const server = await startServerProcess({ env: {} }, { ADMIN_TOKEN: undefined, HOST: "127.0.0.1" }, { cwd: folder.dir });
      try {
        const token = Object.fromEntries(fromFile).ADMIN_TOKEN;
        const organization = await fetch(`${server.url}/api/admin/v1/organizations`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ name: "from-env-file" }),
        });
        expect(organization.status).toBe(200);
        expect(server.bootstrap?.clientKey).toMatch(/^ejk_/);
        if (!usingPostgres()) expect(existsSync(path.join(store.env.DATA_DIR!, "pglite"))).toBe(true);
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
    } finally {
      await store.drop();
      await folder.remove();
    }
  }, 120_000);
});
