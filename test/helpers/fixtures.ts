import { createId } from "@paralleldrive/cuid2";
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import type { Provider } from "../../src/lib/models.ts";
import type { ExpertDigest } from "../../src/schemas/common.ts";

export interface Tenant {
  organizationId: string;
  applicationId: string;
  clientKey: string;
  runtimeKey: string;
  expert: ExpertDigest;
}

let tenantCounter = 0;

/** An organization with one application, a client and a runtime key, one expert and provider keys. */
export async function seedTenant(app: FastifyInstance, options: { providers?: Provider[]; expertName?: string } = {}): Promise<Tenant> {
  const suffix = `${process.pid}-${++tenantCounter}-${createId().slice(0, 6)}`;
  const organization = await app.admin.createOrganization(`org-${suffix}`);
  const application = await app.admin.createApplication(organization.id, "app");
  const clientKey = await app.admin.createApiKey(application.id, "client");
  const runtimeKey = await app.admin.createApiKey(application.id, "runtime");
  const expert = await app.admin.registerExpert(organization.id, {
    name: options.expertName ?? "@acme/helper",
    version: "1.0.0",
    description: "Helps",
  });
  for (const provider of options.providers ?? ["anthropic"]) await app.providerKeys.put(application.id, provider, `sk-${provider}-secret`);
  return { organizationId: organization.id, applicationId: application.id, clientKey: clientKey.key, runtimeKey: runtimeKey.key, expert };
}

