import { createHash } from "node:crypto";

/** JSON text with every object's keys sorted: the same value however its keys were ordered. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, item: unknown) =>
    item !== null && typeof item === "object" && !Array.isArray(item)
      ? Object.fromEntries(Object.entries(item).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : item,
  );
}

export const canonicalJsonHash = (value: unknown): string => createHash("sha256").update(canonicalJson(value)).digest("hex");
