import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { EnvSchema } from "../../src/config.ts";

const root = path.resolve(import.meta.dirname, "../..");
const variables = Object.keys(EnvSchema.properties) as Array<keyof typeof EnvSchema.properties>;
const defaultOf = (name: (typeof variables)[number]): string | undefined => {
  const value = (EnvSchema.properties[name] as { default?: unknown }).default;
  return value === undefined ? undefined : String(value);
};

describe("README's configuration table and .env.example", () => {
  it("README lists every variable the server reads, with its default, and no other", async () => {
    const readme = await readFile(path.join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Configuration"), readme.indexOf("\n## ", readme.indexOf("## Configuration") + 1));
    const rows = new Map([...section.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)].map((match) => [match[1]!, match[2]!.trim()]));
    expect([...rows.keys()].sort()).toEqual([...variables].sort());
    for (const name of variables) {
      const documented = rows.get(name)!;
      expect(documented, name).toMatch(defaultOf(name) === undefined ? /^unset/ : new RegExp(`^\`${defaultOf(name)}\``));
    }
  });

  it(".env.example names every variable, with the default as its value (or commented out when unset)", async () => {
    const example = await readFile(path.join(root, ".env.example"), "utf8");
    const set = new Map([...example.matchAll(/^([A-Z_]+)=(.*)$/gm)].map((match) => [match[1]!, match[2]!]));
    const commented = new Set([...example.matchAll(/^# ([A-Z_]+)=/gm)].map((match) => match[1]!));
    for (const name of variables) {
      if (defaultOf(name) === undefined) expect(commented.has(name), `${name} is commented out`).toBe(true);
      else expect(set.get(name), name).toBe(defaultOf(name));
    }
    expect([...set.keys(), ...commented].filter((name) => !variables.includes(name as never))).toEqual([]);
  });
});
