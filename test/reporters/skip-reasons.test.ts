import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const root = path.resolve(import.meta.dirname, "../..");

describe("npm test's output", () => {
  it("lists each skipped test with its reason, after the summary of the default reporter", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["node_modules/vitest/vitest.mjs", "run", "--config", "test/reporters/fixture/vitest.config.ts"],
      { cwd: root, env: { ...process.env, NO_COLOR: "1", CI: "1" }, timeout: 60_000 },
    );
    const summary = stdout.indexOf("Tests ");
    const list = stdout.indexOf("Skipped (2), and why:");
    expect(summary, stdout).toBeGreaterThan(-1);
    expect(list, stdout).toBeGreaterThan(summary);
    expect(stdout).toContain("↓ skips.fixture.ts > a suite > needs a thing this machine lacks (skipped: reason given in the name)");
    expect(stdout).toContain("↓ skips.fixture.ts > a suite > decides at run time — reason given as the skip note");
  });
});
