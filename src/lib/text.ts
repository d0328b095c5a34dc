/**
 * Postgres `text` and `jsonb` cannot hold U+0000, which tool output may carry. The columns that are not
 * `json` (action, delegations, tool names) store U+FFFD in its place; messages, tool calls and results keep it.
 */
export function withoutNul<T>(value: T): T {
  if (typeof value === "string") return (value.includes("\u0000") ? value.replaceAll("\u0000", "\uFFFD") : value) as T;
  if (Array.isArray(value)) return value.map(withoutNul) as T;
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [withoutNul(key), withoutNul(item)])) as T;
  }
  return value;
}

// Prisma passes `contains` into LIKE unescaped, so `%` and `_` would act as wildcards.
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, "\\$&");
}
