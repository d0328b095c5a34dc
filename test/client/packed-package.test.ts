import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { INTERACTIVE_ANSWER, registerTraceExperts, TRACES_DIR, traceLines } from "../helpers/corpus.ts";
import { api, seedTenant, type Tenant } from "../helpers/fixtures.ts";

/*
 * The client as someone outside this repository gets it: `npm pack` of the contract and the client, the
 * tarballs installed into an empty project (their registry dependencies come from npm's cache, or the
 * registry), a plain-Node ESM script that drives a real server over HTTP, and a consumer type-checked
 * with `tsc --strict`.
 */

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "../..");
// npm test's own npm settings (npm_config_local_prefix, npm_package_*) must not leak into the empty project.
const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
const npm = (args: string[], cwd: string) => run("npm", args, { cwd, env: npmEnv, maxBuffer: 64 * 1024 * 1024, timeout: 240_000 });

interface PackedFile {
  filename: string;
  name: string;
  files: Array<{ path: string }>;
}

// What a user of the package writes, in plain JavaScript: start, stream (two checkpoints, stop, resume after
// the last one), continue, cancel and the error types. It prints what it saw as JSON.
const script = `
import { readFile } from "node:fs/promises";
import { createClient, ExpertJobsApiError } from "@expert-jobs/client";
import { CheckpointSchema } from "@expert-jobs/contract";
import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

FormatRegistry.Set("date-time", (value) => !Number.isNaN(Date.parse(value)));
const { BASE_URL, CLIENT_KEY, RUNTIME_KEY, TRACE_FILE, ANSWER } = process.env;
const client = createClient({ baseUrl: BASE_URL, apiKey: CLIENT_KEY });
const runtime = createClient({ baseUrl: BASE_URL, apiKey: RUNTIME_KEY }).runtime;
const lines = (await readFile(TRACE_FILE, "utf8")).split("\\n").filter((line) => line !== "").map((line) => JSON.parse(line));
const caught = async (promise) => promise.then(() => undefined, (error) => error);
const describeError = (error) => ({
  isApiError: error instanceof ExpertJobsApiError,
  name: error.name,
  code: error.code,
  error: error.error,
  reason: error.reason,
  retryable: error.retryable,
  hasRequestId: typeof error.requestId === "string",
});

const job = await client.expertJobs.start({ expertKey: lines[0].checkpoint.expert.key, query: "Deploy the app", maxSteps: 100 });
const claim = await runtime.claim({ waitMs: 0 });
for (const body of lines.slice(0, 4)) await runtime.postCheckpoint(job.id, body);

const firstPart = [];
for await (const event of client.expertJobs.checkpoints.stream(job.id, { exclude: ["messages", "newMessages"] })) {
  firstPart.push(event);
  if (firstPart.length === 2) break;
}
const rest = [];
for await (const event of client.expertJobs.checkpoints.stream(job.id, { after: firstPart.at(-1).id, exclude: "messages" })) rest.push(event);
const checkpoints = [...firstPart, ...rest].filter((event) => event.type === "checkpoint");

const continued = await client.expertJobs.continue(job.id, JSON.parse(ANSWER));
await runtime.claim({ waitMs: 0 });
for (const body of lines.slice(4)) await runtime.postCheckpoint(job.id, body);
const finished = await client.expertJobs.get(job.id);
const page = await client.expertJobs.checkpoints.list(job.id, { take: 100, exclude: ["messages", "toolResult"] });

const second = await client.expertJobs.start({ expertKey: lines[0].checkpoint.expert.key, query: "Another one" });
await runtime.claim({ waitMs: 0 });
const canceling = await client.expertJobs.cancel(second.id);
await runtime.reportStatus(second.id, "canceled");
const cancelStream = [];
for await (const event of client.expertJobs.checkpoints.stream(second.id)) cancelStream.push(event);

console.log(JSON.stringify({
  expertJobId: job.id,
  claimed: claim?.expertJob.id,
  firstPartIds: firstPart.map((event) => event.id),
  restIds: rest.filter((event) => event.type === "checkpoint").map((event) => event.id),
  stopped: rest.at(-1),
  withMessages: checkpoints.filter((event) => event.checkpoint.messages !== undefined).length,
  withNewMessages: firstPart.filter((event) => event.checkpoint.newMessages !== undefined).length,
  matchingContract: checkpoints.filter((event) => Value.Check(CheckpointSchema, event.checkpoint)).length,
  continued: { status: continued.status, query: continued.query, interactiveToolCallResult: continued.interactiveToolCallResult },
  finished: { status: finished.status, totalSteps: finished.totalSteps },
  listed: { total: page.meta.total, ids: page.checkpoints.map((checkpoint) => checkpoint.id), withToolResult: page.checkpoints.filter((checkpoint) => checkpoint.toolResult !== undefined).length },
  canceling: canceling.status,
  cancelStream,
  notFound: describeError(await caught(client.expertJobs.get("a".repeat(24)))),
  invalid: describeError(await caught(client.expertJobs.start({ expertKey: "" }))),
  cannotCancel: describeError(await caught(client.expertJobs.cancel(job.id))),
}));
`;

