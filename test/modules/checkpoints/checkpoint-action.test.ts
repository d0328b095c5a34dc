import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { FormatRegistry } from "@sinclair/typebox";
import type { ExpertDigest } from "../../../src/schemas/common.ts";
import {
  type ActionInput,
  type CheckpointAction,
  CheckpointActionSchema,
  deriveCheckpointAction,
} from "../../../src/modules/checkpoints/checkpoint-action.ts";

const BASE = "@perstack/base";

function textPart(text: string) {
  return { id: `p-${text.length}`, type: "textPart", text };
}

function imagePart() {
  return { id: "img", type: "imageInlinePart", encodedData: "AAAA", mimeType: "image/png" };
}

function expertMessage(...contents: unknown[]) {
  return { id: "m-expert", type: "expertMessage", contents };
}

function userMessage(...contents: unknown[]) {
  return { id: "m-user", type: "userMessage", contents };
}

function toolCall(skillName: string, toolName: string, args: Record<string, unknown> = {}) {
  return { id: "call-1", skillName, toolName, args };
}

function toolResult(skillName: string, toolName: string, result: unknown[]) {
  return { id: "call-1", skillName, toolName, result };
}

function jsonResult(body: unknown) {
  return [textPart(JSON.stringify(body))];
}

function stepInput(overrides: Partial<ActionInput> = {}): ActionInput {
  return { status: "proceeding", messages: [userMessage(textPart("hello"))], newMessages: [], ...overrides };
}

function baseTool(toolName: string, result: unknown[], args: Record<string, unknown> = {}): ActionInput {
  return stepInput({ toolCall: toolCall(BASE, toolName, args), toolResult: toolResult(BASE, toolName, result) });
}

// Value.Check only knows formats registered with TypeBox (Fastify's validator has its own).
FormatRegistry.Set("date-time", (value) => !Number.isNaN(Date.parse(value)));

const expertDigest: ExpertDigest = {
  type: "expertDigest",
  id: "e5r6t7y8u9i0o1p2a3s4d5f6",
  key: "@acme/helper@1.0.0",
  name: "@acme/helper",
  minRuntimeVersion: "v1.0",
  description: "Helps",
  owner: { name: "acme", organizationId: "o1p2a3s4d5f6g7h8j9k0l1z2", createdAt: "2025-12-01T00:00:00.000Z" },
  createdAt: "2025-12-01T00:00:00.000Z",
  updatedAt: "2025-12-01T00:00:00.000Z",
  version: "1.0.0",
  tags: ["latest"],
};

type Case = { name: string; input: ActionInput; expected: CheckpointAction };

const fileInfo = {
  path: "a.txt",
  exists: true,
  absolutePath: "/w/a.txt",
  name: "a.txt",
  directory: "/w",
  extension: ".txt",
  mimeType: "text/plain",
  size: 2,
  sizeFormatted: "2 B",
  created: "2025-12-24T10:00:00.000Z",
  modified: "2025-12-24T10:00:00.000Z",
  accessed: "2025-12-24T10:00:00.000Z",
  permissions: { readable: true, writable: true, executable: false },
};

