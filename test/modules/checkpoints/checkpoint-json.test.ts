import fastJson from "fast-json-stringify";
import { describe, expect, it } from "vitest";
import { CheckpointSchema, type Checkpoint } from "../../../src/modules/checkpoints/checkpoints.schemas.ts";
import { messagesAround, messagesSplicer } from "../../../src/modules/checkpoints/checkpoint-json.ts";

const serialize = fastJson(CheckpointSchema) as (checkpoint: Checkpoint) => string;
const splice = messagesSplicer(serialize);

const digest = {
  type: "expertDigest",
  id: "x1y2z3",
  key: "@acme/helper@1.0.0",
  name: "@acme/helper",
  minRuntimeVersion: "v1.0",
  description: "Helps",
  owner: { name: "acme", organizationId: "o1", createdAt: "2026-01-01T00:00:00.000Z" },
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
  version: "1.0.0",
  tags: ["latest"],
};
const base = {
  type: "checkpoint",
  id: "c1",
  runId: "r1",
  expertJobId: "j1",
  stepNumber: 2,
  status: "proceeding",
  expert: digest,
  newMessages: [{ id: "m", type: "expertMessage", contents: [] }],
  usage: { inputTokens: 1, outputTokens: 2, reasoningTokens: 0, totalTokens: 3, cachedInputTokens: 0 },
  contextWindow: 200_000,
  contextWindowUsage: 0.5,
  startedAt: "2026-01-01T00:00:01.000Z",
  sequence: 2,
  createdAt: "2026-01-01T00:00:02.125Z",
};

const cases: Array<[string, Record<string, unknown>, unknown[]]> = [
  ["only required properties", { ...base, action: { type: "init" } }, []],
  [
    "every optional property, and `messages` keys nested in the action and tool call",
    {
      ...base,
      action: { type: "generalTool", skillName: "s", toolName: "t", args: { messages: [] }, result: [{ messages: ["x"] }] },
      skillName: "s",
      toolName: "t",
      delegateTo: { expert: digest, toolCallId: "tc", toolName: "t" },
      delegatedBy: { expert: digest, toolCallId: "tc", toolName: "t", checkpointId: "p" },
      inputMessages: [{ messages: [] }],
      toolCall: { id: "tc", skillName: "s", toolName: "t", args: { messages: "[]" } },
      toolResult: { id: "tc", skillName: "s", toolName: "t", result: [] },
      finishedAt: "2026-01-01T00:00:02.000Z",
    },
    [{ z: 1, a: 'é 🚀 \u2028 "q"' }, null, 1e21, "\ud83d", [], {}],
  ],
  [
    "optional properties after `messages` only",
    { ...base, action: { type: "think", thought: "t" }, finishedAt: "2026-01-01T00:00:02.000Z" },
    [1],
  ],
];

describe("stream frames", () => {
  it("splice the conversation in (the probe matches the schema, `sequence` and `createdAt` included)", () => {
    const around = messagesAround(serialize);
    expect(around).toBeDefined();
    const [before, after] = around!({ ...base, action: { type: "init" } } as unknown as Checkpoint);
    expect(JSON.parse(`${before}[]${after}`)).toMatchObject({ sequence: 2, createdAt: "2026-01-01T00:00:02.125Z", messages: [] });
  });

  it.each(cases)("writes a conversation given as JSON text exactly as serialising it would: %s", (_name, checkpoint, messages) => {
    const text = JSON.stringify(messages);
    expect(splice(checkpoint as unknown as Checkpoint, text)).toBe(serialize({ ...checkpoint, messages } as unknown as Checkpoint));
  });

  it("puts the stored text in as it is, without parsing and serialising it again", () => {
    const spliced = splice({ ...base, action: { type: "init" } } as unknown as Checkpoint, "[ 1 ]");
    expect(spliced).toContain('"messages":[ 1 ]');
    expect(JSON.parse(spliced).messages).toEqual([1]);
  });
});
