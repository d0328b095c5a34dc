// Small formatting and DOM helpers shared by the views.
export const $ = (id) => document.getElementById(id);

export const formatNumber = (value) => (value ?? 0).toLocaleString("en-US");

export function formatDuration(ms) {
  if (ms === undefined || ms === null || Number.isNaN(ms)) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const seconds = Math.round(ms / 1000);
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.floor(seconds / 60) % 60).padStart(2, "0")} min`;
}

export function formatAgo(iso, now = Date.now()) {
  const ms = now - new Date(iso).getTime();
  if (ms < 5_000) return "just now";
  if (ms < 60_000) return `${Math.round(ms / 1000)} s ago`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.round(ms / 3_600_000)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** An element with attributes and children (strings become text nodes: nothing is parsed as HTML). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false || value === null) continue;
    if (name === "className") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) if (child !== undefined && child !== null && child !== false) element.append(child);
  return element;
}

export const runningStatuses = new Set(["queued", "processing", "canceling", "requestDelegateResult"]);
export const continuableStatuses = new Set([
  "completed",
  "requestInteractiveToolResult",
  "requestDelegateResult",
  "exceededMaxSteps",
  "failed",
]);
export const cancelableStatuses = new Set([
  "queued",
  "processing",
  "requestDelegateResult",
  "requestInteractiveToolResult",
  "exceededMaxSteps",
]);

export const formatUsage = (usage) =>
  `${formatNumber(usage.totalTokens)} (in ${formatNumber(usage.inputTokens)}, out ${formatNumber(usage.outputTokens)}, ` +
  `reasoning ${formatNumber(usage.reasoningTokens)}, cached ${formatNumber(usage.cachedInputTokens)})`;

/** The message of an `error` or `retry` action, for the timeline and the inspector. */
export function actionProblem(action) {
  if (!action) return undefined;
  if (action.type === "error") return action.error;
  if (action.type === "retry") return [action.error, action.message].filter(Boolean).join(": ");
  return undefined;
}