const cases: Case[] = [
  { name: "init", input: stepInput({ status: "init" }), expected: { type: "init" } },
  {
    name: "retry",
    input: stepInput({
      newMessages: [userMessage(textPart(JSON.stringify({ error: "Error: No tool call generated", message: "Try again." })))],
    }),
    expected: { type: "retry", error: "Error: No tool call generated", message: "Try again." },
  },
  {
    name: "retry with defaults",
    input: stepInput({ newMessages: [userMessage(imagePart(), textPart("{}"))] }),
    expected: { type: "retry", error: "Unknown error", message: "" },
  },
  {
    name: "retry without new messages",
    input: stepInput(),
    expected: { type: "error", error: "No new messages found" },
  },
  {
    name: "retry without text part",
    input: stepInput({ newMessages: [userMessage(imagePart())] }),
    expected: { type: "error", error: "No text part found in retry message" },
  },
  {
    name: "retry with unparsable text",
    input: stepInput({ newMessages: [userMessage(textPart("not json"))] }),
    expected: { type: "error", error: "Failed to parse retry message" },
  },
  {
    name: "retry when toolCall has no result",
    input: stepInput({ toolCall: toolCall("s", "t"), newMessages: [userMessage(textPart("null"))] }),
    expected: { type: "error", error: "Failed to parse retry message" },
  },
  {
    name: "attemptCompletion",
    input: stepInput({
      ...baseTool("attemptCompletion", jsonResult({})),
      messages: [userMessage(textPart("first")), expertMessage(imagePart(), textPart("done"), textPart("later"))],
    }),
    expected: { type: "attemptCompletion", result: "done" },
  },
  {
    name: "attemptCompletion without messages",
    input: { ...baseTool("attemptCompletion", jsonResult({})), messages: [] },
    expected: { type: "error", error: "No messages found" },
  },
  {
    name: "attemptCompletion without text",
    input: { ...baseTool("attemptCompletion", jsonResult({})), messages: [expertMessage(imagePart())] },
    expected: { type: "error", error: "No text found" },
  },
  {
    name: "think",
    input: baseTool("think", jsonResult({}), { thought: "hmm" }),
    expected: { type: "think", thought: "hmm" },
  },
  {
    name: "think without thought",
    input: baseTool("think", jsonResult({})),
    expected: { type: "error", error: "No thought found" },
  },
  {
    name: "todo",
    input: baseTool("todo", jsonResult({ todos: [{ id: 0, title: "x", completed: false }] }), { newTodos: ["x"] }),
    expected: { type: "todo", newTodos: ["x"], completedTodos: [], todos: [{ id: 0, title: "x", completed: false }] },
  },
  {
    name: "readImageFile",
    input: baseTool("readImageFile", jsonResult({ path: "a.png", mimeType: "image/png", size: 3 })),
    expected: { type: "readImageFile", path: "a.png", mimeType: "image/png", size: 3 },
  },
  {
    name: "readPdfFile without optional fields",
    input: baseTool("readPdfFile", jsonResult({ path: "a.pdf", extra: 1 })),
    expected: { type: "readPdfFile", path: "a.pdf" },
  },
  {
    name: "readTextFile",
    input: baseTool("readTextFile", jsonResult({ path: "a.txt", content: "hi", from: 1, to: 2 })),
    expected: { type: "readTextFile", path: "a.txt", content: "hi", from: 1, to: 2 },
  },
  {
    name: "readTextFile drops null and mistyped fields",
    input: baseTool("readTextFile", jsonResult({ path: "a.txt", content: "hi", from: null, to: "2" })),
    expected: { type: "readTextFile", path: "a.txt", content: "hi" },
  },
  {
    name: "editTextFile",
    input: baseTool("editTextFile", jsonResult({ path: "a.txt", newText: "b", oldText: "a" })),
    expected: { type: "editTextFile", path: "a.txt", newText: "b", oldText: "a" },
  },
  {
    name: "appendTextFile",
    input: baseTool("appendTextFile", jsonResult({ path: "a.txt", text: "more" })),
    expected: { type: "appendTextFile", path: "a.txt", text: "more" },
  },
  {
    name: "writeTextFile",
    input: baseTool("writeTextFile", jsonResult({ path: "a.txt", text: "all" })),
    expected: { type: "writeTextFile", path: "a.txt", text: "all" },
  },
  {
    name: "deleteFile",
    input: baseTool("deleteFile", jsonResult({ path: "a.txt" })),
    expected: { type: "deleteFile", path: "a.txt" },
  },
  {
    name: "createDirectory",
    input: baseTool("createDirectory", jsonResult({ path: "dir" })),
    expected: { type: "createDirectory", path: "dir" },
  },
  {
    name: "moveFile",
    input: baseTool("moveFile", jsonResult({ source: "a", destination: "b" })),
    expected: { type: "moveFile", source: "a", destination: "b" },
  },
  {
    name: "getFileInfo",
    input: baseTool("getFileInfo", jsonResult(fileInfo)),
    expected: { type: "getFileInfo", ...fileInfo },
  },
  {
    name: "listDirectory",
    input: baseTool(
      "listDirectory",
      jsonResult({ path: ".", items: [{ name: "a", path: "./a", type: "file", size: 1, modified: "2025-12-24T10:00:00.000Z" }] }),
    ),
    expected: {
      type: "listDirectory",
      path: ".",
      items: [{ name: "a", path: "./a", type: "file", size: 1, modified: "2025-12-24T10:00:00.000Z" }],
    },
  },
  {
    name: "testUrl",
    input: baseTool("testUrl", jsonResult({ results: [{ url: "https://x", status: 200, title: "X", description: "" }] })),
    expected: { type: "testUrl", results: [{ url: "https://x", status: 200, title: "X", description: "" }] },
  },
  {
    name: "tool result without text part",
    input: baseTool("readTextFile", [imagePart()]),
    expected: { type: "error", error: "No result found" },
  },
  {
    name: "tool result with invalid JSON",
    input: baseTool("deleteFile", [textPart("{oops")]),
    expected: { type: "error", error: "Invalid JSON in tool result" },
  },
  {
    name: "tool result with non-object JSON",
    input: baseTool("deleteFile", [textPart("[1,2]")]),
    expected: { type: "error", error: "Invalid JSON in tool result" },
  },
  {
    name: "unknown base tool",
    input: baseTool("exec", [textPart("ok")], { command: "ls" }),
    expected: { type: "generalTool", skillName: BASE, toolName: "exec", args: { command: "ls" }, result: [textPart("ok")] },
  },
  {
    name: "non-base tool",
    input: stepInput({
      toolCall: toolCall("@acme/search", "search", { q: "x" }),
      toolResult: toolResult("@acme/search", "search", [textPart("not json")]),
    }),
    expected: {
      type: "generalTool",
      skillName: "@acme/search",
      toolName: "search",
      args: { q: "x" },
      result: [textPart("not json")],
    },
  },
  {
    name: "interactiveTool",
    input: stepInput({ status: "stoppedByInteractiveTool", toolCall: toolCall("interactive", "askUser", { question: "Proceed?" }) }),
    expected: { type: "interactiveTool", skillName: "interactive", toolName: "askUser", args: { question: "Proceed?" } },
  },
  {
    name: "delegate",
    input: stepInput({ status: "stoppedByDelegate", delegateTo: { expert: expertDigest, query: "Summarise X" } }),
    expected: { type: "delegate", delegateTo: expertDigest, query: "Summarise X" },
  },
  {
    name: "delegate without messages",
    input: stepInput({ status: "stoppedByDelegate", messages: [], delegateTo: { expert: expertDigest, query: "q" } }),
    expected: { type: "error", error: "No messages found for delegate action" },
  },
];

