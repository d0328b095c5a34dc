import type { CheckpointAction } from "#contract/checkpoint-action";
import type { ExpertDigest } from "../../schemas/common.ts";

// The schema is part of the API's contract (packages/contract), shared with the typed client.
export { CheckpointActionSchema, type CheckpointAction } from "#contract/checkpoint-action";

export const BASE_SKILL_PREFIX = "@perstack/base";

/**
 * The action fields that carry a file, a tool's output or a final answer (`exclude=actionContent`). An
 * interactive tool's `args` are its question to the user, which a view of the job needs, so they stay.
 */
export const ACTION_CONTENT_FIELDS = ["content", "text", "newText", "oldText", "result", "results", "items", "args"] as const;

/**
 * The SQL twin of `withoutActionContent`: the action's light form is stored beside it at insert (a trigger,
 * migration 20261202060500_checkpoint_action_light, with this field list), NULL when nothing is left out.
 */
export const actionWithoutContent = "coalesce(c.action_light, c.action)";

export function withoutActionContent(action: CheckpointAction): CheckpointAction {
  if (action.type === "interactiveTool") return action;
  const light: Record<string, unknown> = { ...action };
  for (const field of ACTION_CONTENT_FIELDS) delete light[field];
  return light as CheckpointAction;
}
export type CheckpointActionType = CheckpointAction["type"];

export type ActionToolCall = {
  id: string;
  skillName: string;
  toolName: string;
  args: Record<string, unknown>;
};

export type ActionToolResult = {
  id: string;
  skillName: string;
  toolName: string;
  result: unknown[];
};

export type ActionInput = {
  status: string;
  messages: unknown[];
  newMessages: unknown[];
  toolCall?: ActionToolCall;
  toolResult?: ActionToolResult;
  delegateTo?: { expert: ExpertDigest; query: string };
};

type JsonObject = Record<string, unknown>;
type Parsed = { ok: true; value: JsonObject } | { ok: false; error: string };

export function deriveCheckpointAction(input: ActionInput): CheckpointAction {
  const { status, toolCall, toolResult, delegateTo } = input;
  const messages = asArray(input.messages);

  if (status === "init") {
    return { type: "init" };
  }

  if (status === "stoppedByDelegate" && delegateTo) {
    if (messages.at(-1) == null) {
      return errorAction("No messages found for delegate action");
    }
    return { type: "delegate", delegateTo: delegateTo.expert, query: delegateTo.query };
  }

  const skillName = toolCall?.skillName;
  const toolName = toolCall?.toolName;

  if (status === "stoppedByInteractiveTool" && toolCall && isNonEmptyString(skillName) && isNonEmptyString(toolName)) {
    return { type: "interactiveTool", skillName, toolName, args: objectOrEmpty(toolCall.args) };
  }

  if (!toolCall || !toolResult || !isNonEmptyString(skillName) || !isNonEmptyString(toolName)) {
    return retryAction(input.newMessages);
  }

  if (skillName.startsWith(BASE_SKILL_PREFIX)) {
    return baseToolAction(skillName, toolName, toolCall, toolResult, messages);
  }

  return generalToolAction(skillName, toolName, toolCall, toolResult);
}

function retryAction(newMessages: unknown): CheckpointAction {
  const firstMessage = asArray(newMessages)[0];
  if (firstMessage == null) {
    return errorAction("No new messages found");
  }
  const text = firstTextPartText(firstMessage);
  if (text === undefined) {
    return errorAction("No text part found in retry message");
  }
  const parsed = parseJsonObject(text);
  if (!parsed) {
    return errorAction("Failed to parse retry message");
  }
  return {
    type: "retry",
    error: stringOr(parsed.error, "Unknown error"),
    message: stringOr(parsed.message, ""),
  };
}

