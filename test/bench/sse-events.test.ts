import { describe, expect, it } from "vitest";
import { EventScanner, eventBytes, eventId, isComplete } from "../../bench/lib/sse-events.ts";

/** A response body as the server writes it: chunked, one chunk per write, each SSE event written whole. */
function chunked(writes: string[]): Buffer {
  const body = writes.map((write) => `${Buffer.byteLength(write).toString(16)}\r\n${write}\r\n`).join("") + "0\r\n\r\n";
  return Buffer.from(body);
}

const event = (seq: number, data: string) => `id: ${seq}\nevent: message\ndata: ${data}\n\n`;

/** Feeds the body in pieces ending at `cuts`, and returns what the scanner reported. */
function scan(body: Buffer, cuts: number[]) {
  const seen: Array<{ seq?: number; complete: boolean; bytes: number; at: number }> = [];
  const scanner = new EventScanner((head, bytes, at) =>
    seen.push({ seq: eventId(head), complete: isComplete(head), bytes: eventBytes(head, bytes), at }),
  );
  let from = 0;
  for (const [index, cut] of [...cuts, body.length].entries()) {
    if (cut <= from) continue;
    // A copy per read, reused afterwards: the scanner may keep no view of what it was given.
    const read = Buffer.from(body.subarray(from, cut));
    scanner.push(read, index);
    read.fill(0);
    from = cut;
  }
  return seen;
}

describe("bench SSE event scanner", () => {
  const large = JSON.stringify({ messages: [{ text: "x".repeat(1_000_000) }, { text: 'é\\n"quoted"' }] });
  const writes = [
    ": ping\n\n",
    event(1, '{"a":1}'),
    event(2, large),
    ": ping\n\n",
    event(3, "{}"),
    'event: complete\ndata: {"status":"completed"}\n\n',
  ];
  const body = chunked(writes);
  const expected = [
    { seq: undefined, complete: false },
    { seq: 1, complete: false, bytes: Buffer.byteLength(writes[1]!) },
    { seq: 2, complete: false, bytes: Buffer.byteLength(writes[2]!) },
    { seq: undefined, complete: false },
    { seq: 3, complete: false, bytes: Buffer.byteLength(writes[4]!) },
    { seq: undefined, complete: true },
  ];
  const check = (seen: ReturnType<typeof scan>) => {
    expect(seen.map(({ seq, complete }) => ({ seq, complete }))).toEqual(expected.map(({ seq, complete }) => ({ seq, complete })));
    for (const [index, want] of expected.entries()) if (want.bytes !== undefined) expect(seen[index]!.bytes).toBe(want.bytes);
  };

  it("finds every event, its id and its size in one read", () => check(scan(body, [])));

  it("finds them however the reads split the body, blank lines and id lines included", () => {
    const blankLines: number[] = [];
    for (let at = body.indexOf("\n\n"); at !== -1; at = body.indexOf("\n\n", at + 1)) blankLines.push(at + 1);
    // Between the two newlines that end each event, inside every id line, and one byte at a time around event 3.
    check(scan(body, blankLines));
    const idLines = [...body.toString("latin1").matchAll(/id: /g)].map((match) => match.index! + 2);
    check(scan(body, idLines));
    const third = body.indexOf("id: 3");
    check(
      scan(
        body,
        Array.from({ length: 40 }, (_, offset) => third - 15 + offset),
      ),
    );
    let seed = 7;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let round = 0; round < 20; round++) {
      const cuts = Array.from({ length: 30 }, () => Math.floor(random() * body.length)).sort((a, b) => a - b);
      check(scan(body, cuts));
    }
  });

  it("reports an event when its last byte arrives, not its first", () => {
    const start = body.indexOf("id: 2");
    const seen = scan(body, [start + 10, start + 500_000, start + Buffer.byteLength(writes[2]!) - 1]);
    const second = seen.find((e) => e.seq === 2)!;
    // Reads are numbered by index: the one holding its last byte is the fourth.
    expect(second.at).toBe(3);
  });
});
