import type { ValidationIssue } from "../errors.ts";
import { MAX_JSON_DEPTH } from "../schemas/common.ts";

export { MAX_JSON_DEPTH };

const tooLarge = "is a number too large to store (beyond ±1.8e308)";

/** JSON pointer of a key path, as validation issues name it. */
const pointer = (keys: Array<string | number>) => "/" + keys.map((key) => String(key).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");

interface Frame {
  value: object;
  depth: number;
  parent?: Frame;
  key?: string | number;
}

const keysOf = (frame: Frame | undefined): Array<string | number> => {
  const keys: Array<string | number> = [];
  for (let at = frame; at?.parent; at = at.parent) keys.unshift(at.key!);
  return keys;
};

/** Whether a parsed JSON value nests past `MAX_JSON_DEPTH` or holds a non-finite number: one tight pass, no allocation per node. */
function exceedsLimits(root: unknown): boolean {
  const values: unknown[] = [root];
  const depths: number[] = [1];
  while (values.length > 0) {
    const value = values.pop() as Record<string, unknown>;
    const depth = depths.pop()!;
    if (depth > MAX_JSON_DEPTH) return true;
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++) {
        const child: unknown = value[index];
        if (typeof child === "object") {
          if (child !== null) {
            values.push(child);
            depths.push(depth + 1);
          }
        } else if (typeof child === "number" && !Number.isFinite(child)) return true;
      }
    } else {
      for (const key in value) {
        const child = value[key];
        if (typeof child === "object") {
          if (child !== null) {
            values.push(child);
            depths.push(depth + 1);
          }
        } else if (typeof child === "number" && !Number.isFinite(child)) return true;
      }
    }
  }
  return false;
}

/** Where the first value past the limits is, for the 422 (only run once `exceedsLimits` found one). */
function firstIssue(root: unknown): ValidationIssue | undefined {
  const stack: Frame[] = [{ value: root as object, depth: 1 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.depth > MAX_JSON_DEPTH) {
      return { path: pointer(keysOf(frame)), message: `nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects` };
    }
    const value = frame.value as Record<string, unknown>;
    for (const key of Array.isArray(value) ? value.keys() : Object.keys(value)) {
      const child = value[key as string];
      if (typeof child === "number" && !Number.isFinite(child)) return { path: pointer([...keysOf(frame), key]), message: tooLarge };
      if (child !== null && typeof child === "object") stack.push({ value: child, depth: frame.depth + 1, parent: frame, key });
    }
  }
  return undefined;
}

/**
 * What of a parsed JSON body could not be kept as sent: nesting past `MAX_JSON_DEPTH`, or a number JSON
 * allows but a double cannot hold (`1e400` parses as Infinity and would be stored as `null`). Iterative,
 * so any depth is safe to check; a body within the limits costs one pass that allocates nothing per value.
 */
export function unstorableJson(root: unknown): ValidationIssue | undefined {
  if (typeof root === "number" && !Number.isFinite(root)) return { path: "/", message: tooLarge };
  if (root === null || typeof root !== "object" || !exceedsLimits(root)) return undefined;
  return firstIssue(root);
}