// What a TypeScript user writes; every @ts-expect-error must be an error, so types that fell back to `any` fail.
const consumer = `
import { createClient, ExpertJobsApiError, type Checkpoint, type ErrorReason, type Exclusion, type ExpertJob, type ExpertJobStatus, type StreamEvent } from "@expert-jobs/client";
import { CheckpointSchema, ExpertJobSchema } from "@expert-jobs/contract";
import type { Static } from "@sinclair/typebox";

const client = createClient({ baseUrl: "http://127.0.0.1:3000", apiKey: process.env.CLIENT_KEY ?? "" });

export async function watch(expertKey: string, signal: AbortSignal): Promise<ExpertJobStatus | undefined> {
  const job: ExpertJob = await client.expertJobs.start({ expertKey, query: "Summarise", maxSteps: 10, files: "notes.md" });
  const exclude: Exclusion[] = ["messages", "toolResult"];
  for await (const event of client.expertJobs.checkpoints.stream(job.id, { signal, exclude, after: 3, retry: { maxRetries: 5 } })) {
    if (event.type === "checkpoint") {
      const checkpoint: Checkpoint = event.checkpoint;
      const sameShape: Static<typeof CheckpointSchema> = checkpoint;
      console.log(event.id, sameShape.action.type, checkpoint.usage.totalTokens.toFixed(0));
    } else {
      return event.status;
    }
  }
  return undefined;
}

export async function answer(expertJobId: string): Promise<Static<typeof ExpertJobSchema>> {
  try {
    return await client.expertJobs.continue(expertJobId, { query: "yes", interactiveToolCallResult: true });
  } catch (error) {
    if (error instanceof ExpertJobsApiError && error.code === 409) {
      const reason: ErrorReason = error.reason;
      console.log(typeof reason === "string" ? reason : reason.map((issue) => issue.path).join(", "), error.retryable);
      return client.expertJobs.cancel(expertJobId);
    }
    throw error;
  }
}

export const onlyStatus = (event: StreamEvent): ExpertJobStatus | undefined => (event.type === "complete" ? event.status : undefined);

// @ts-expect-error: not a part a checkpoint can leave out
client.expertJobs.checkpoints.stream("j", { exclude: "everything" });
// @ts-expect-error: a job needs its expert
client.expertJobs.start({ query: "no expert" });
// @ts-expect-error: not a job status
export const wrong: ExpertJobStatus = "running";
`;

