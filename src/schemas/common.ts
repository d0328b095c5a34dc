import { ErrorResponses, type Usage } from "#contract/common";

// The API's wire shapes are its contract (packages/contract), shared with the typed client.
export * from "#contract/common";

export const emptyUsage = (): Usage => ({
  inputTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
  totalTokens: 0,
  cachedInputTokens: 0,
});

/** Picks the error envelopes an operation can answer with, for its `response` schema. */
export function errorResponses<Code extends keyof typeof ErrorResponses>(...codes: Code[]): Pick<typeof ErrorResponses, Code> {
  return Object.fromEntries(codes.map((code) => [code, ErrorResponses[code]])) as Pick<typeof ErrorResponses, Code>;
}
