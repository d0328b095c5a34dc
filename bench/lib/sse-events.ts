/**
 * Finding the events in an SSE response body as it arrives, without copying it. The server writes every
 * event whole, as one HTTP chunk, and an event ends at its first blank line: its data line is JSON, which
 * has no raw newline. Only each event's first bytes are kept (the chunk-size line and `id: <seq>` or
 * `event: …`), however large the event.
 */

const BLANK_LINE = Buffer.from("\n\n");
const ID_FIELD = Buffer.from("id: ");
/** What an event's start holds: the chunk-size line and `id: <seq>` or `event: complete` (at most ~30 bytes). */
const HEAD_BYTES = 48;

export class EventScanner {
  /** The current event's first bytes (copies), while fewer than HEAD_BYTES have arrived. */
  #head: Buffer[] = [];
  #headLength = 0;
  /** Body bytes before the current read, and where the current event started. */
  #offset = 0;
  #eventStart = 0;
  /** The previous read ended with "\n": a "\n" at the start of this one ends the event. */
  #endedWithNewline = false;

  /** `onEvent(head, bytes, at)`: an event ended; `head` is its first bytes, `bytes` its size from its start (chunk framing included). */
  constructor(private readonly onEvent: (head: Buffer, bytes: number, at: number) => void) {}

  /** The next bytes of the body, read at `at`. Nothing keeps a view of `chunk`. */
  push(chunk: Buffer, at: number) {
    let from = 0;
    for (;;) {
      let end: number;
      if (this.#endedWithNewline && from === 0 && chunk.length > 0 && chunk[0] === 10) end = 1;
      else {
        const found = chunk.indexOf(BLANK_LINE, from);
        end = found === -1 ? -1 : found + 2;
      }
      if (end === -1) {
        this.#keepHead(chunk, from, chunk.length);
        break;
      }
      this.#keepHead(chunk, from, end);
      this.onEvent(Buffer.concat(this.#head, this.#headLength), this.#offset + end - this.#eventStart, at);
      this.#head = [];
      this.#headLength = 0;
      this.#eventStart = this.#offset + end;
      from = end;
    }
    this.#endedWithNewline = chunk.length > 0 && chunk[chunk.length - 1] === 10;
    this.#offset += chunk.length;
  }

  #keepHead(chunk: Buffer, from: number, to: number) {
    if (this.#headLength >= HEAD_BYTES || from >= to) return;
    const part = Buffer.from(chunk.subarray(from, Math.min(to, from + HEAD_BYTES - this.#headLength)));
    this.#head.push(part);
    this.#headLength += part.length;
  }
}

/** The event's sequence number from its `id:` line, or undefined (a ping, `complete`, `error`). */
export function eventId(head: Buffer): number | undefined {
  const start = head.indexOf(ID_FIELD);
  if (start === -1 || (start > 0 && head[start - 1] !== 10)) return undefined;
  const end = head.indexOf(10, start);
  return end === -1 ? undefined : Number(head.toString("latin1", start + ID_FIELD.length, end));
}

/** The event's size from its `id:` line to its end (without the chunk framing before it). */
export const eventBytes = (head: Buffer, bytes: number): number => bytes - Math.max(0, head.indexOf(ID_FIELD));

const COMPLETE = Buffer.from("event: complete\n");
export const isComplete = (head: Buffer): boolean => head.includes(COMPLETE);
