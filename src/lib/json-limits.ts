import type { ValidationIssue } from "../errors.ts";

/**
 * How deep a JSON body may nest arrays and objects (the body itself is level 1). A Perstack checkpoint
 * needs about 8 levels for its messages plus whatever a tool's arguments and results nest; serialising
 * (JSON.stringify, Postgres' JSON functions) recurses, so thousands of levels would overflow the stack.
 */
export const MAX_JSON_DEPTH = 128;

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

/**
 * What of a parsed JSON body could not be kept as sent: nesting past `MAX_JSON_DEPTH`, or a number JSON
 * allows but a double cannot hold (`1e400` parses as Infinity and would be stored as `null`). Iterative,
 * so any depth is safe to check.
 */
export function unstorableJson(root: unknown): ValidationIssue | undefined {
  if (typeof root === "number" && !Number.isFinite(root)) return { path: "/", message: tooLarge };
  if (root === null || typeof root !== "object") return undefined;
  const stack: Frame[] = [{ value: root, depth: 1 }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    if (frame.depth > MAX_JSON_DEPTH) {
      return { path: pointer(keysOf(frame)), message: `nests deeper than ${MAX_JSON_DEPTH} levels of arrays and objects` };
    }
    const visit = (key: string | number, child: unknown): ValidationIssue | undefined => {
      if (typeof child === "number" && !Number.isFinite(child)) return { path: pointer([...keysOf(frame), key]), message: tooLarge };
      if (child !== null && typeof child === "object") stack.push({ value: child, depth: frame.depth + 1, parent: frame, key });
      return undefined;
    };
    const value = frame.value as Record<string, unknown>;
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++) {
        const issue = visit(index, value[index]);
        if (issue) return issue;
      }
    } else {
      for (const key of Object.keys(value)) {
        const issue = visit(key, value[key]);
        if (issue) return issue;
      }
    }
  }
  return undefined;
}
