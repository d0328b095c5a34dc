// Example values for the OpenAPI document (`examples` on route schemas). Most are typed with their
// schema's own type, so drifting from it fails to compile; test/docs checks all of them at run time.
import type { Checkpoint } from "./checkpoints.ts";
import type { ExpertJob } from "./expert-jobs.ts";
import type { Claim } from "./runtime.ts";
import type { ExpertDigest, Usage } from "./common.ts";

export const exampleIds = {
  organization: "o8k2m4n6p1q3r5s7t9u0v2w4",
  application: "a1b2c3d4e5f6g7h8i9j0k1l2",
  expert: "e5x7p9e1r3t5d7i9g2e4s6t8",
  expertJob: "j3o5b7i9d1k2l4m6n8p0q2r4",
  checkpoint: "c7h9k1p3o5i6n8t0a2b4c6d8",
  previousCheckpoint: "c1p2r3e4v5i6o7u8s9a0b1c2",
  run: "r2u4n6i8d0a1b3c5d7e9f1g3",
  apiKey: "k4e6y8i0d2a3b5c7d9e1f3g5",
} as const;

const createdAt = "2026-01-15T09:30:00.000Z";

export const expertDigestExample: ExpertDigest = {
  type: "expertDigest",
  id: exampleIds.expert,
  key: "@acme/researcher@1.2.0",
  name: "@acme/researcher",
  minRuntimeVersion: "v1.0",
  description: "Researches a topic on the web and writes a short report",
  owner: { name: "acme", organizationId: exampleIds.organization, createdAt },
  createdAt,
  updatedAt: createdAt,
  version: "1.2.0",
  tags: ["latest"],
};

const usageExample: Usage = { inputTokens: 5120, outputTokens: 830, reasoningTokens: 0, totalTokens: 5950, cachedInputTokens: 4096 };

export const expertJobExample: ExpertJob = {
  type: "expertJob",
  id: exampleIds.expertJob,
  organizationId: exampleIds.organization,
  createdAt,
  updatedAt: "2026-01-15T09:30:08.400Z",
  status: "processing",
  runtimeVersion: "v1.0",
  expertKey: "@acme/researcher@1.2.0",
  query: "Summarise this week's papers on retrieval-augmented generation",
  files: [],
  expert: expertDigestExample,
  model: "claude-sonnet-4-5",
  temperature: 0,
  maxSteps: 100,
  maxRetries: 5,
  currentStep: 2,
  totalSteps: 2,
  totalDuration: 8400,
  usage: usageExample,
  applicationId: exampleIds.application,
};

const toolCall = { id: "toolu_01", skillName: "search", toolName: "webSearch", args: { query: "retrieval-augmented generation papers" } };
const toolResult = {
  id: "toolu_01",
  skillName: "search",
  toolName: "webSearch",
  result: [{ id: "p1", type: "textPart", text: "1. Long-context RAG at scale (arXiv 2601.01234) …" }],
};
const newMessages = [
  {
    id: "m3",
    type: "expertMessage",
    contents: [{ id: "p2", type: "toolCallPart", toolCallId: "toolu_01", toolName: "webSearch", args: toolCall.args }],
  },
  {
    id: "m4",
    type: "toolMessage",
    contents: [{ id: "p3", type: "toolResultPart", toolCallId: "toolu_01", toolName: "webSearch", contents: toolResult.result }],
  },
];
const messages = [
  { id: "m1", type: "instructionMessage", contents: [{ id: "p4", type: "textPart", text: "You research topics and report." }] },
  { id: "m2", type: "userMessage", contents: [{ id: "p5", type: "textPart", text: expertJobExample.query }] },
  ...newMessages,
];

// Not annotated: PostCheckpointBodySchema carries this example, so its own type would be circular.
export const postCheckpointBodyExample = {
  checkpoint: {
    id: exampleIds.checkpoint,
    runId: exampleIds.run,
    status: "proceeding" as const,
    stepNumber: 2,
    messages,
    expert: { key: "@acme/researcher@1.2.0", name: "@acme/researcher", version: "1.2.0" },
    usage: usageExample,
    contextWindow: 200000,
    contextWindowUsage: 5950,
  },
  step: {
    stepNumber: 2,
    newMessages,
    toolCall,
    toolResult,
    usage: { inputTokens: 2600, outputTokens: 410, reasoningTokens: 0, totalTokens: 3010, cachedInputTokens: 2048 },
    startedAt: 1768469404000,
    finishedAt: 1768469408400,
  },
};

export const checkpointExample: Checkpoint = {
  type: "checkpoint",
  id: exampleIds.checkpoint,
  action: { type: "generalTool", skillName: "search", toolName: "webSearch", args: toolCall.args, result: toolResult.result },
  runId: exampleIds.run,
  expertJobId: exampleIds.expertJob,
  stepNumber: 2,
  status: "proceeding",
  expert: expertDigestExample,
  skillName: "search",
  toolName: "webSearch",
  messages,
  newMessages,
  toolCall,
  toolResult,
  usage: usageExample,
  contextWindow: 200000,
  contextWindowUsage: 5950,
  startedAt: "2026-01-15T09:30:04.000Z",
  finishedAt: "2026-01-15T09:30:08.400Z",
  sequence: 2,
  createdAt: "2026-01-15T09:30:08.452Z",
};

export const claimExample: Claim = {
  expertJob: expertJobExample,
  checkpoint: checkpointExample,
  leaseExpiresAt: "2026-01-15T09:35:08.400Z",
  leaseToken: "lt4k2m9x7q1w3e5r6t8y0u2i",
  providerKey: { provider: "anthropic", key: "sk-ant-api03-…" },
};

export const pageMetaExample = { total: 1, take: 10, skip: 0 };

/** One `{code, error, reason}` example per status of `ErrorResponses`. */
export const errorReasonExamples = {
  400: "Query or files are required",
  401: "Failed to authenticate",
  403: "This endpoint requires an API key with the runtime scope",
  404: "Expert job not found",
  409: "Cannot change status from completed to processing",
  429: "Too many failed authentications from this address: at most 30 per 60 s; retry in 42 s",
  422: [{ path: "/expertJobId", message: "must NOT have fewer than 24 characters" }],
} as const;

export const streamExample =
  `id: 1\nevent: message\ndata: {"type":"checkpoint","id":"${exampleIds.previousCheckpoint}","stepNumber":1,"status":"init",…}\n\n` +
  `id: 2\nevent: message\ndata: {"type":"checkpoint","id":"${exampleIds.checkpoint}","stepNumber":2,"status":"proceeding",…}\n\n` +
  ": ping\n\n" +
  `event: complete\ndata: {"status":"completed","expertJobId":"${exampleIds.expertJob}"}\n\n`;