/** A README's TypeScript examples, in order: together they make one module, as a reader would paste them. */
async function typeScriptBlocks(readme: string): Promise<string[]> {
  const text = await readFile(readme, "utf8");
  return [...text.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
}

describe("the packed client in an empty project", () => {
  let t: TestApp;
  let tenant: Tenant;
  let project: string;
  let packed: PackedFile[];
  let registryLookups: string[];

  beforeAll(async () => {
    project = await mkdtemp(path.join(tmpdir(), "expert-jobs-consumer-"));
    // npm pack runs each package's prepack (its build) first.
    const { stdout } = await npm(
      ["pack", "--json", "--workspace", "@expert-jobs/contract", "--workspace", "@expert-jobs/client", "--pack-destination", project],
      root,
    );
    packed = JSON.parse(stdout.slice(stdout.indexOf("[")));
    const rootManifest = JSON.parse(await readFile(path.join(root, "package.json"), "utf8"));
    await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // The contract first, then the client, as the README says: in one command npm would also ask the registry
    // for `@expert-jobs/contract`, which is not published there (and a package of that name elsewhere must not be taken).
    const tarball = (name: string) => path.join(project, packed.find((file) => file.name === name)!.filename);
    const install = (...specs: string[]) =>
      npm(["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel", "http", ...specs], project);
    const installs = [
      await install(tarball("@expert-jobs/contract"), `@types/node@${rootManifest.devDependencies["@types/node"]}`),
      await install(tarball("@expert-jobs/client")),
    ];
    registryLookups = installs.flatMap(({ stderr }) => stderr.split("\n").filter((line) => /fetch GET .*@expert-jobs/i.test(line)));
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    await registerTraceExperts(t.app, tenant);
  }, 360_000);

  afterAll(async () => {
    await t?.close();
    if (project) await rm(project, { recursive: true, force: true });
  });

  it("packs only the build, the manifest and the README, with no path into the server", async () => {
    expect(registryLookups).toEqual([]);
    const manifest = JSON.parse(await readFile(path.join(project, "package-lock.json"), "utf8"));
    expect(manifest.packages["node_modules/@expert-jobs/contract"].resolved).toMatch(/^file:/);
    expect(manifest.packages["node_modules/@expert-jobs/client/node_modules/@expert-jobs/contract"]).toBeUndefined();
    expect(packed.map((tarball) => tarball.name).sort()).toEqual(["@expert-jobs/client", "@expert-jobs/contract"]);
    const client = packed.find((tarball) => tarball.name === "@expert-jobs/client")!;
    expect(client.files.map((file) => file.path)).toEqual(
      expect.arrayContaining(["README.md", "package.json", "dist/index.js", "dist/index.d.ts"]),
    );
    for (const tarball of packed) {
      const outside = tarball.files.filter((file) => !/^(dist\/[\w.-]+\.(js|d\.ts)|package\.json|README\.md)$/.test(file.path));
      expect(outside, tarball.name).toEqual([]);
    }
    const installed = path.join(project, "node_modules/@expert-jobs");
    for (const name of ["client", "contract"]) {
      for (const file of packed.find((tarball) => tarball.name === `@expert-jobs/${name}`)!.files) {
        if (!file.path.endsWith(".js") && !file.path.endsWith(".d.ts")) continue;
        const text = await readFile(path.join(installed, name, file.path), "utf8");
        expect(text, `${name}/${file.path}`).not.toMatch(/["']\.\.\/|\/src\//);
        // Node runs the JavaScript, which must name JavaScript (declarations may keep `.ts`: TypeScript maps them).
        if (file.path.endsWith(".js")) expect(text, `${name}/${file.path}`).not.toMatch(/from "[^"]*\.ts"/);
      }
    }
  });

  it("runs in plain Node: start, stream with exclude and resume, continue, cancel, errors, against a real server", async () => {
    const baseUrl = await t.app.listen({ port: 0, host: "127.0.0.1" });
    await writeFile(path.join(project, "use-client.mjs"), script);
    const { stdout } = await run(process.execPath, ["use-client.mjs"], {
      cwd: project,
      env: {
        PATH: process.env.PATH,
        BASE_URL: baseUrl,
        CLIENT_KEY: tenant.clientKey,
        RUNTIME_KEY: tenant.runtimeKey,
        TRACE_FILE: path.join(TRACES_DIR, "interactive.jsonl"),
        ANSWER: JSON.stringify(INTERACTIVE_ANSWER),
      },
      timeout: 120_000,
    });
    const seen = JSON.parse(stdout);

    expect(seen.claimed).toBe(seen.expertJobId);
    expect(seen.firstPartIds).toEqual([1, 2]);
    expect(seen.restIds).toEqual([3, 4]);
    expect(seen.stopped).toEqual({ type: "complete", status: "requestInteractiveToolResult", expertJobId: seen.expertJobId });
    expect(seen.withMessages).toBe(0);
    expect(seen.withNewMessages).toBe(0);
    expect(seen.matchingContract).toBe(4);
    expect(seen.continued).toEqual({ status: "queued", ...INTERACTIVE_ANSWER });
    expect(seen.canceling).toBe("canceling");
    expect(seen.cancelStream).toEqual([{ type: "complete", status: "canceled", expertJobId: expect.any(String) }]);

    // What the client saw is what the server holds: the whole trace, posted through the client byte for byte.
    const lines = traceLines("interactive");
    const stored = await api(t.app, tenant.clientKey).get(`/expert_jobs/${seen.expertJobId}/checkpoints/?take=100&exclude=messages`);
    const storedIds = stored.json().data.checkpoints.map((checkpoint: { id: string }) => checkpoint.id);
    expect(storedIds).toHaveLength(lines.length);
    expect(seen.listed).toEqual({ total: lines.length, ids: storedIds, withToolResult: 0 });
    expect(seen.finished).toEqual({ status: "completed", totalSteps: JSON.parse(lines.at(-1)!).checkpoint.stepNumber });

    expect(seen.notFound).toEqual({
      isApiError: true,
      name: "ExpertJobsApiError",
      code: 404,
      error: "Not Found",
      reason: "Expert job not found",
      retryable: false,
      hasRequestId: true,
    });
    expect(seen.invalid).toMatchObject({ isApiError: true, code: 422, error: "Validation Failed", retryable: false });
    expect(seen.invalid.reason).toEqual(expect.arrayContaining([expect.objectContaining({ path: "/expertKey" })]));
    expect(seen.cannotCancel).toMatchObject({ isApiError: true, code: 400, error: "Bad Request", retryable: false });
  });

  it("type-checks a consumer and the READMEs' examples under tsc --strict, the packages' declarations included", async () => {
    await writeFile(path.join(project, "consumer.ts"), consumer);
    const examples = ["client", "contract"].map((name) => `readme-${name}.ts`);
    for (const [index, name] of ["client", "contract"].entries()) {
      const blocks = await typeScriptBlocks(path.join(root, "packages", name, "README.md"));
      expect(blocks.length, name).toBeGreaterThan(0);
      await writeFile(path.join(project, examples[index]!), blocks.join("\n"));
    }
    await writeFile(
      path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: { strict: true, target: "es2022", module: "nodenext", types: ["node"], noEmit: true, skipLibCheck: false },
        files: ["consumer.ts", ...examples],
      }),
    );
    const tsc = path.join(root, "node_modules/typescript/bin/tsc");
    const result = await run(process.execPath, [tsc, "-p", project], { cwd: project }).then(
      ({ stdout }) => ({ failed: false, output: stdout }),
      (error: { stdout: string }) => ({ failed: true, output: error.stdout }),
    );
    expect(result.output).toBe("");
    expect(result.failed).toBe(false);

    // The same consumer with one mistake fails: the check is real.
    await writeFile(path.join(project, "consumer.ts"), consumer.replace('"messages", "toolResult"', '"messages", "toolResults"'));
    const broken = await run(process.execPath, [tsc, "-p", project], { cwd: project }).then(
      () => "",
      (error: { stdout: string }) => error.stdout,
    );
    expect(broken).toMatch(/consumer\.ts.*"toolResults"/);
  });
});