describe("deriveCheckpointAction", () => {
  it.each(cases)("$name", ({ input, expected }) => {
    const action = deriveCheckpointAction(input);
    expect(action).toStrictEqual(expected);
    expect(Value.Check(CheckpointActionSchema, action)).toBe(true);
  });

  it("covers every action type", () => {
    const produced = new Set(cases.map(({ input }) => deriveCheckpointAction(input).type));
    const declared = CheckpointActionSchema.anyOf.map((variant) => variant.properties.type.const);
    expect([...produced].sort()).toEqual([...declared].sort());
  });

  it("init wins over every other rule", () => {
    const input = stepInput({
      status: "init",
      toolCall: toolCall(BASE, "think", { thought: "x" }),
      delegateTo: { expert: expertDigest, query: "q" },
    });
    expect(deriveCheckpointAction(input)).toEqual({ type: "init" });
  });

  it("delegate wins over interactive tool and tool calls", () => {
    const input = stepInput({
      status: "stoppedByDelegate",
      toolCall: toolCall(BASE, "think", { thought: "x" }),
      toolResult: toolResult(BASE, "think", []),
      delegateTo: { expert: expertDigest, query: "q" },
    });
    expect(deriveCheckpointAction(input)).toMatchObject({ type: "delegate" });
  });

  const hostile: unknown[] = [
    null,
    undefined,
    42,
    "text",
    [],
    [null],
    [42, "x"],
    [{ contents: null }],
    [{ contents: 7 }],
    [{ contents: [null, 3, { text: "no type" }, { type: "textPart", text: 5 }] }],
    [{ type: "expertMessage" }],
  ];

  it.each(hostile.map((value) => ({ value })))("never throws on hostile messages %#", ({ value }) => {
    const shapes = [
      { status: "proceeding", messages: value, newMessages: value },
      { status: "stoppedByDelegate", messages: value, newMessages: value, delegateTo: { expert: expertDigest, query: "q" } },
      { ...baseTool("attemptCompletion", value as unknown[]), messages: value },
      { ...baseTool("readTextFile", value as unknown[]), messages: value },
      baseTool("todo", [textPart("{}")], { newTodos: 3, completedTodos: null }),
      baseTool("getFileInfo", [textPart(JSON.stringify({ permissions: [1], size: "big", exists: "yes" }))]),
      baseTool("think", jsonResult({}), { thought: 12 }),
      stepInput({ toolCall: toolCall("x", "y", value as Record<string, unknown>), toolResult: toolResult("x", "y", value as unknown[]) }),
    ] as ActionInput[];
    for (const input of shapes) {
      const action = deriveCheckpointAction(input);
      expect(Value.Check(CheckpointActionSchema, action)).toBe(true);
    }
  });

  it("never puts undefined or null into an action", () => {
    for (const { input } of cases) {
      const action = deriveCheckpointAction(input);
      for (const value of Object.values(action)) {
        expect(value).not.toBeUndefined();
        expect(value).not.toBeNull();
      }
    }
  });
});
