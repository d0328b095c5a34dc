import { createHash, hash, type Hash } from "node:crypto";

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
 * conversation its job's last post ended with serialises the new messages alone (ConversationCache).
 */
export class PostedConversation {
  #json: string | undefined;
  #open: string | undefined;
  readonly #texts: Array<string | undefined>;
  readonly #hashes: Array<string | undefined>;

  constructor(readonly messages: unknown[]) {
    this.#texts = new Array(messages.length);
    this.#hashes = new Array(messages.length);
  }

  /** `JSON.stringify(messages)`: computed when asked for, unless an extension of a known text gave it. */
  get json(): string {
    return (this.#json ??= JSON.stringify(this.messages));
  }

  /**
   * The text without its closing `]`. After an extension it is the concatenation itself: slicing the whole
   * text instead would copy it (a concatenated string is flattened before it is sliced: ~0.5 ms at 2 MB,
   * the largest cost of `remember` in a CPU profile of the length benchmark).
   */
  get open(): string {
    return (this.#open ??= this.json.slice(0, -1));
  }

  get length(): number {
    return this.messages.length;
  }

  text(index: number): string {
    return (this.#texts[index] ??= JSON.stringify(this.messages[index]) ?? "null");
  }

  /** The text from `from` on, after the given text of the messages before it (without its closing `]`). */
  extend(open: string, from: number): { tail: string; json: string } {
    const texts: string[] = [];
    for (let index = from; index < this.messages.length; index++) texts.push(this.text(index));
    const tail = (from > 0 && texts.length > 0 ? "," : "") + texts.join(",");
    this.#open = open + tail;
    this.#json = this.#open + "]";
    return { tail, json: this.#json };
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

/**
 * Whether two parsed JSON values serialise to the same text: the same primitives, the same keys in the same
 * order. (From JSON.parse there is no undefined, NaN or toJSON function; Infinity is refused before this, and
 * -0 and 0 both write `0`.) Recursion is bounded by MAX_JSON_DEPTH, checked at parse.
 */
export function sameJson(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== "object" || typeof right !== "object" || left === null || right === null) return false;
  if (Array.isArray(left)) {
    if (!Array.isArray(right) || left.length !== right.length) return false;
    for (let index = 0; index < left.length; index++) if (!sameJson(left[index], right[index])) return false;
    return true;
  }
  if (Array.isArray(right)) return false;
  const leftKeys = Object.keys(left);
  const rightKeys = Object.keys(right);
  if (leftKeys.length !== rightKeys.length) return false;
  for (let index = 0; index < leftKeys.length; index++) {
    const key = leftKeys[index]!;
    if (key !== rightKeys[index] || !sameJson((left as Record<string, unknown>)[key], (right as Record<string, unknown>)[key]))
      return false;
  }
  return true;
}

/** The conversation a new checkpoint may extend: the hash of its JSON text and its ordinals. */
export interface PreviousConversation {
  hash: string;
  runs: MessageRuns;
}

export const runLength = (runs: MessageRuns) => runs.reduce((count, [first, last]) => count + last - first + 1, 0);

/**
 * A conversation's hash, how many of its first messages are the previous conversation (when they are), its
 * text's UTF-8 length, and the SHA-256 state of its text without the closing `]` (what the next
 * conversation's hash goes on from when it extends this one).
 */
export interface HashedConversation {
  hash: string;
  prefixLength?: number;
  bytes: number;
  open: Hash;
}

/** The hash and the open state of a text ending in `]`, from the state of the part before `from`. */
function closeHash(state: Hash, json: string, from: number): { hash: string; open: Hash } {
  const open = state.update(json.slice(from, -1));
  return { hash: open.copy().update("]").digest("hex"), open };
}

/**
 * The hex SHA-256 of the conversation's JSON text and, when its first messages are exactly `previous`'s
 * conversation, how many they are. One pass over the text: the hash of the part that would be the previous
 * text (up to its last message, then `]`) is taken on the way to the whole one. Equal hashes mean equal
 * texts, and a JSON array's text splits into its elements one way only.
 */
export function hashConversation(conversation: PostedConversation, previous: PreviousConversation | undefined): HashedConversation {
  const { json } = conversation;
  const bytes = Buffer.byteLength(json);
  const count = previous ? runLength(previous.runs) : -1;
  if (!previous || count > conversation.length) return { ...closeHash(createHash("sha256"), json, 0), bytes };
  let tailChars = Math.max(0, conversation.length - count - 1); // the commas between the messages after the prefix
  for (let index = count; index < conversation.length; index++) tailChars += conversation.text(index).length;
  const separator = count > 0 && conversation.length > count ? 1 : 0;
  const cut = json.length - 1 - tailChars - separator;
  const head = createHash("sha256").update(json.slice(0, cut));
  const prefixHash = head.copy().update("]").digest("hex");
  const whole = { ...closeHash(head, json, cut), bytes };
  return prefixHash === previous.hash ? { ...whole, prefixLength: count } : whole;
}

interface RememberedConversation {
  hash: string;
  /** The parsed messages it was posted as. */
  messages: unknown[];
  /** The text without its closing `]`. */
  open: string;
  bytes: number;
  state: Hash;
}

/**
 * The conversation each job's last post on this instance ended with. The next post usually extends it:
 * then its first messages are the remembered ones (compared as parsed values, without serialising them:
 * at 2 MB that is a few times cheaper than `JSON.stringify`, measured in bench/prefix-compare.ts), and only
 * the new messages are serialised, hashed and measured, so a post's cost beyond parsing does not grow with
 * the job's length. Any other post (a miss, an edit, another instance's post in between: the previous
 * conversation's hash read with the job differs) takes the whole path (hashConversation). Bounded by the
 * texts' total length (the parsed messages take a few times more), the least recently posted forgotten first.
 */
export class ConversationCache {
  readonly #entries = new Map<string, RememberedConversation>();
  #chars = 0;

  constructor(private readonly maxChars: number) {}

  hash(expertJobId: string, conversation: PostedConversation, previous: PreviousConversation | undefined): HashedConversation {
    const remembered = this.#entries.get(expertJobId);
    if (remembered && previous && remembered.hash === previous.hash && this.#extends(conversation, remembered)) {
      const prefixLength = remembered.messages.length;
      const { tail } = conversation.extend(remembered.open, prefixLength);
      if (tail === "") return { hash: remembered.hash, prefixLength, bytes: remembered.bytes, open: remembered.state.copy() };
      const open = remembered.state.copy().update(tail);
      const bytes = remembered.bytes + Buffer.byteLength(tail);
      return { hash: open.copy().update("]").digest("hex"), open, prefixLength, bytes };
    }
    return hashConversation(conversation, previous);
  }

  #extends(conversation: PostedConversation, remembered: RememberedConversation): boolean {
    const { messages } = remembered;
    if (conversation.length < messages.length) return false;
    for (let index = 0; index < messages.length; index++) if (!sameJson(conversation.messages[index], messages[index])) return false;
    return true;
  }

  /** What a job's stored checkpoint ended with (called once its post committed). */
  remember(expertJobId: string, conversation: PostedConversation, hashed: HashedConversation): void {
    this.#forget(expertJobId);
    const { open } = conversation;
    if (open.length > this.maxChars) return;
    this.#entries.set(expertJobId, {
      hash: hashed.hash,
      messages: conversation.messages,
      open,
      bytes: hashed.bytes,
      state: hashed.open.copy(),
    });
    this.#chars += open.length;
    for (const [jobId, entry] of this.#entries) {
      if (this.#chars <= this.maxChars) break;
      this.#entries.delete(jobId);
      this.#chars -= entry.open.length;
    }
  }

  #forget(expertJobId: string): void {
    const entry = this.#entries.get(expertJobId);
    if (!entry) return;
    this.#entries.delete(expertJobId);
    this.#chars -= entry.open.length;
  }

  get size(): number {
    return this.#entries.size;
  }
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
