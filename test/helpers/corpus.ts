import { readFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import { createId } from "@paralleldrive/cuid2";
import type { FastifyInstance } from "fastify";
import { api, startJob, type Tenant } from "./fixtures.ts";

/*
 * Real-sized data for tests and benchmarks: the checkpoint bodies the public Perstack runtime posted
 * (../shared/fixtures/perstack-runtime-traces, see its README), and generated jobs whose conversations
 * grow the way an agent's do (every checkpoint carries the whole conversation so far).
 */

export const TRACES_DIR = path.resolve(import.meta.dirname, "../../../shared/fixtures/perstack-runtime-traces");

export type TraceName = "long-research" | "delegation" | "interactive" | "exceeded-max-steps";

/** The experts the traces name, as the README's replay table registers them. */
export const TRACE_EXPERTS = [
  { name: "@fixtures/analyst", version: "2.3.0" },
  { name: "@fixtures/coordinator", version: "1.0.0" },
  { name: "@fixtures/summarizer", version: "0.9.1" },
  { name: "@fixtures/assistant", version: "1.1.0" },
] as const;

/** What the interactive trace's job was continued with after its line 4 (its README). */
export const INTERACTIVE_ANSWER = {
  query: "Use the staging profile; production is frozen until January.",
  interactiveToolCallResult: true,
} as const;

const traceCache = new Map<TraceName, string[]>();

/** The trace's lines, byte for byte as the runtime posted them (each one a `{checkpoint, step}` body). */
export function traceLines(name: TraceName): string[] {
  let lines = traceCache.get(name);
  if (!lines) {
    const file = path.join(TRACES_DIR, name === "long-research" ? `${name}.jsonl.gz` : `${name}.jsonl`);
    const raw = readFileSync(file);
    const text = (file.endsWith(".gz") ? gunzipSync(raw) : raw).toString("utf8");
    lines = text.split("\n").filter((line) => line !== "");
    traceCache.set(name, lines);
  }
  return lines;
}

export interface TraceStatus {
  line: number;
  http: number;
  bytes: number;
  stepNumber: number;
  checkpointStatus: string;
  expertKey: string;
}

export function traceStatuses(name: TraceName): TraceStatus[] {
  return JSON.parse(readFileSync(path.join(TRACES_DIR, `${name}.statuses.json`), "utf8")).statuses;
}

/** The job status and step count each trace ends with (README, "Replaying"). */
export const TRACE_END: Record<TraceName, { status: string; steps: number }> = {
  "long-research": { status: "completed", steps: 79 },
  delegation: { status: "completed", steps: 17 },
  interactive: { status: "completed", steps: 9 },
  "exceeded-max-steps": { status: "exceededMaxSteps", steps: 4 },
};

/** Registers the traces' experts in the tenant's organization (once per organization). */
export async function registerTraceExperts(app: FastifyInstance, tenant: Tenant): Promise<void> {
  for (const expert of TRACE_EXPERTS) {
    const known = await app.experts.resolve(tenant.organizationId, `${expert.name}@${expert.version}`);
    if (!known) await app.admin.registerExpert(tenant.organizationId, { ...expert, description: `${expert.name} (trace fixture)` });
  }
}

export interface ReplayOptions {
  /** Only the first `lines` lines (default: all). */
  lines?: number;
  /** Called after each post, e.g. to check a stream as the job runs. */
  afterPost?: (line: number, checkpoint: Record<string, any>) => Promise<void> | void;
}

export interface ReplayedJob {
  expertJobId: string;
  /** The POST answers' checkpoints, in order (they carry everything GET returns). */
  checkpoints: Array<Record<string, any>>;
  /** The posted bodies' sizes in bytes. */
  bodyBytes: number[];
}

/**
 * Replays a trace into a new job, as its README describes: start the job with line 1's expert, POST every
 * line unchanged, and for `interactive` continue with the recorded answer after line 4. Every post must
 * answer 200. The runtime's claim is left out: posts are accepted while a job is queued, and a claim would
 * take the application's oldest queued job, which in a shared test tenant may be another one.
 */
export async function replayTrace(
  app: FastifyInstance,
  tenant: Tenant,
  name: TraceName,
  options: ReplayOptions = {},
): Promise<ReplayedJob> {
  await registerTraceExperts(app, tenant);
  const lines = traceLines(name).slice(0, options.lines);
  const first = JSON.parse(lines[0]!);
  const job = await startJob(app, tenant, {
    expertKey: first.checkpoint.expert.key,
    maxSteps: name === "exceeded-max-steps" ? 3 : Math.max(100, lines.length),
  });
  const runtime = api(app, tenant.runtimeKey);
  const checkpoints: Array<Record<string, any>> = [];
  const bodyBytes: number[] = [];
  for (const [index, line] of lines.entries()) {
    if (name === "interactive" && index === 4) {
      const continued = await api(app, tenant.clientKey).post(`/expert_jobs/${job.id}/continue`, INTERACTIVE_ANSWER);
      if (continued.statusCode !== 200) throw new Error(`continue failed: ${continued.statusCode} ${continued.body}`);
    }
    const response = await runtime.request({
      method: "POST",
      url: `/expert_jobs/${job.id}/checkpoints/`,
      headers: { "content-type": "application/json" },
      payload: line,
    });
    if (response.statusCode !== 200) throw new Error(`${name} line ${index + 1}: ${response.statusCode} ${response.body.slice(0, 500)}`);
    const checkpoint = response.json().data.checkpoint;
    checkpoints.push(checkpoint);
    bodyBytes.push(Buffer.byteLength(line));
    await options.afterPost?.(index + 1, checkpoint);
  }
  return { expertJobId: job.id, checkpoints, bodyBytes };
}

// Grown conversations: N steps that each add about K bytes, optionally one large file read.

export interface GrownJobOptions {
  steps: number;
  /** Bytes each step's tool result adds to the conversation (default 10,000). */
  bytesPerStep?: number;
  /** A step (1-based) that reads a large file instead, and its size in bytes. */
  largeRead?: { step: number; bytes: number };
  /** The last step's status (default `completed`, an attemptCompletion); `proceeding` leaves the job running. */
  lastStatus?: "completed" | "proceeding" | "stoppedByInteractiveTool";
  /** Step numbers start after this (to grow a job that already has steps). */
  firstStep?: number;
}

const BASE_SKILL = "@perstack/base";

/** Text of about `bytes` bytes, different per seed (so messages are distinct and not trivially compressible). */
export function fillerText(bytes: number, seed: string): string {
  const line = `${seed} lorem ipsum dolor sit amet, consectetur adipiscing elit; sed do eiusmod tempor incididunt ut labore.\n`;
  return line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);
}

