/**
 * A minimal expert runtime: claims queued jobs from the server, runs them one step at a time, posts a
 * checkpoint per step and reports the job's status. Its "expert" calls no model (it answers from the
 * query), so the loop runs anywhere; a real runtime puts its LLM calls where `step` builds messages.
 *
 *   EXPERT_JOBS_URL=http://127.0.0.1:3000 RUNTIME_KEY=<a runtime-scope key> npx tsx examples/runtime.ts
 *
 * STEP_DELAY_MS=2000 makes each step take two seconds (as a model call would), so the steps can be
 * watched arriving one by one on a stream or the dashboard.
 *
 * The protocol (every request carries `Authorization: Bearer <runtime key>`):
 *
 * 1. `POST /api/studio/v1/expert_jobs/claim {waitMs}` long-polls for the oldest queued job of the key's
 *    application: 200 `{data:{claim:{expertJob, checkpoint?, leaseExpiresAt, leaseToken, providerKey:{provider,key}}}}`,
 *    or 204 when nothing was queued within `waitMs` (at most 30000). The job is now `processing`.
 *    `checkpoint`, when present, is where to resume: the job's latest, or the one a client chose with
 *    resume_from. `providerKey` is the secret the job's model needs; keep it in memory only. Send
 *    `leaseToken` back as the `Perstack-Lease-Token` header on every request about the job: once the
 *    lease is no longer yours (it ran out and the job went to another runtime), they get 409 and
 *    nothing you send is stored.
 * 2. After every finished step, `POST .../expert_jobs/{id}/checkpoints/ {checkpoint, step}`. Step numbers
 *    continue from the resumed checkpoint; `messages` is the whole conversation so far, `newMessages`
 *    what this step added, `usage` the job's cumulative tokens. Send your own cuid2 `id`s: a retried
 *    post with the same id is answered with the stored checkpoint instead of a duplicate.
 * 3. The lease ends at `leaseExpiresAt`. Each checkpoint post renews it; during a long step send the
 *    heartbeat `POST .../expert_jobs/{id} {status:"processing"}`. A job whose lease runs out is queued
 *    again for another runtime (after `maxRetries` such losses it fails).
 * 4. The checkpoint's status moves the job: `completed` → completed, `stoppedByInteractiveTool` →
 *    requestInteractiveToolResult (a client answers it with a continue), `stoppedByError` → failed, …
 *    Reporting that status again with `POST .../expert_jobs/{id} {status}` is a harmless no-op; report
 *    `failed` when the run breaks without a checkpoint saying so.
 * 5. A 409 on a checkpoint or status post means the job is no longer yours to run (canceled, expired,
 *    taken back): drop it. A client's cancel makes a running job `canceling`: while a job runs, keep
 *    `GET .../expert_jobs/{id}/status?while=processing&waitMs=25000` open (again after each answer); it
 *    answers as soon as the status changes, so a cancel reaches you within a second. Stop the step in
 *    progress and report `canceled`. (The heartbeat's answer says `canceling` too.)
 */
import { realpathSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { createId } from "@paralleldrive/cuid2";

export interface RuntimeConfig {
  /** The server's base URL, e.g. http://127.0.0.1:3000 */
  url: string;
  /** A runtime-scope API key. */
  key: string;
  /** How long one claim request waits for work. */
  waitMs?: number;
  /** How long each step "thinks" before its checkpoint is posted (default 0). */
  stepDelayMs?: number;
  log?: (message: string) => void;
}

// The shapes this example reads from the API (see GET /openapi.json for the full schemas).
interface ExpertJob {
  id: string;
  status: string;
  query?: string;
  files: string[];
  interactiveToolCallResult?: boolean;
  expert: { key: string; name: string; version?: string };
}
interface Checkpoint {
  id: string;
  stepNumber: number;
  status: string;
  messages?: Message[];
  toolCall?: ToolCall;
  usage: Usage;
}
interface Claim {
  expertJob: ExpertJob;
  checkpoint?: Checkpoint;
  leaseExpiresAt: string;
  leaseToken: string;
  providerKey: { provider: string; key: string };
}
interface ToolCall {
  id: string;
  skillName: string;
  toolName: string;
  args: Record<string, unknown>;
}
type Message = { id: string; type: string; contents: unknown[] };
type Usage = { inputTokens: number; outputTokens: number; reasoningTokens: number; totalTokens: number; cachedInputTokens: number };

/** The job is no longer this runtime's to run (the server answered 409). */
class JobGone extends Error {}

/** Statuses in which this runtime goes on running a job it claimed. */
const running = new Set(["processing", "requestDelegateResult"]);

const API = "/api/studio/v1";

// Message and part builders (perstack-semantics §3.3): every message and part has its own id.
const text = (value: string) => ({ id: createId(), type: "textPart", text: value });
const instructionMessage = (value: string): Message => ({ id: createId(), type: "instructionMessage", contents: [text(value)] });
const userMessage = (value: string): Message => ({ id: createId(), type: "userMessage", contents: [text(value)] });
const expertMessage = (...contents: unknown[]): Message => ({ id: createId(), type: "expertMessage", contents });
const toolCallPart = (call: ToolCall) => ({
  id: createId(),
  type: "toolCallPart",
  toolCallId: call.id,
  toolName: call.toolName,
  args: call.args,
});
const toolMessage = (call: ToolCall, result: string): Message => ({
  id: createId(),
  type: "toolMessage",
  contents: [{ id: createId(), type: "toolResultPart", toolCallId: call.id, toolName: call.toolName, contents: [text(result)] }],
});

export class RuntimeClient {
  constructor(private readonly config: RuntimeConfig) {}

  async #request(method: string, path: string, body?: unknown, leaseToken?: string, signal?: AbortSignal): Promise<Response> {
    return fetch(this.config.url + API + path, {
      method,
      headers: {
        authorization: `Bearer ${this.config.key}`,
        ...(body !== undefined && { "content-type": "application/json" }),
        ...(leaseToken !== undefined && { "perstack-lease-token": leaseToken }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      ...(signal && { signal }),
    });
  }

  async #json<T>(method: string, path: string, body?: unknown, leaseToken?: string, signal?: AbortSignal): Promise<T> {
    const response = await this.#request(method, path, body, leaseToken, signal);
    if (response.status === 409) throw new JobGone(((await response.json()) as { reason: string }).reason);
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as T;
  }

  async claim(waitMs: number): Promise<Claim | undefined> {
    const response = await this.#request("POST", "/expert_jobs/claim", { waitMs }, undefined);
    if (response.status === 204) return undefined;
    if (!response.ok) throw new Error(`claim: ${response.status} ${await response.text()}`);
    return ((await response.json()) as { data: { claim: Claim } }).data.claim;
  }

  async postCheckpoint(expertJobId: string, body: unknown, leaseToken?: string): Promise<Checkpoint> {
    const path = `/expert_jobs/${expertJobId}/checkpoints/`;
    return (await this.#json<{ data: { checkpoint: Checkpoint } }>("POST", path, body, leaseToken)).data.checkpoint;
  }

  async reportStatus(expertJobId: string, status: string, leaseToken?: string): Promise<ExpertJob> {
    return (await this.#json<{ data: { expertJob: ExpertJob } }>("POST", `/expert_jobs/${expertJobId}`, { status }, leaseToken)).data
      .expertJob;
  }

  /** The job's status once it is not `current` (long poll, up to `waitMs`). */
  async waitForStatus(expertJobId: string, current: string, waitMs: number, leaseToken?: string, signal?: AbortSignal): Promise<string> {
    const path = `/expert_jobs/${expertJobId}/status?while=${current}&waitMs=${waitMs}`;
    const answer = await this.#json<{ data: { jobStatus: { status: string } } }>("GET", path, undefined, leaseToken, signal);
    return answer.data.jobStatus.status;
  }
}

/**
 * Aborts `stop` as soon as the job is no longer running for this runtime: `canceling` (a client canceled
 * it), another status, or its lease lost (409). Long polls the job's status until `done` aborts.
 */
async function watchJob(client: RuntimeClient, claim: Claim, stop: AbortController, done: AbortSignal): Promise<void> {
  let status = "processing";
  while (!done.aborted && !stop.signal.aborted) {
    try {
      status = await client.waitForStatus(claim.expertJob.id, status, 25_000, claim.leaseToken, done);
      if (!running.has(status)) stop.abort(status);
    } catch (error) {
      if (done.aborted) return;
      if (error instanceof JobGone) return stop.abort("gone");
      // The server is unreachable for a moment: look again shortly (checkpoint posts will tell as well).
      await sleep(1_000, done).catch(() => {});
    }
  }
}

/** Resolves after `ms`; rejects when `signal` aborts first. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error("aborted"));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new Error("aborted"));
      },
      { once: true },
    );
  });
}

interface StepResult {
  status: "init" | "proceeding" | "completed" | "stoppedByInteractiveTool";
  newMessages: Message[];
  inputMessages?: Message[];
  toolCall?: ToolCall;
  toolResult?: { id: string; skillName: string; toolName: string; result: unknown[] };
}

/**
 * The "expert": a fixed plan of steps. It thinks once, then completes with an answer; a query starting
 * with `ask:` makes it stop at an interactive tool call first, which a client answers with a continue
 * (`interactiveToolCallResult: true`, the answer as `query`).
 */
function plan(job: ExpertJob, resumed: Checkpoint | undefined): Array<() => StepResult> {
  const query = job.query ?? `Look at ${job.files.join(", ")}`;
  const answeringTool = job.interactiveToolCallResult && resumed?.status === "stoppedByInteractiveTool" && resumed.toolCall;
  const input = answeringTool
    ? [toolMessage(answeringTool, query)]
    : [...(resumed ? [] : [instructionMessage("You are a helpful expert.")]), userMessage(query)];
  const think: ToolCall = {
    id: `call_${createId()}`,
    skillName: "@perstack/base",
    toolName: "think",
    args: { thought: `Working on: ${query}` },
  };
  const ask: ToolCall = { id: `call_${createId()}`, skillName: "interactive", toolName: "askUser", args: { question: "Shall I go on?" } };
  const complete: ToolCall = { id: `call_${createId()}`, skillName: "@perstack/base", toolName: "attemptCompletion", args: {} };
  const answer = answeringTool ? `Thanks, you said: ${query}` : `Done: ${query}`;

  const steps: Array<() => StepResult> = [
    () => ({ status: "init", inputMessages: input, newMessages: input }),
    () => ({
      status: "proceeding",
      newMessages: [expertMessage(toolCallPart(think)), toolMessage(think, "Thought noted.")],
      toolCall: think,
      toolResult: { id: think.id, skillName: think.skillName, toolName: think.toolName, result: [text("Thought noted.")] },
    }),
  ];
  if (!answeringTool && query.startsWith("ask:")) {
    steps.push(() => ({ status: "stoppedByInteractiveTool", newMessages: [expertMessage(toolCallPart(ask))], toolCall: ask }));
    return steps;
  }
  steps.push(() => ({
    status: "completed",
    newMessages: [expertMessage(toolCallPart(complete)), toolMessage(complete, "{}"), expertMessage(text(answer))],
    toolCall: complete,
    toolResult: { id: complete.id, skillName: complete.skillName, toolName: complete.toolName, result: [text("{}")] },
  }));
  return steps;
}

const jobStatusAfter: Record<StepResult["status"], string> = {
  init: "processing",
  proceeding: "processing",
  completed: "completed",
  stoppedByInteractiveTool: "requestInteractiveToolResult",
};

/**
 * Runs one claimed job to its next stop, posting a checkpoint per step, each `stepDelayMs` after the last.
 * A cancel stops it at once, even mid-step: it reports `canceled` and returns "canceled".
 */
export async function runJob(
  client: RuntimeClient,
  claim: Claim,
  { log = () => {}, stepDelayMs = 0 }: Pick<RuntimeConfig, "log" | "stepDelayMs"> = {},
): Promise<string> {
  const { expertJob: job, checkpoint: resumed } = claim;
  const expert = { key: job.expert.key, name: job.expert.name, version: job.expert.version ?? "latest" };
  const runId = createId();
  let messages: Message[] = resumed?.messages ?? [];
  let stepNumber = resumed?.stepNumber ?? 0;
  const usage: Usage = resumed?.usage ?? { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, totalTokens: 0, cachedInputTokens: 0 };

  const { leaseToken } = claim;
  // Aborted (with the status seen) when the job stops being ours to run: a cancel, a lost lease.
  const stop = new AbortController();
  const done = new AbortController();
  const watching = watchJob(client, claim, stop, done.signal);
  // Checkpoints renew the lease; the heartbeat covers steps slower than that (a model call can be).
  const leaseMs = Date.parse(claim.leaseExpiresAt) - Date.now();
  const beat = () =>
    client.reportStatus(job.id, "processing", leaseToken).then(
      (answer) => void (running.has(answer.status) || stop.abort(answer.status)),
      (error: unknown) => void (error instanceof JobGone && stop.abort("gone")),
    );
  const heartbeat = setInterval(() => void beat(), Math.max(1000, leaseMs / 3));
  try {
    let last: StepResult["status"] = "init";
    for (const step of plan(job, resumed)) {
      const startedAt = Date.now();
      // Where a real runtime calls its model (give it `stop.signal`); the heartbeat above keeps the lease meanwhile.
      if (stepDelayMs > 0) await sleep(stepDelayMs, stop.signal);
      if (stop.signal.aborted) throw new JobGone(String(stop.signal.reason));
      const result = step();
      messages = [...messages, ...result.newMessages];
      stepNumber += 1;
      await client.postCheckpoint(
        job.id,
        {
          checkpoint: { id: createId(), runId, status: result.status, stepNumber, messages, expert, usage },
          step: {
            stepNumber,
            ...(result.inputMessages && { inputMessages: result.inputMessages }),
            newMessages: result.newMessages,
            ...(result.toolCall && { toolCall: result.toolCall }),
            ...(result.toolResult && { toolResult: result.toolResult }),
            usage: { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, totalTokens: 0, cachedInputTokens: 0 },
            startedAt,
            finishedAt: Date.now(),
          },
        },
        leaseToken,
      );
      log(`job ${job.id}: step ${stepNumber} ${result.status}`);
      last = result.status;
    }
    const status = jobStatusAfter[last];
    await client.reportStatus(job.id, status, leaseToken);
    return status;
  } catch (error) {
    if (stop.signal.aborted && stop.signal.reason === "canceling") {
      log(`job ${job.id}: canceled`);
      await client.reportStatus(job.id, "canceled", leaseToken).catch(() => {});
      return "canceled";
    }
    if (error instanceof JobGone || stop.signal.aborted) {
      log(`job ${job.id}: no longer ours (${stop.signal.aborted ? String(stop.signal.reason) : (error as Error).message})`);
      return "gone";
    }
    await client.reportStatus(job.id, "failed", leaseToken).catch(() => {});
    throw error;
  } finally {
    clearInterval(heartbeat);
    done.abort();
    await watching;
  }
}

/** Claims at most one job (waiting up to `waitMs`) and runs it; the job's resulting status, or undefined. */
export async function runOnce(config: RuntimeConfig): Promise<string | undefined> {
  const client = new RuntimeClient(config);
  const claim = await client.claim(config.waitMs ?? 20_000);
  if (!claim) return undefined;
  config.log?.(`claimed job ${claim.expertJob.id}${claim.checkpoint ? ` at step ${claim.checkpoint.stepNumber}` : ""}`);
  return runJob(client, claim, config);
}

async function main() {
  const url = process.env.EXPERT_JOBS_URL ?? "http://127.0.0.1:3000";
  const key = process.env.RUNTIME_KEY;
  if (!key) {
    console.error("Set RUNTIME_KEY to a runtime-scope API key (printed on the server's first start).");
    process.exit(1);
  }
  const stepDelayMs = Number(process.env.STEP_DELAY_MS ?? 0);
  if (!Number.isInteger(stepDelayMs) || stepDelayMs < 0) {
    console.error("STEP_DELAY_MS must be a whole number of milliseconds (0 or more).");
    process.exit(1);
  }
  const config: RuntimeConfig = { url, key, waitMs: 20_000, stepDelayMs, log: (message) => console.log(message) };
  let stopping = false;
  process.once("SIGINT", () => {
    console.log("stopping after the current claim (Ctrl-C again to quit now)");
    stopping = true;
    process.once("SIGINT", () => process.exit(130));
  });
  while (!stopping) {
    try {
      await runOnce(config);
    } catch (error) {
      console.error(error);
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
  }
}

// Real paths on both sides: run through a symlinked folder, argv[1] is the link and import.meta.url the target.
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) await main();
