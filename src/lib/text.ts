// A lone UTF-16 surrogate (half of a cut-off emoji): `u` mode treats a well-formed pair as one code point.
const LONE_SURROGATE = /\p{Cs}/u;
const LONE_SURROGATES = /\p{Cs}/gu;

/** Whether text holds something a Postgres `text` column cannot: U+0000, or a lone surrogate (UTF-8 has no encoding for one). */
export function isStorableText(text: string): boolean {
  return !text.includes("\u0000") && !LONE_SURROGATE.test(text);
}

/**
 * Text for a `text` (or `jsonb`) column that only serves searching (a checkpoint's skill and tool names):
 * U+0000 and lone surrogates become U+FFFD. Answers take the text from the `json` column that keeps it exactly.
 */
export function searchableText(text: string): string {
  return isStorableText(text) ? text : text.replaceAll("\u0000", "\uFFFD").replace(LONE_SURROGATES, "\uFFFD");
}

// Prisma passes `contains` into LIKE unescaped, so `%` and `_` would act as wildcards.
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, "\\$&");
}