const textPart = (text: string) => ({ id: createId(), type: "textPart", text });

/**
 * Checkpoint bodies of a job whose runtime reads one file per step (a `readTextFile` of the base skill,
 * as in the long-research trace): each step adds its tool call and a tool result carrying the file, so
 * step n's conversation is about n × `bytesPerStep`. The file's content appears in `messages`,
 * `newMessages`, `toolResult` and the derived action, as with the real runtime. A generator: a job of
 * 200 steps builds 200 bodies of up to megabytes each, one at a time.
 */
export function* grownJobBodies(tenant: Tenant, options: GrownJobOptions): Generator<{ checkpoint: any; step: any }> {
  const { steps, bytesPerStep = 10_000, firstStep = 0 } = options;
  const lastStatus = options.lastStatus ?? "completed";
  const runId = createId();
  const expert = { key: tenant.expert.key, name: tenant.expert.name, version: tenant.expert.version ?? "1.0.0" };
  const messages: unknown[] = [
    { id: createId(), type: "instructionMessage", contents: [textPart(fillerText(4_000, "instruction"))], cache: true },
    { id: createId(), type: "userMessage", contents: [textPart("Research the workspace and summarise it.")] },
  ];
  let totalTokens = 0;
  for (let index = 1; index <= steps; index++) {
    const stepNumber = firstStep + index;
    const last = index === steps;
    const toolCallId = `toolu_${createId()}`;
    let newMessages: unknown[];
    let toolCall: Record<string, unknown> | undefined;
    let toolResult: Record<string, unknown> | undefined;
    let status = "proceeding";
    if (last && lastStatus === "completed") {
      status = "completed";
      toolCall = { id: toolCallId, skillName: BASE_SKILL, toolName: "attemptCompletion", args: {} };
      const result = JSON.stringify({ message: "Done." });
      newMessages = [
        {
          id: createId(),
          type: "expertMessage",
          contents: [{ id: createId(), type: "toolCallPart", toolCallId, toolName: "attemptCompletion", args: {} }],
        },
        {
          id: createId(),
          type: "toolMessage",
          contents: [{ id: createId(), type: "toolResultPart", toolCallId, toolName: "attemptCompletion", contents: [textPart(result)] }],
        },
        { id: createId(), type: "expertMessage", contents: [textPart(`# Summary\n\n${fillerText(2_000, "summary")}`)] },
      ];
      toolResult = { id: toolCallId, skillName: BASE_SKILL, toolName: "attemptCompletion", result: [textPart(result)] };
    } else if (last && lastStatus === "stoppedByInteractiveTool") {
      status = "stoppedByInteractiveTool";
      const args = { question: "Which profile should I use?" };
      toolCall = { id: toolCallId, skillName: "user-input", toolName: "askUser", args };
      newMessages = [
        {
          id: createId(),
          type: "expertMessage",
          contents: [{ id: createId(), type: "toolCallPart", toolCallId, toolName: "askUser", args }],
        },
      ];
    } else {
      const bytes = options.largeRead?.step === index ? options.largeRead.bytes : bytesPerStep;
      const filePath = `docs/file-${stepNumber}.md`;
      const args = { path: filePath };
      const result = JSON.stringify({ path: filePath, content: fillerText(bytes, `step ${stepNumber}`), from: 0, to: bytes });
      toolCall = { id: toolCallId, skillName: BASE_SKILL, toolName: "readTextFile", args };
      newMessages = [
        {
          id: createId(),
          type: "expertMessage",
          contents: [{ id: createId(), type: "toolCallPart", toolCallId, toolName: "readTextFile", args }],
        },
        {
          id: createId(),
          type: "toolMessage",
          contents: [{ id: createId(), type: "toolResultPart", toolCallId, toolName: "readTextFile", contents: [textPart(result)] }],
        },
      ];
      toolResult = { id: toolCallId, skillName: BASE_SKILL, toolName: "readTextFile", result: [textPart(result)] };
    }
    messages.push(...newMessages);
    totalTokens += 1_000 + Math.round(JSON.stringify(newMessages).length / 4);
    const usage = { inputTokens: totalTokens - 50, outputTokens: 50, reasoningTokens: 0, totalTokens, cachedInputTokens: 0 };
    const startedAt = 1_766_570_400_000 + stepNumber * 5_000;
    yield {
      checkpoint: {
        id: createId(),
        runId,
        status,
        stepNumber,
        messages: [...messages],
        expert,
        usage,
        contextWindow: 200_000,
        contextWindowUsage: Math.min(1, totalTokens / 200_000),
      },
      step: {
        stepNumber,
        inputMessages: [],
        newMessages,
        ...(toolCall && { toolCall }),
        ...(toolResult && { toolResult }),
        usage: { ...usage, totalTokens: 1_050, inputTokens: 1_000 },
        startedAt,
        finishedAt: startedAt + 1_500,
      },
    };
  }
}

