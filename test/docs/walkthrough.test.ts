import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { freePort } from "../helpers/ports.ts";
import { afterAll, describe, expect, it } from "vitest";
import { createWorkingFolder } from "../helpers/working-folder.ts";
import { createServerStore, type ServerStore } from "../reliability/helpers/server-process.ts";

const root = path.resolve(import.meta.dirname, "../..");

/** The walkthrough's shell blocks, in order: terminal 1's first, then terminal 2's. */
async function walkthroughBlocks(): Promise<string[]> {
  const readme = await readFile(path.join(root, "README.md"), "utf8");
  const start = readme.indexOf("### Walkthrough");
  const section = readme.slice(start, readme.indexOf("\n##", start + 1));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!);
}

/** bash in its own process group (so the test can end everything it started), collecting its output. */
function bash(script: string, cwd: string, env: Record<string, string>) {
  const child = spawn("bash", ["-c", script], { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { child, exited, output: () => output };
}

const killGroup = (child: ChildProcess | undefined) => {
  if (child?.pid === undefined) return;
  try {
    process.kill(-child.pid, "SIGTERM");
  } catch {
    // already gone
  }
};

describe("README's walkthrough, from zero to a watched job", () => {
  const started: ChildProcess[] = [];
  let store: ServerStore | undefined;
  let folder: { dir: string; remove(): Promise<void> } | undefined;
  afterAll(async () => {
    for (const child of started) killGroup(child);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await store?.drop();
    await folder?.remove();
  });

  it("runs every command as written, and each does what the text says", async () => {
    const [serverBlock, ...terminal2] = await walkthroughBlocks();
    expect(serverBlock).toContain("npm start");
    expect(terminal2.length).toBeGreaterThanOrEqual(6);

    folder = await createWorkingFolder();
    // The suite's database: PGlite in a fresh DATA_DIR, or a fresh PostgreSQL database (the environment
    // wins over .env, so the walkthrough's own lines are untouched).
    store = await createServerStore();
    const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", PORT: String(await freePort()) };
    const server = bash(serverBlock!, folder.dir, { ...env, ...store.env });
    started.push(server.child);
    const deadline = Date.now() + 90_000;
    while (!server.output().includes("Server ready")) {
      if (Date.now() > deadline) throw new Error(`the server did not start:\n${server.output()}`);
      if (server.child.exitCode !== null) throw new Error(`the server exited:\n${server.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await readFile(path.join(folder.dir, ".env"), "utf8")).toMatch(/^ADMIN_TOKEN=[0-9a-f]{48}\n$/);

    // Terminal 2, as one shell session; any failing command fails the test.
    const session = bash(`set -euo pipefail\n${terminal2.join("\n")}\nwait`, folder.dir, env);
    started.push(session.child);
    const code = await Promise.race([session.exited, new Promise((resolve) => setTimeout(() => resolve("timeout"), 120_000))]);
    const output = session.output();
    expect(code, output).toBe(0);

    const lines = output.split("\n");
    expect(lines).toContain("@acme/helper@1.0.0");
    expect(lines).toContain("anthropic");
    // The first stream: three steps up to the question, then complete.
    const streams = output.split("event: complete\n");
    expect(streams.length, output).toBe(3);
    expect([...streams[0]!.matchAll(/^id: (\d+)$/gm)].map((match) => match[1])).toEqual(["1", "2", "3"]);
    expect(streams[0]).toContain('"status":"stoppedByInteractiveTool"');
    expect(streams[1]).toMatch(/^data: \{"status":"requestInteractiveToolResult","expertJobId":"[a-z0-9]{24}"\}$/m);
    // The continue, then the second stream: the resumed steps after event 3, up to completed.
    expect(streams[1]).toMatch(/^queued$/m);
    expect([...streams[1]!.matchAll(/^id: (\d+)$/gm)].map((match) => match[1])).toEqual(["4", "5", "6"]);
    expect(streams[1]).toContain("Thanks, you said: Blue, please.");
    expect(streams[2]).toMatch(/^data: \{"status":"completed","expertJobId":"[a-z0-9]{24}"\}$/m);
    // The cancel: canceling while the runtime runs it, canceled after its next step.
    const statuses = streams[2]!.split("\n").filter((line) => /^(canceling|canceled|queued|processing)$/.test(line));
    expect(statuses).toEqual(["canceling", "canceled"]);
    // The runtime's log: it stepped through both jobs, STEP_DELAY_MS apart.
    expect(output).toMatch(/job [a-z0-9]{24}: step 3 stoppedByInteractiveTool/);
    expect(output).toMatch(/job [a-z0-9]{24}: step 6 completed/);
  }, 240_000);
});