export type Api = {
  get(url: string, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  post(url: string, body?: unknown, headers?: Record<string, string>): Promise<LightMyRequestResponse>;
  request(options: InjectOptions): Promise<LightMyRequestResponse>;
};

/** `app.inject` with the key's bearer header and `/api/studio/v1` prefix. */
export function api(app: FastifyInstance, key: string, prefix = "/api/studio/v1"): Api {
  const auth = { authorization: `Bearer ${key}` };
  return {
    get: (url, headers = {}) => app.inject({ method: "GET", url: prefix + url, headers: { ...auth, ...headers } }),
    post: (url, body, headers = {}) =>
      app.inject({
        method: "POST",
        url: prefix + url,
        headers: { ...auth, ...headers },
        ...(body !== undefined && { payload: body as InjectOptions["payload"] }),
      }),
    request: (options) => app.inject({ ...options, url: prefix + options.url, headers: { ...auth, ...options.headers } }),
  };
}

export async function startJob(app: FastifyInstance, tenant: Tenant, body: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const response = await api(app, tenant.clientKey).post("/expert_jobs", { expertKey: tenant.expert.key, query: "Do it", ...body });
  if (response.statusCode !== 200) throw new Error(`start failed: ${response.statusCode} ${response.body}`);
  return response.json().data.expertJob;
}

// Message builders (perstack-semantics §3.3).
export const textPart = (text: string) => ({ id: createId(), type: "textPart", text });
export const userMessage = (text: string) => ({ id: createId(), type: "userMessage", contents: [textPart(text)] });
export const instructionMessage = (text: string) => ({ id: createId(), type: "instructionMessage", contents: [textPart(text)] });
export const toolCallPart = (toolCallId: string, toolName: string, args: Record<string, unknown>) => ({
  id: createId(),
  type: "toolCallPart",
  toolCallId,
  toolName,
  args,
});
export const expertMessage = (...contents: unknown[]) => ({ id: createId(), type: "expertMessage", contents });
export const toolMessage = (toolCallId: string, toolName: string, text: string) => ({
  id: createId(),
  type: "toolMessage",
  contents: [{ id: createId(), type: "toolResultPart", toolCallId, toolName, contents: [textPart(text)] }],
});

export const usage = (totalTokens = 0) => ({
  inputTokens: totalTokens,
  outputTokens: 0,
  reasoningTokens: 0,
  totalTokens,
  cachedInputTokens: 0,
});

export interface CheckpointBodyOptions {
  id?: string;
  runId?: string;
  status?: string;
  stepNumber?: number;
  messages?: unknown[];
  newMessages?: unknown[];
  inputMessages?: unknown[];
  expertKey?: string;
  toolCall?: { id: string; skillName: string; toolName: string; args: Record<string, unknown> };
  toolResult?: { id: string; skillName: string; toolName: string; result: unknown[] };
  delegateTo?: Record<string, unknown>;
  delegatedBy?: Record<string, unknown>;
  totalTokens?: number;
  startedAt?: number;
  finishedAt?: number;
  contextWindow?: number;
  contextWindowUsage?: number;
}

/** A `POST .../checkpoints/` body; by default a proceeding step calling a general tool. */
export function checkpointBody(tenant: Tenant, options: CheckpointBodyOptions = {}) {
  const stepNumber = options.stepNumber ?? 1;
  const toolCall = options.toolCall ?? { id: `call_${stepNumber}`, skillName: "search", toolName: "webSearch", args: { q: "x" } };
  const newMessages = options.newMessages ?? [expertMessage(toolCallPart(toolCall.id, toolCall.toolName, toolCall.args))];
  const startedAt = options.startedAt ?? 1_766_570_400_000 + stepNumber * 10_000;
  return {
    checkpoint: {
      ...(options.id && { id: options.id }),
      ...(options.runId && { runId: options.runId }),
      status: options.status ?? "proceeding",
      stepNumber,
      messages: options.messages ?? [instructionMessage("You help."), userMessage("Do it"), ...newMessages],
      expert: { key: options.expertKey ?? tenant.expert.key, name: tenant.expert.name, version: tenant.expert.version ?? "1.0.0" },
      ...(options.delegateTo && { delegateTo: options.delegateTo }),
      ...(options.delegatedBy && { delegatedBy: options.delegatedBy }),
      usage: usage(options.totalTokens ?? stepNumber * 100),
      ...(options.contextWindow !== undefined && { contextWindow: options.contextWindow }),
      ...(options.contextWindowUsage !== undefined && { contextWindowUsage: options.contextWindowUsage }),
    },
    step: {
      stepNumber,
      ...(options.inputMessages && { inputMessages: options.inputMessages }),
      newMessages,
      ...(options.toolCall !== undefined || !options.status?.startsWith("stopped") ? { toolCall } : {}),
      ...(options.toolResult && { toolResult: options.toolResult }),
      usage: usage(100),
      startedAt,
      finishedAt: options.finishedAt ?? startedAt + 2000,
    },
  };
}

/** Another application of the tenant's organization: same experts, its own keys and provider key, none of the tenant's jobs. */
export async function seedSiblingApplication(
  app: FastifyInstance,
  tenant: Tenant,
  name = `sibling-${createId().slice(0, 6)}`,
): Promise<Tenant> {
  const application = await app.admin.createApplication(tenant.organizationId, name);
  const clientKey = await app.admin.createApiKey(application.id, "client");
  const runtimeKey = await app.admin.createApiKey(application.id, "runtime");
  await app.providerKeys.put(application.id, "anthropic", "sk-anthropic-secret");
  return { ...tenant, applicationId: application.id, clientKey: clientKey.key, runtimeKey: runtimeKey.key };
}

/** Puts a job in a status directly, for states no endpoint reaches (or none exists for yet). */
export async function setJobStatus(app: FastifyInstance, expertJobId: string, status: string): Promise<void> {
  await app.prisma.expertJob.update({ where: { id: expertJobId }, data: { status: status as never } });
}

/** `step.toolResult` answering a tool call with one text part. */
export const toolResultFor = (toolCall: { id: string; skillName: string; toolName: string }, text: string) => ({
  id: toolCall.id,
  skillName: toolCall.skillName,
  toolName: toolCall.toolName,
  result: [textPart(text)],
});

/** The `{key, name, version}` a runtime posts for an expert (checkpoint.expert, delegateTo.expert, delegatedBy.expert). */
export const expertRef = (expert: ExpertDigest) => ({ key: expert.key, name: expert.name, version: expert.version ?? "1.0.0" });

// The runtime side: checkpoints, claims, status reports, and jobs driven to a status through the API.

export async function postCheckpoint(
  app: FastifyInstance,
  tenant: Tenant,
  expertJobId: string,
  options: CheckpointBodyOptions = {},
): Promise<Record<string, any>> {
  const response = await api(app, tenant.runtimeKey).post(`/expert_jobs/${expertJobId}/checkpoints/`, checkpointBody(tenant, options));
  if (response.statusCode !== 200) throw new Error(`checkpoint post failed: ${response.statusCode} ${response.body}`);
  return response.json().data.checkpoint;
}

export const claimJob = (app: FastifyInstance, tenant: Tenant, waitMs = 0) =>
  api(app, tenant.runtimeKey).post("/expert_jobs/claim", { waitMs });

export const reportStatus = (app: FastifyInstance, tenant: Tenant, expertJobId: string, status: string) =>
  api(app, tenant.runtimeKey).post(`/expert_jobs/${expertJobId}`, { status });

export const askUserToolCall = { id: "call_ask", skillName: "interactive", toolName: "askUser", args: { question: "Proceed?" } };

/** The checkpoint (step 2) that stops a processing job in each stopped status. */
function stoppingCheckpoint(tenant: Tenant, status: string): CheckpointBodyOptions {
  switch (status) {
    case "completed":
      return { stepNumber: 2, status: "completed" };
    case "requestInteractiveToolResult":
      return { stepNumber: 2, status: "stoppedByInteractiveTool", toolCall: askUserToolCall };
    case "requestDelegateResult":
      return {
        stepNumber: 2,
        status: "stoppedByDelegate",
        delegateTo: { expert: expertRef(tenant.expert), toolCallId: "call_delegate", toolName: "helper", query: "Sub task" },
      };
    case "exceededMaxSteps":
      return { stepNumber: 2, status: "stoppedByExceededMaxSteps" };
    case "failed":
      return { stepNumber: 2, status: "stoppedByError" };
    default:
      throw new Error(`no checkpoint stops a job as ${status}`);
  }
}

/**
 * A job in `status`, reached through the API the way clients and runtimes do (start, checkpoints, cancel,
 * status report; expired through the sweeper). Every status but `queued` has checkpoints.
 */
export async function jobInStatus(
  app: FastifyInstance,
  tenant: Tenant,
  status: string,
  startBody: Record<string, unknown> = {},
): Promise<{ job: Record<string, any>; checkpoints: Array<Record<string, any>> }> {
  const job = await startJob(app, tenant, startBody);
  const checkpoints: Array<Record<string, any>> = [];
  if (status !== "queued") {
    checkpoints.push(await postCheckpoint(app, tenant, job.id, { stepNumber: 1 }));
    if (status === "canceling" || status === "canceled") {
      const canceled = await api(app, tenant.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      if (canceled.statusCode !== 200) throw new Error(`cancel failed: ${canceled.statusCode} ${canceled.body}`);
      if (status === "canceled") await reportStatus(app, tenant, job.id, "canceled");
    } else if (status === "expired") {
      checkpoints.push(await postCheckpoint(app, tenant, job.id, stoppingCheckpoint(tenant, "requestInteractiveToolResult")));
      await app.prisma.expertJob.update({ where: { id: job.id }, data: { pausedAt: new Date(0) } });
      // A background sweeper may hold the row (SKIP LOCKED) at that moment; it expires the job itself.
      await eventually(async () => {
        await app.runtime.sweep();
        return (await app.prisma.expertJob.findUnique({ where: { id: job.id } }))?.status === "expired";
      });
    } else if (status !== "processing") {
      checkpoints.push(await postCheckpoint(app, tenant, job.id, stoppingCheckpoint(tenant, status)));
    }
  }
  const current = (await api(app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob;
  if (current.status !== status) throw new Error(`job is ${current.status}, not ${status}`);
  return { job: current, checkpoints };
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, timeoutMs = 5_000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A multipart/form-data body as the original Perstack client builds it (repeated keys for arrays). */
export async function formData(fields: Array<[string, string]>): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  const request = new Request("http://localhost/", { method: "POST", body: form });
  return { payload: Buffer.from(await request.arrayBuffer()), headers: { "content-type": request.headers.get("content-type")! } };
}