/**
 * Starts a job and posts a grown conversation into it through the API (inject). Returns the job id and
 * the POST answers' checkpoints. `maxSteps` is set high enough for the steps.
 */
export async function postGrownJob(
  app: FastifyInstance,
  tenant: Tenant,
  options: GrownJobOptions & { expertJobId?: string; afterPost?: ReplayOptions["afterPost"] },
): Promise<ReplayedJob> {
  const expertJobId = options.expertJobId ?? (await startJob(app, tenant, { maxSteps: Math.max(100, options.steps + 10) })).id;
  const runtime = api(app, tenant.runtimeKey);
  const checkpoints: Array<Record<string, any>> = [];
  const bodyBytes: number[] = [];
  let line = 0;
  for (const body of grownJobBodies(tenant, options)) {
    const payload = JSON.stringify(body);
    const response = await runtime.request({
      method: "POST",
      url: `/expert_jobs/${expertJobId}/checkpoints/`,
      headers: { "content-type": "application/json" },
      payload,
    });
    if (response.statusCode !== 200)
      throw new Error(`grown step ${body.step.stepNumber}: ${response.statusCode} ${response.body.slice(0, 500)}`);
    const checkpoint = response.json().data.checkpoint;
    checkpoints.push(checkpoint);
    bodyBytes.push(Buffer.byteLength(payload));
    await options.afterPost?.(++line, checkpoint);
  }
  return { expertJobId, checkpoints, bodyBytes };
}
