import { hash } from "node:crypto";

/** Ordered message ordinals as inclusive `[first, last]` runs; a growing conversation stays one run. */
export type MessageRuns = Array<[number, number]>;

export function encodeRuns(ordinals: number[]): MessageRuns {
  const runs: MessageRuns = [];
  for (const ordinal of ordinals) {
    const last = runs.at(-1);
    if (last && last[1] + 1 === ordinal) last[1] = ordinal;
    else runs.push([ordinal, ordinal]);
  }
  return runs;
}

export function* decodeRuns(runs: MessageRuns): Generator<number> {
  for (const [first, last] of runs) for (let ordinal = first; ordinal <= last; ordinal++) yield ordinal;
}

/** A posted conversation, hashed once: each message's JSON text and its hex SHA-256. */
export interface HashedMessages {
  texts: string[];
  hashes: string[];
}

export function hashMessages(messages: unknown[]): HashedMessages {
  const texts = messages.map((message) => JSON.stringify(message) ?? "null");
  // The one-shot hash is ~1.5× faster than a Hash object per message (a long conversation has hundreds).
  return { texts, hashes: texts.map((text) => hash("sha256", text, "hex")) };
}

/**
 * Each distinct message of a job is stored once (by the hash of its JSON text). Given the ordinals of the
 * job's stored messages among these hashes and its last ordinal, returns the conversation as runs of
 * ordinals and the messages to store. The caller holds the job's row lock, so ordinals never race.
 */
export function assignOrdinals(
  hashed: HashedMessages,
  stored: Map<string, number>,
  lastOrdinal: number,
): { runs: MessageRuns; created: Array<{ ordinal: number; hash: string; text: string }> } {
  const known = new Map(stored);
  const created: Array<{ ordinal: number; hash: string; text: string }> = [];
  let nextOrdinal = lastOrdinal + 1;
  const ordinals = hashed.hashes.map((hash, index) => {
    let ordinal = known.get(hash);
    if (ordinal === undefined) {
      ordinal = nextOrdinal++;
      known.set(hash, ordinal);
      created.push({ ordinal, hash, text: hashed.texts[index]! });
    }
    return ordinal;
  });
  return { runs: encodeRuns(ordinals), created };
}

/** The conversation as a JSON array text, from its messages' stored texts. */
export function conversationJson(runs: MessageRuns, texts: ReadonlyMap<number, string>): string {
  return `[${Array.from(decodeRuns(runs), (ordinal) => texts.get(ordinal) ?? "null").join(",")}]`;
}

/** Sorted, overlapping and adjacent runs merged: what a page of conversations refers to, as few ranges as possible. */
export function mergeRuns(runs: MessageRuns): MessageRuns {
  const sorted = [...runs].sort((a, b) => a[0] - b[0]);
  const merged: MessageRuns = [];
  for (const [first, last] of sorted) {
    const previous = merged.at(-1);
    if (previous && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
    else merged.push([first, last]);
  }
  return merged;
}
