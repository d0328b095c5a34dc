import type { Exclusion } from "#contract/checkpoints";

// The wire shapes are the API's contract (packages/contract), shared with the typed client.
export * from "#contract/checkpoints";

/** The exclusions a query asked for (the schema has checked every name). */
export function parseExclude(value: string | undefined): ReadonlySet<Exclusion> {
  return new Set(value === undefined ? [] : (value.split(",") as Exclusion[]));
}
