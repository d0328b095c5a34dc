// Renders one checkpoint whole: its action, tool call and result, and the step's new messages, readably.
import { actionProblem, formatDuration, formatNumber, h } from "./format.js";

// Longer texts show their start and a button to show the rest: a step that read a file may carry megabytes.
const COLLAPSE_CHARS = 1_500;
const COLLAPSE_LINES = 24;

function collapsible(text, className = "text") {
  if (text === "") return h("p", { className: "muted" }, "(empty)");
  const lines = text.split("\n");
  if (text.length <= COLLAPSE_CHARS && lines.length <= COLLAPSE_LINES) return h("pre", { className }, text);
  const head = lines.slice(0, COLLAPSE_LINES).join("\n").slice(0, COLLAPSE_CHARS);
  const pre = h("pre", { className }, `${head}…`);
  const button = h(
    "button",
    {
      type: "button",
      className: "link expand",
      onclick: () => {
        pre.textContent = text;
        button.remove();
      },
    },
    `Show all ${formatNumber(text.length)} characters (${formatNumber(lines.length)} lines)`,
  );
  return h("div", { className: "collapsible" }, pre, button);
}

const json = (value) => JSON.stringify(value, null, 2) ?? String(value);

const dataUrl = (mimeType, base64) => `data:${mimeType ?? "application/octet-stream"};base64,${base64}`;

function imagePart(part, encoded) {
  if (typeof encoded !== "string" || !/^image\/[\w.+-]+$/.test(part.mimeType ?? ""))
    return h("p", { className: "muted" }, `image (${part.mimeType ?? "unknown type"})`);
  return h(
    "figure",
    {},
    h("img", { src: dataUrl(part.mimeType, encoded), alt: `image (${part.mimeType})`, loading: "lazy" }),
    h("figcaption", { className: "muted" }, part.mimeType),
  );
}

function renderPart(part) {
  switch (part?.type) {
    case "textPart":
      return collapsible(part.text ?? "");
    case "thinkingPart":
      return h(
        "details",
        { className: "thinking" },
        h("summary", {}, `Thinking (${formatNumber((part.thinking ?? "").length)} characters)`),
        collapsible(part.thinking ?? ""),
      );
    case "toolCallPart":
      return h(
        "div",
        { className: "part tool-call" },
        h("div", { className: "part-label" }, "calls ", h("code", {}, part.toolName)),
        collapsible(json(part.args ?? {}), "json"),
      );
    case "toolResultPart":
      return h(
        "div",
        { className: `part tool-result${part.isError ? " is-error" : ""}` },
        h("div", { className: "part-label" }, part.isError ? "error from " : "result of ", h("code", {}, part.toolName)),
        (part.contents ?? []).map(renderPart),
      );
    case "imageInlinePart":
      return imagePart(part, part.encodedData);
    case "imageBinaryPart":
      return imagePart(part, part.data);
    case "imageUrlPart":
    case "fileUrlPart":
      // Not loaded: the page fetches nothing from other origins.
      return h(
        "p",
        {},
        `${part.type === "imageUrlPart" ? "image" : "file"} at `,
        h("code", {}, part.url ?? "?"),
        part.mimeType ? ` (${part.mimeType})` : "",
      );
    case "fileInlinePart":
    case "fileBinaryPart":
      return h(
        "p",
        { className: "muted" },
        `file (${part.mimeType ?? "unknown type"}, ${formatNumber((part.encodedData ?? part.data ?? "").length)} characters of base64)`,
      );
    default:
      return collapsible(json(part), "json");
  }
}

const messageLabels = {
  instructionMessage: "instruction",
  userMessage: "user",
  expertMessage: "expert",
  toolMessage: "tool",
};

function renderMessage(message) {
  const type = message?.type ?? "message";
  return h(
    "article",
    { className: `message ${type}` },
    h("div", { className: "message-role" }, messageLabels[type] ?? type),
    (Array.isArray(message?.contents) ? message.contents : []).map(renderPart),
  );
}

function field(label, ...value) {
  return h("div", {}, h("dt", {}, label), h("dd", {}, ...value));
}

// A general tool's action repeats the tool call and result, shown in full below it.
const shownElsewhere = { generalTool: ["skillName", "toolName", "args", "result"], interactiveTool: ["skillName", "toolName"] };

function renderAction(action) {
  const problem = actionProblem(action);
  const { type, ...fields } = action ?? {};
  const hidden = new Set([...(shownElsewhere[type] ?? []), ...(problem ? ["error", "message"] : [])]);
  const rest = Object.entries(fields).filter(([name]) => !hidden.has(name));
  return h(
    "div",
    { className: "action" },
    h("div", { className: "part-label" }, "action ", h("code", {}, type ?? "?")),
    problem && h("p", { className: "problem", role: "note" }, problem),
    rest.length > 0 && collapsible(json(Object.fromEntries(rest)), "json"),
  );
}

/**
 * The inspector's content for a whole checkpoint: `seq` is its event id, `previousTokens` the job's tokens
 * before it (for what the step used), `onResume` is offered as "resume from this checkpoint".
 */
export function renderCheckpoint(checkpoint, { seq, previousTokens, onResume }) {
  const started = new Date(checkpoint.startedAt);
  const duration = checkpoint.finishedAt ? new Date(checkpoint.finishedAt).getTime() - started.getTime() : undefined;
  const usage = checkpoint.usage;
  const stepTokens = previousTokens === undefined ? undefined : usage.totalTokens - previousTokens;
  const tool = checkpoint.toolName ? `${checkpoint.skillName ?? "?"} › ${checkpoint.toolName}` : "–";
  const newMessages = Array.isArray(checkpoint.newMessages) ? checkpoint.newMessages : [];
  return [
    h(
      "dl",
      { className: "facts" },
      field("Step", `${checkpoint.stepNumber} (event ${seq})`),
      field("Status", checkpoint.status),
      field("Tool", tool),
      field("Duration", formatDuration(duration)),
      field(
        "Tokens",
        stepTokens === undefined
          ? formatNumber(usage.totalTokens)
          : `+${formatNumber(stepTokens)} (job ${formatNumber(usage.totalTokens)})`,
      ),
      field(
        "Context",
        checkpoint.contextWindow ? `${formatNumber(checkpoint.contextWindowUsage)} of ${formatNumber(checkpoint.contextWindow)}` : "–",
      ),
      field("Expert", checkpoint.expert?.key ?? "–"),
      field("Checkpoint", h("code", {}, checkpoint.id)),
    ),
    renderAction(checkpoint.action),
    checkpoint.toolCall &&
      h(
        "section",
        { className: "block" },
        h("h3", {}, "Tool call ", h("code", {}, `${checkpoint.toolCall.skillName} › ${checkpoint.toolCall.toolName}`)),
        collapsible(json(checkpoint.toolCall.args ?? {}), "json"),
      ),
    checkpoint.toolResult &&
      h("section", { className: "block" }, h("h3", {}, "Tool result"), (checkpoint.toolResult.result ?? []).map(renderPart)),
    h(
      "section",
      { className: "block" },
      h("h3", {}, `New messages (${newMessages.length})`),
      newMessages.length === 0 ? h("p", { className: "muted" }, "None") : newMessages.map(renderMessage),
    ),
    onResume && h("button", { type: "button", className: "secondary", onclick: onResume }, "Resume from this checkpoint…"),
  ];
}
