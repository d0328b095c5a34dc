/**
 * Where a V8 CPU profile (`node --cpu-prof`, e.g. from `npm run bench -- --profile`) spends its time:
 * self time by function and by package, and inclusive time of the functions that matter most.
 *
 *   node --import tsx bench/profile-summary.ts bench/results/profiles/<file>.cpuprofile [--top 40]
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { top: { type: "string", default: "40" }, callers: { type: "string" } },
});
const profile = JSON.parse(await readFile(positionals[0]!, "utf8")) as Profile;
const top = Number(values.top);

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const selfUs = new Map<number, number>();
profile.samples.forEach((id, index) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
const totalUs = profile.endTime - profile.startTime;

const where = (node: ProfileNode) => {
  const url = node.callFrame.url.replace(/^file:\/\//, "").replace(process.cwd() + "/", "");
  return `${node.callFrame.functionName || "(anonymous)"} ${url ? `${url}:${node.callFrame.lineNumber + 1}` : ""}`.trim();
};
const packageOf = (node: ProfileNode) => {
  const url = node.callFrame.url;
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (match) return match[1]!;
  if (url.startsWith("node:")) return "node:internal";
  if (url.includes("/src/")) return `src/${url.split("/src/")[1]!.split("/").slice(0, -1).join("/") || "."}`;
  if (!url) return node.callFrame.functionName.startsWith("(") ? node.callFrame.functionName : "(native)";
  return url;
};

const selfByFunction = new Map<string, number>();
const selfByPackage = new Map<string, number>();
const inclusive = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id)!;
  selfByFunction.set(where(node), (selfByFunction.get(where(node)) ?? 0) + us);
  selfByPackage.set(packageOf(node), (selfByPackage.get(packageOf(node)) ?? 0) + us);
  // Inclusive: credit every distinct frame on the stack once.
  const seen = new Set<string>();
  for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
    const key = where(byId.get(current)!);
    if (seen.has(key)) continue;
    seen.add(key);
    inclusive.set(key, (inclusive.get(key) ?? 0) + us);
  }
}

const print = (title: string, entries: Map<string, number>, count: number) => {
  console.log(`\n## ${title}`);
  for (const [name, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    console.log(`${((us / totalUs) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};
console.log(`profile: ${(totalUs / 1e6).toFixed(1)} s`);
print("self time by package", selfByPackage, 25);
print("self time by function", selfByFunction, top);
print("inclusive time (src/ only)", new Map([...inclusive].filter(([name]) => name.includes("src/"))), top);

// `--callers <function name>`: the heaviest stacks that end in that function.
const callersOf = process.argv.indexOf("--callers");
if (callersOf !== -1) {
  const name = process.argv[callersOf + 1]!;
  const stacks = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (byId.get(id)!.callFrame.functionName !== name) continue;
    const frames: string[] = [];
    for (let current = parent.get(id); current !== undefined && frames.length < 8; current = parent.get(current))
      frames.push(where(byId.get(current)!));
    const key = frames.join("\n      ← ");
    stacks.set(key, (stacks.get(key) ?? 0) + us);
  }
  console.log(`\n## stacks ending in ${name}`);
  for (const [stack, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, 6))
    console.log(`${(us / 1000).toFixed(0).padStart(7)} ms  ${stack}\n`);
}
