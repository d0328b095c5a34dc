import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import semver from "semver";
import { beforeAll, describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");
const readJson = async (file: string) => JSON.parse(await readFile(path.join(root, file), "utf8"));
const run = promisify(execFile);

describe("supported Node.js versions", () => {
  let supported: string;
  beforeAll(async () => {
    supported = (await readJson("package.json")).engines.node;
  });

  it("README, package.json and the client and contract packages promise the same minimum", async () => {
    const readme = await readFile(path.join(root, "README.md"), "utf8");
    const minimum = semver.minVersion(supported)!;
    expect(minimum.version).toBe("20.19.0");
    expect(readme).toContain(`Requires Node.js ${minimum.major}.${minimum.minor}+`);
    expect((await readJson("packages/client/package.json")).engines.node).toBe(supported);
    expect((await readJson("packages/contract/package.json")).engines.node).toBe(supported);
  });

  // npm ci prints an EBADENGINE warning for every installed package whose `engines.node` excludes the
  // running Node: none may exclude the oldest supported one, nor Node 24 (production, and CI's second run).
  it("every package npm ci installs accepts the oldest supported Node.js and Node 24", async () => {
    const lock = (await readJson("package-lock.json")) as { packages: Record<string, { engines?: { node?: string } }> };
    const versions = [semver.minVersion(supported)!.version, "24.0.0"];
    const declaring = Object.entries(lock.packages).filter(([, entry]) => entry.engines?.node !== undefined);
    expect(declaring.length).toBeGreaterThan(50);
    const refusing = declaring.flatMap(([name, entry]) =>
      versions
        .filter((version) => !semver.satisfies(version, entry.engines!.node!))
        .map((version) => `${name} (${entry.engines!.node}) refuses ${version}`),
    );
    expect(refusing).toEqual([]);
  });

  it("npm start runs the version check first", async () => {
    const start: string = (await readJson("package.json")).scripts.start;
    expect(start).toBe("node --import ./src/startup/require-node.mjs --import tsx src/server.ts");
    // On this (supported) Node.js it lets the server through: it exits 0 and prints nothing.
    const passed = await run(process.execPath, ["--import", "./src/startup/require-node.mjs", "-e", "console.log('went on')"], {
      cwd: root,
    });
    expect(passed.stdout).toBe("went on\n");
    expect(passed.stderr).toBe("");
  });

  // A real older Node.js from the npm registry (as CI fetches Node 24); without registry access, skipped.
  const oldNode = "18.20.8";
  it(`on Node.js ${oldNode}, the server exits 1 with one line naming the version it needs (skipped when npx cannot fetch node@${oldNode})`, async (context) => {
    let result: { code: number; stdout: string; stderr: string };
    try {
      await run("npx", ["-y", "-p", `node@${oldNode}`, "node", "--version"], { cwd: root, timeout: 120_000 });
    } catch (error) {
      context.skip(`npx could not fetch node@${oldNode}: ${(error as Error).message.split("\n")[0]}`);
    }
    try {
      const done = await run(
        "npx",
        ["-y", "-p", `node@${oldNode}`, "node", ...(await readJson("package.json")).scripts.start.split(" ").slice(1)],
        {
          cwd: root,
          env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: "0", DATA_DIR: "/nonexistent-never-used" },
          timeout: 120_000,
        },
      );
      result = { code: 0, ...done };
    } catch (error) {
      result = error as { code: number; stdout: string; stderr: string };
    }
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toBe(
      `Cannot start: Node.js ${oldNode} is not supported: the server needs Node.js ${supported} (install a newer Node.js, e.g. the current LTS)`,
    );
  }, 240_000);
});
