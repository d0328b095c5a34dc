import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";

/** CPU time (user + system) of a process in ms, from /proc/<pid>/stat (clock ticks of 10 ms). */
export function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0; // the process has exited
  }
}

/**
 * CPU time of a process in nanoseconds: the sum of its threads' run time (/proc/<pid>/task/<tid>/schedstat),
 * precise enough for one request, where /proc/<pid>/stat counts 10 ms ticks. Threads that have exited
 * are not counted (Node's threads live as long as the process).
 */
export function processCpuNs(pid: number): number {
  try {
    let total = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // the thread exited meanwhile
      }
    }
    return total;
  } catch {
    return 0; // the process has exited
  }
}

/** Busy and total jiffies of the whole machine (/proc/stat), for the share of CPU in use over a run. */
function machineTicks(): { busy: number; total: number } {
  const [, ...values] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const numbers = values.map(Number);
  const idle = numbers[3]! + (numbers[4] ?? 0);
  const total = numbers.reduce((sum, value) => sum + value, 0);
  return { busy: total - idle, total };
}

export interface CpuSample {
  serverMs: number;
  postgresMs: number;
  benchMs: number;
  machineBusy: number;
  machineTotal: number;
}

/**
 * Where the CPU of a run went: the server process, the Postgres backends connected to the bench database
 * (the other engineers' databases are not counted), this bench process, and the machine as a whole.
 */
export class CpuMeter {
  constructor(
    private readonly url: string,
    /** The server process, or several (their CPU is added up). */
    private readonly serverPid: () => number | number[] | undefined,
  ) {}

  async #backendPids(): Promise<number[]> {
    const client = new pg.Client({ connectionString: this.url });
    client.on("error", () => {});
    await client.connect();
    try {
      const { rows } = await client.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      return rows.map((row) => row.pid);
    } finally {
      await client.end();
    }
  }

  async start(): Promise<() => Promise<CpuSample>> {
    const before = await this.#read();
    return async () => {
      const after = await this.#read(before.pids);
      let postgresMs = 0;
      for (const [pid, ms] of after.backends) if (ms > 0) postgresMs += ms - (before.backends.get(pid) ?? 0);
      return {
        serverMs: after.server - before.server,
        postgresMs,
        benchMs: after.bench - before.bench,
        machineBusy: after.machine.busy - before.machine.busy,
        machineTotal: after.machine.total - before.machine.total,
      };
    };
  }

  async #read(extraPids: number[] = []) {
    const pids = [...new Set([...(await this.#backendPids()), ...extraPids])];
    const servers = this.serverPid();
    const usage = process.cpuUsage();
    return {
      pids,
      backends: new Map(pids.map((pid) => [pid, processCpuMs(pid)])),
      server: [servers ?? []].flat().reduce((sum, pid) => sum + processCpuMs(pid), 0),
      bench: (usage.user + usage.system) / 1000,
      machine: machineTicks(),
    };
  }
}

export function perOperation(sample: CpuSample, operations: number) {
  const round = (value: number) => Math.round((value / operations) * 100) / 100;
  return {
    serverMs: round(sample.serverMs),
    postgresMs: round(sample.postgresMs),
    benchMs: round(sample.benchMs),
    /** Share of the machine's CPU in use during the run (all processes, the other engineers' included). */
    machineBusyShare: Math.round((sample.machineBusy / Math.max(1, sample.machineTotal)) * 100) / 100,
  };
}