function baseToolAction(
  skillName: string,
  toolName: string,
  toolCall: ActionToolCall,
  toolResult: ActionToolResult,
  messages: unknown[],
): CheckpointAction {
  switch (toolName) {
    case "attemptCompletion":
      return attemptCompletionAction(messages);
    case "think":
      return thinkAction(toolCall);
    case "todo":
      return fromToolResult(toolResult, (body) => ({
        type: "todo",
        newTodos: asArray(objectOrEmpty(toolCall.args).newTodos),
        completedTodos: asArray(objectOrEmpty(toolCall.args).completedTodos),
        ...pickArrays(body, ["todos"]),
      }));
    case "readImageFile":
    case "readPdfFile":
      return fromToolResult(toolResult, (body) => ({
        type: toolName,
        ...pickStrings(body, ["path", "mimeType"]),
        ...pickNumbers(body, ["size"]),
      }));
    case "readTextFile":
      return fromToolResult(toolResult, (body) => ({
        type: "readTextFile",
        ...pickStrings(body, ["path", "content"]),
        ...pickNumbers(body, ["from", "to"]),
      }));
    case "editTextFile":
      return fromToolResult(toolResult, (body) => ({
        type: "editTextFile",
        ...pickStrings(body, ["path", "newText", "oldText"]),
      }));
    case "appendTextFile":
    case "writeTextFile":
      return fromToolResult(toolResult, (body) => ({
        type: toolName,
        ...pickStrings(body, ["path", "text"]),
      }));
    case "deleteFile":
    case "createDirectory":
      return fromToolResult(toolResult, (body) => ({ type: toolName, ...pickStrings(body, ["path"]) }));
    case "moveFile":
      return fromToolResult(toolResult, (body) => ({
        type: "moveFile",
        ...pickStrings(body, ["source", "destination"]),
      }));
    case "getFileInfo":
      return fromToolResult(toolResult, (body) => ({
        type: "getFileInfo",
        ...pickStrings(body, [
          "path",
          "absolutePath",
          "name",
          "directory",
          "extension",
          "mimeType",
          "sizeFormatted",
          "created",
          "modified",
          "accessed",
        ]),
        ...pickBooleans(body, ["exists"]),
        ...pickNumbers(body, ["size"]),
        ...(isJsonObject(body.permissions) ? { permissions: body.permissions } : {}),
      }));
    case "listDirectory":
      return fromToolResult(toolResult, (body) => ({
        type: "listDirectory",
        ...pickStrings(body, ["path"]),
        ...pickArrays(body, ["items"]),
      }));
    case "testUrl":
      return fromToolResult(toolResult, (body) => ({ type: "testUrl", ...pickArrays(body, ["results"]) }));
    default:
      return generalToolAction(skillName, toolName, toolCall, toolResult);
  }
}

function attemptCompletionAction(messages: unknown[]): CheckpointAction {
  const lastMessage = messages.at(-1);
  if (lastMessage == null) {
    return errorAction("No messages found");
  }
  const text = firstTextPartText(lastMessage);
  if (text === undefined) {
    return errorAction("No text found");
  }
  return { type: "attemptCompletion", result: text };
}

function thinkAction(toolCall: ActionToolCall): CheckpointAction {
  const thought = objectOrEmpty(toolCall.args).thought;
  if (!isNonEmptyString(thought)) {
    return errorAction("No thought found");
  }
  return { type: "think", thought };
}

function generalToolAction(skillName: string, toolName: string, toolCall: ActionToolCall, toolResult: ActionToolResult): CheckpointAction {
  return {
    type: "generalTool",
    skillName,
    toolName,
    args: objectOrEmpty(toolCall.args),
    result: asArray(toolResult.result),
  };
}

function fromToolResult(toolResult: ActionToolResult, build: (body: JsonObject) => CheckpointAction): CheckpointAction {
  const parsed = parseToolResultBody(toolResult);
  return parsed.ok ? build(parsed.value) : errorAction(parsed.error);
}

function parseToolResultBody(toolResult: ActionToolResult): Parsed {
  const text = firstTextPartText({ contents: toolResult.result });
  if (text === undefined) {
    return { ok: false, error: "No result found" };
  }
  const value = parseJsonObject(text);
  return value ? { ok: true, value } : { ok: false, error: "Invalid JSON in tool result" };
}

function errorAction(error: string): CheckpointAction {
  return { type: "error", error };
}

function firstTextPartText(message: unknown): string | undefined {
  if (!isJsonObject(message)) return undefined;
  for (const part of asArray(message.contents)) {
    if (isJsonObject(part) && part.type === "textPart" && typeof part.text === "string") {
      return part.text;
    }
  }
  return undefined;
}

function parseJsonObject(text: string): JsonObject | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return isJsonObject(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

// Copy only fields of the expected type so the action always matches CheckpointActionSchema.
function pickStrings<K extends string>(body: JsonObject, keys: readonly K[]): Partial<Record<K, string>> {
  return pickWhere(body, keys, (value): value is string => typeof value === "string");
}

function pickNumbers<K extends string>(body: JsonObject, keys: readonly K[]): Partial<Record<K, number>> {
  return pickWhere(body, keys, (value): value is number => typeof value === "number");
}

function pickBooleans<K extends string>(body: JsonObject, keys: readonly K[]): Partial<Record<K, boolean>> {
  return pickWhere(body, keys, (value): value is boolean => typeof value === "boolean");
}

function pickArrays<K extends string>(body: JsonObject, keys: readonly K[]): Partial<Record<K, unknown[]>> {
  return pickWhere(body, keys, (value): value is unknown[] => Array.isArray(value));
}

function pickWhere<K extends string, V>(
  body: JsonObject,
  keys: readonly K[],
  accepts: (value: unknown) => value is V,
): Partial<Record<K, V>> {
  const picked: Partial<Record<K, V>> = {};
  for (const key of keys) {
    const value = body[key];
    if (accepts(value)) picked[key] = value;
  }
  return picked;
}

function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

function objectOrEmpty(value: unknown): JsonObject {
  return isJsonObject(value) ? value : {};
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === "string" ? value : fallback;
}
