import { createHash, hash } from "node:crypto";

/** Ordered message ordinals as inclusive `[first, last]` runs; a growing conversation stays one run. */
export type MessageRuns = Array<[number, number]>;

export function* decodeRuns(runs: MessageRuns): Generator<number> {
  for (const [first, last] of runs) for (let ordinal = first; ordinal <= last; ordinal++) yield ordinal;
}

/** Messages as their JSON texts and hex SHA-256s. */
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
 * A posted conversation: its JSON text (what the reply and GET answer: each message's text, by commas, in
 * brackets), and its messages' texts and hashes, each computed only when asked for. A post that extends the
 * previous checkpoint's conversation serialises the new messages alone, apart from the whole text.
 */
export class PostedConversation {
  readonly json: string;
  readonly #texts: Array<string | undefined>;
  readonly #hashes: Array<string | undefined>;

  constructor(readonly messages: unknown[]) {
    this.json = JSON.stringify(messages);
    this.#texts = new Array(messages.length);
    this.#hashes = new Array(messages.length);
  }

  get length(): number {
    return this.messages.length;
  }

  text(index: number): string {
    return (this.#texts[index] ??= JSON.stringify(this.messages[index]) ?? "null");
  }

  /** The messages from `from` on. */
  hashed(from: number): HashedMessages {
    const texts: string[] = [];
    const hashes: string[] = [];
    for (let index = from; index < this.messages.length; index++) {
      texts.push(this.text(index));
      hashes.push((this.#hashes[index] ??= hash("sha256", this.text(index), "hex")));
    }
    return { texts, hashes };
  }
}

/** The conversation a new checkpoint may extend: the hash of its JSON text and its ordinals. */
export interface PreviousConversation {
  hash: string;
  runs: MessageRuns;
}

export const runLength = (runs: MessageRuns) => runs.reduce((count, [first, last]) => count + last - first + 1, 0);

/**
 * The hex SHA-256 of the conversation's JSON text and, when its first messages are exactly `previous`'s
 * conversation, how many they are. One pass over the text: the hash of the part that would be the previous
 * text (up to its last message, then `]`) is taken on the way to the whole one. Equal hashes mean equal
 * texts, and a JSON array's text splits into its elements one way only.
 */
export function hashConversation(
  conversation: PostedConversation,
  previous: PreviousConversation | undefined,
): {
  hash: string;
  prefixLength?: number;
} {
  const count = previous ? runLength(previous.runs) : -1;
  if (!previous || count > conversation.length) return { hash: hash("sha256", conversation.json, "hex") };
  let tailChars = Math.max(0, conversation.length - count - 1); // the commas between the messages after the prefix
  for (let index = count; index < conversation.length; index++) tailChars += conversation.text(index).length;
  const separator = count > 0 && conversation.length > count ? 1 : 0;
  const cut = conversation.json.length - 1 - tailChars - separator;
  const whole = createHash("sha256").update(conversation.json.slice(0, cut));
  const prefixHash = whole.copy().update("]").digest("hex");
  const digest = whole.update(conversation.json.slice(cut)).digest("hex");
  return prefixHash === previous.hash ? { hash: digest, prefixLength: count } : { hash: digest };
}

/**
 * Each distinct message of a job is stored once (by the hash of its JSON text). Given the ordinals of the
 * job's stored messages among these hashes and its last ordinal, returns the conversation as runs of
 * ordinals (after the runs of a conversation it extends, if any) and the messages to store. The caller
 * holds the job's row lock, so ordinals never race.
 */
export function assignOrdinals(
  hashed: HashedMessages,
  stored: Map<string, number>,
  lastOrdinal: number,
  extending: MessageRuns = [],
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
  return { runs: appendRuns(extending, ordinals), created };
}

export function encodeRuns(ordinals: number[]): MessageRuns {
  return appendRuns([], ordinals);
}

function appendRuns(runs: MessageRuns, ordinals: number[]): MessageRuns {
  const result: MessageRuns = runs.map(([first, last]) => [first, last]);
  for (const ordinal of ordinals) {
    const last = result.at(-1);
    if (last && last[1] + 1 === ordinal) last[1] = ordinal;
    else result.push([ordinal, ordinal]);
  }
  return result;
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
