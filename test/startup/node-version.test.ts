import { readFile } from "node:fs/promises";
import path from "node:path";
import semver from "semver";
import { describe, expect, it } from "vitest";
import { nodeVersionProblem, supportedNode } from "../../src/startup/node-version.ts";

const root = path.resolve(import.meta.dirname, "../..");
const readJson = async (file: string) => JSON.parse(await readFile(path.join(root, file), "utf8"));

describe("supported Node.js versions", () => {
  it("README, package.json and the client package promise the same minimum", async () => {
    const readme = await readFile(path.join(root, "README.md"), "utf8");
    const minimum = semver.minVersion(supportedNode)!;
    expect(minimum.version).toBe("20.19.0");
    expect(readme).toContain(`Requires Node.js ${minimum.major}.${minimum.minor}+`);
    expect((await readJson("packages/client/package.json")).engines.node).toBe(supportedNode);
  });

  // npm ci prints an EBADENGINE warning for every installed package whose `engines.node` excludes the
  // running Node: none may exclude the oldest supported one, nor Node 24 (production, and CI's second run).
  it("every package npm ci installs accepts the oldest supported Node.js and Node 24", async () => {
    const lock = (await readJson("package-lock.json")) as { packages: Record<string, { engines?: { node?: string } }> };
    const versions = [semver.minVersion(supportedNode)!.version, "24.0.0"];
    const declaring = Object.entries(lock.packages).filter(([, entry]) => entry.engines?.node !== undefined);
    expect(declaring.length).toBeGreaterThan(50);
    const refusing = declaring.flatMap(([name, entry]) =>
      versions
        .filter((version) => !semver.satisfies(version, entry.engines!.node!))
        .map((version) => `${name} (${entry.engines!.node}) refuses ${version}`),
    );
    expect(refusing).toEqual([]);
  });

  it("the server refuses an older Node.js in one line that says what it needs", () => {
    expect(nodeVersionProblem("20.19.0")).toBeUndefined();
    expect(nodeVersionProblem("24.11.1")).toBeUndefined();
    const problem = nodeVersionProblem("20.18.3");
    expect(problem).toBe(
      "Node.js 20.18.3 is not supported: the server needs Node.js >=20.19 (install a newer Node.js, e.g. the current LTS).",
    );
    expect(nodeVersionProblem("18.20.4")).toMatch(/^Node\.js 18\.20\.4 is not supported/);
  });
});
