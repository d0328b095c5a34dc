import { execFile, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** The newest installed PostgreSQL's bin directory (Debian layout), if any; synchronous so test files can skip at import. */
export function postgresBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  return readdirSync(root)
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => path.join(root, version, "bin"))
    .find((dir) => existsSync(path.join(dir, "initdb")));
}

/** Postgres refuses to run as root: as root, the cluster runs as `postgres`; otherwise as the current user. */
const asPostgres = (): string[] => (process.getuid?.() === 0 ? ["runuser", "-u", "postgres", "--"] : []);

/** A throwaway cluster can be made here: binaries present and a user Postgres accepts to run as. */
export function canRunThrowawayCluster(): boolean {
  if (!postgresBinDir()) return false;
  return process.getuid?.() === 0 ? existsSync("/usr/sbin/runuser") || existsSync("/sbin/runuser") : userInfo().username !== "root";
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface ThrowawayCluster {
  port: number;
  /** postgresql://postgres@127.0.0.1:<port>/postgres */
  url: string;
  start(): Promise<void>;
  /** `fast` shuts down cleanly; `immediate` is a crash (recovery on the next start). */
  stop(mode?: "fast" | "immediate"): Promise<void>;
  destroy(): Promise<void>;
}

/**
 * A private PostgreSQL cluster in a temporary directory on a free port, for tests that stop and
 * restart the database: never the machine's shared server.
 */
export async function createThrowawayCluster(): Promise<ThrowawayCluster> {
  const bin = postgresBinDir();
  if (!bin) throw new Error("no PostgreSQL binaries under /usr/lib/postgresql");
  const dir = await mkdtemp(path.join(tmpdir(), "ej-pg-"));
  if (process.getuid?.() === 0) {
    const { stdout } = await run("id", ["-u", "postgres"]);
    const { stdout: gid } = await run("id", ["-g", "postgres"]);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const data = path.join(dir, "data");
  const pg = async (tool: string, args: string[]) => {
    const [command, ...prefix] = [...asPostgres(), path.join(bin, tool)];
    return run(command!, [...prefix, ...args], { cwd: dir, timeout: 60_000 });
  };
  await pg("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
  const port = await freePort();
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${dir} -c fsync=off -c full_page_writes=off -c max_connections=60`;
  const cluster: ThrowawayCluster = {
    port,
    url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    start: async () => {
      await pg("pg_ctl", ["-D", data, "-l", path.join(dir, "log"), "-o", options, "-w", "-t", "60", "start"]);
    },
    stop: async (mode = "fast") => {
      await pg("pg_ctl", ["-D", data, "-m", mode, "-w", "-t", "60", "stop"]);
    },
    destroy: async () => {
      await pg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  await cluster.start();
  // If the test process dies first, the postmaster must not outlive it.
  const [command, ...prefix] = [...asPostgres(), path.join(bin, "pg_ctl")];
  const onExit = () => void spawnSync(command!, [...prefix, "-D", data, "-m", "immediate", "stop"], { stdio: "ignore" });
  process.once("exit", onExit);
  const destroy = cluster.destroy;
  cluster.destroy = async () => {
    process.off("exit", onExit);
    await destroy();
  };
  return cluster;
}
