import { spawn, type ChildProcess } from "node:child_process";
import { openSync, closeSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { nowMs } from "./stats.ts";

export interface ServerOptions {
  env: Record<string, string>;
  /** Server output (pino JSON lines) goes here, not through a pipe the bench would have to drain. */
  logFile: string;
  /** Open files the server may have: raised in the spawning shell, never in the server's defaults. */
  openFiles?: number;
  /** Writes a V8 CPU profile of the server to this directory when it exits. */
  cpuProfileDir?: string;
  /** The script to run instead of the server (the floor server: bench/floor-server.ts). */
  entry?: string;
}

export interface RunningServer {
  url: string;
  pid: number;
  /** Milliseconds from spawn to the first 200 from /readyz. */
  readyMs: number;
  /** The server process's resident set size, in KiB (VmRSS). */
  rssKiB(): number;
  /** CPU time (user + system) the server process has used so far, in ms: per-request cost that load on the machine hardly moves. */
  cpuMs(): number;
  /** The open-files limit the server actually got. */
  openFilesLimit(): number;
  stop(): Promise<void>;
}

/**
 * Shell that raises the soft open-files limit to `limit` (never lowers it), or to the hard limit when
 * `limit` is above it and the user may not raise that.
 */
export function raiseOpenFiles(limit: number): string {
  return `current=$(ulimit -n); [ "$current" = unlimited ] || [ "$current" -ge ${limit} ] || ulimit -n ${limit} 2>/dev/null || ulimit -n "$(ulimit -Hn)"`;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the server the way README says (`node --import tsx src/server.ts`, what `npm start` runs, but
 * without tsx's extra wrapper process so the pid is the server's) and waits for /readyz.
 */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const port = await freePort();
  const log = openSync(options.logFile, "a");
  const nodeArgs = [
    ...(options.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`] : []),
    "--import",
    "tsx",
    options.entry ?? "src/server.ts",
  ];
  const limit = options.openFiles ?? 0;
  const script = `${limit ? `${raiseOpenFiles(limit)}; ` : ""}exec node ${nodeArgs.join(" ")}`;
  const started = nowMs();
  const child: ChildProcess = spawn("sh", ["-c", script], {
    env: { ...process.env, ...options.env, PORT: String(port), HOST: "127.0.0.1" },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  let exited: number | null | undefined;
  const exit = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      exited = code;
      resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited !== undefined) throw new Error(`server exited with ${exited} before it was ready; see ${options.logFile}`);
    try {
      const response = await fetch(`${url}/readyz`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server not ready within 120 s; see ${options.logFile}`);
    }
    await sleep(10);
  }
  const readyMs = nowMs() - started;
  const pid = child.pid!;
  return {
    url,
    pid,
    readyMs,
    rssKiB: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]),
    cpuMs: () => {
      // /proc/<pid>/stat: fields 14 and 15 (after the parenthesised command) are utime and stime in clock ticks (100 Hz).
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return (Number(fields[11]) + Number(fields[12])) * 10;
    },
    openFilesLimit: () => Number(/Max open files\s+(\d+)/.exec(readFileSync(`/proc/${pid}/limits`, "utf8"))![1]),
    async stop() {
      if (exited !== undefined) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exit;
      clearTimeout(timer);
    },
  };
}

/**
 * Peaks of the server's memory while something runs: its RSS (every `intervalMs`) and, when `heldBytes`
 * is given, what the stream hub says it holds (expert_jobs_stream_held_bytes, scraped less often).
 */
export function watchMemory(server: RunningServer, heldBytes?: () => Promise<number>, intervalMs = 100) {
  let rssMaxKiB = server.rssKiB();
  let heldMaxBytes = 0;
  let ticks = 0;
  let scraping = false;
  const timer = setInterval(() => {
    try {
      rssMaxKiB = Math.max(rssMaxKiB, server.rssKiB());
    } catch {
      // the server exited
    }
    if (heldBytes && !scraping && ticks++ % 5 === 0) {
      scraping = true;
      heldBytes()
        .then((bytes) => (heldMaxBytes = Math.max(heldMaxBytes, bytes)))
        .catch(() => {})
        .finally(() => (scraping = false));
    }
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return { rssMaxKiB, rssEndKiB: server.rssKiB(), ...(heldBytes && { heldMaxBytes }) };
    },
  };
}
