import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import type { NotifyBackend } from "../../src/config.ts";
import type { TestDatabase } from "./app.ts";
import { freePort } from "./ports.ts";

/** The NATS the multi-instance tests use (CI starts one there and sets REQUIRE_NATS). */
export const NATS_TEST_URL = process.env.NATS_TEST_URL ?? "nats://127.0.0.1:4222";
export const NATS_SERVER = process.env.NATS_SERVER_PATH ?? "/usr/sbin/nats-server";

function answers(url: string, timeoutMs = 1_000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect({ host: hostname, port: Number(port || 4222) });
    const done = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("data", (data) => done(data.toString().startsWith("INFO")));
    socket.once("error", () => done(false));
  });
}

/** Whether a NATS server answers at NATS_TEST_URL; with REQUIRE_NATS set, a missing one fails instead of skipping. */
export const natsAvailable = await answers(NATS_TEST_URL);
if (!natsAvailable && process.env.REQUIRE_NATS) throw new Error(`REQUIRE_NATS is set but no NATS server answers at ${NATS_TEST_URL}`);
export const natsServerInstalled = existsSync(NATS_SERVER);
if (!natsServerInstalled && process.env.REQUIRE_NATS) throw new Error(`REQUIRE_NATS is set but there is no nats-server at ${NATS_SERVER}`);

/** A subject prefix of the test database's own: test files share one NATS, and keep apart by it. */
const prefixOf = (db: TestDatabase) => (db.url ? new URL(db.url).pathname.slice(1) : "ej_test");

export interface BackendCase {
  name: "postgres" | "nats";
  /** Why the case is skipped, if it is (for the test's name). */
  skip?: string;
  notify(db: TestDatabase): NotifyBackend;
}

/** The notification backends a multi-instance test runs on: PostgreSQL LISTEN/NOTIFY, and NATS when a server answers. */
export const backendCases: BackendCase[] = [
  { name: "postgres", notify: () => ({ kind: "postgres" }) },
  {
    name: "nats",
    ...(!natsAvailable && { skip: `no NATS server at ${NATS_TEST_URL}` }),
    notify: (db) => ({ kind: "nats", servers: [NATS_TEST_URL], subjectPrefix: prefixOf(db) }),
  },
];

/** A private nats-server on a free port, which a test may stop and start again on the same port. */
export class PrivateNats {
  #child: ChildProcess | undefined;

  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateNats> {
    const nats = new PrivateNats(await freePort());
    await nats.start();
    return nats;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const child = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", String(this.port)], { stdio: "ignore" });
    this.#child = child;
    // A test that dies does not leave its server behind.
    const reap = () => child.kill("SIGKILL");
    process.once("exit", reap);
    child.once("exit", () => process.off("exit", reap));
    const deadline = Date.now() + 10_000;
    while (!(await answers(this.url, 200))) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}`);
      if (Date.now() > deadline) throw new Error(`nats-server did not start on port ${this.port}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Kills it (SIGKILL: no goodbye to the clients) and waits until it is gone. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGKILL");
    await exited;
    this.#child = undefined;
  }
}
