import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { processCpuNs } from "./cpu.ts";
import { raiseOpenFiles } from "./server.ts";
import type { ReplayedStream, WorkerCommand, WorkerReport } from "./sse-worker.ts";

const workerPath = path.join(import.meta.dirname, "sse-worker.ts");

class Worker {
  readonly #child: ChildProcess;
  readonly #waiters = new Set<(report: WorkerReport) => boolean>();
  readonly #arrivals = new Map<number, Extract<WorkerReport, { type: "arrivals" }>>();

  constructor(openFiles: number) {
    // The open-files limit is raised in the spawning shell (up to the hard limit), never in the server.
    this.#child = spawn("sh", ["-c", `${raiseOpenFiles(openFiles)}; exec node --import tsx ${workerPath}`], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    this.#child.on("message", (report: WorkerReport) => {
      if (report.type === "arrivals") this.#arrivals.set(report.seq, report);
      for (const waiter of this.#waiters) if (waiter(report)) this.#waiters.delete(waiter);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  send(command: WorkerCommand) {
    this.#child.send(command);
  }

  next<T extends WorkerReport["type"]>(type: T, timeoutMs: number): Promise<Extract<WorkerReport, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`no ${type} report from the SSE worker within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter = (report: WorkerReport) => {
        if (report.type !== type) return false;
        clearTimeout(timer);
        resolve(report as Extract<WorkerReport, { type: T }>);
        return true;
      };
      this.#waiters.add(waiter);
    });
  }

  async arrivals(seq: number, timeoutMs: number): Promise<Extract<WorkerReport, { type: "arrivals" }>> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#arrivals.has(seq) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    if (!this.#arrivals.has(seq)) {
      this.send({ type: "flush", seq });
      while (!this.#arrivals.has(seq)) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const report = this.#arrivals.get(seq)!;
    this.#arrivals.delete(seq);
    return report;
  }

  async close() {
    const closed = this.next("closed", 10_000).catch(() => undefined);
    this.send({ type: "close" });
    await closed;
    if (this.#child.exitCode === null) await new Promise((resolve) => this.#child.once("exit", resolve));
  }
}

export interface StreamCrowd {
  open: number;
  failed: number;
  errors: string[];
  /** CPU time (ms) the client processes used since they were ready to open the streams (their own start-up left out). */
  clientCpuMs(): number;
  /**
   * Arrival times (monotonic ms) of the whole event `seq` at every open stream; `missing` streams did not
   * get it in time. `eventBytes`: the event's size as it arrived (its `id:` line to its blank line).
   */
  arrivals(seq: number, timeoutMs: number): Promise<{ times: number[]; missing: number; eventBytes?: number }>;
  /** Replay mode: waits until every stream completed or closed (or the timeout), and tells what each one got. */
  replayed(timeoutMs: number): Promise<ReplayedStream[]>;
  close(): Promise<void>;
}

/** Opens `count` SSE streams spread over child processes of at most `perWorker` streams each. */
export async function openStreams(options: {
  port: number;
  path: string;
  /** Streams use these keys in turn. */
  tokens: string[];
  count: number;
  perWorker: number;
  parallel?: number;
  /** `live` (default): arrivals of each event at every stream; `replay`: each stream followed to `complete`. */
  mode?: "live" | "replay";
}): Promise<StreamCrowd> {
  const workerCount = Math.max(1, Math.ceil(options.count / options.perWorker));
  const workers = Array.from({ length: workerCount }, () => new Worker(options.perWorker + 1_000));
  await Promise.all(workers.map((worker) => worker.next("ready", 120_000)));
  const cpuAtStart = workers.map((worker) => processCpuNs(worker.pid!));
  const opened = await Promise.all(
    workers.map((worker, index) => {
      const count = Math.floor(options.count / workerCount) + (index < options.count % workerCount ? 1 : 0);
      const first = Math.floor(options.count / workerCount) * index + Math.min(index, options.count % workerCount);
      const tokens = Array.from({ length: count }, (_, offset) => options.tokens[(first + offset) % options.tokens.length]!);
      const report = worker.next("opened", 300_000);
      worker.send({ type: "open", port: options.port, path: options.path, tokens, parallel: options.parallel ?? 64, mode: options.mode });
      return report;
    }),
  );
  return {
    open: opened.reduce((sum, report) => sum + report.open, 0),
    failed: opened.reduce((sum, report) => sum + report.failed, 0),
    errors: opened.flatMap((report) => report.errors),
    clientCpuMs: () => workers.reduce((sum, worker, index) => sum + (processCpuNs(worker.pid!) - cpuAtStart[index]!) / 1e6, 0),
    async arrivals(seq, timeoutMs) {
      const reports = await Promise.all(workers.map((worker) => worker.arrivals(seq, timeoutMs)));
      return {
        times: reports.flatMap((report) => report.times),
        missing: reports.reduce((sum, report) => sum + report.missing, 0),
        eventBytes: reports.find((report) => report.eventBytes !== undefined)?.eventBytes,
      };
    },
    async replayed(timeoutMs) {
      const reports = await Promise.all(
        workers.map((worker) => {
          const report = worker.next("replayed", timeoutMs + 30_000);
          worker.send({ type: "replayed", timeoutMs });
          return report;
        }),
      );
      return reports.flatMap((report) => report.streams);
    },
    async close() {
      await Promise.all(workers.map((worker) => worker.close()));
    },
  };
}
