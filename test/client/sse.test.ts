import { describe, expect, it } from "vitest";
import { parseEventStream, type SseItem } from "@expert-jobs/client";

function body(chunks: Array<string | Uint8Array>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? encoder.encode(chunk) : chunk);
      controller.close();
    },
  });
}

async function parse(chunks: Array<string | Uint8Array>): Promise<SseItem[]> {
  const items: SseItem[] = [];
  for await (const item of parseEventStream(body(chunks))) items.push(item);
  return items;
}

describe("parseEventStream", () => {
  it("reads ids, event names, comments and multi-line data", async () => {
    expect(await parse(['id: 1\nevent: message\ndata: {"a":1}\n\n: ping\n\nevent: complete\ndata: x\ndata:y\n\n'])).toEqual([
      { kind: "event", event: "message", data: '{"a":1}', id: "1" },
      { kind: "comment", text: "ping" },
      { kind: "event", event: "complete", data: "x\ny" },
    ]);
  });

  it("gives the same events however the bytes are split (CRLF, CR and multi-byte characters across chunks)", async () => {
    const text = "id: 7\r\ndata: héllo ✓\r\n\r\nid: 8\rdata: two\r\r";
    const expected = [
      { kind: "event", event: "message", data: "héllo ✓", id: "7" },
      { kind: "event", event: "message", data: "two", id: "8" },
    ];
    const bytes = new TextEncoder().encode(text);
    for (let size = 1; size <= 5; size++) {
      const chunks: Uint8Array[] = [];
      for (let offset = 0; offset < bytes.length; offset += size) chunks.push(bytes.slice(offset, offset + size));
      expect(await parse(chunks)).toEqual(expected);
    }
  });

  it("gives an event its own id only: `complete` after `id: 3` carries none", async () => {
    expect(await parse(["id: 3\ndata: a\n\nevent: complete\ndata: b\n\n"])).toEqual([
      { kind: "event", event: "message", data: "a", id: "3" },
      { kind: "event", event: "complete", data: "b" },
    ]);
  });

  it("reads a multi-MB event arriving in 1 KiB chunks intact", async () => {
    const data = JSON.stringify({ text: "résumé ✓ ".repeat(400_000) });
    const bytes = new TextEncoder().encode(`id: 9\nevent: message\ndata: ${data}\n\n`);
    expect(bytes.length).toBeGreaterThan(4_000_000);
    const chunks: Uint8Array[] = [];
    for (let offset = 0; offset < bytes.length; offset += 1024) chunks.push(bytes.slice(offset, offset + 1024));
    const items = await parse(chunks);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ kind: "event", event: "message", id: "9" });
    expect((items[0] as { data: string }).data === data).toBe(true);
  });

  it("drops events without data and an unterminated last event", async () => {
    expect(await parse(["event: nothing\n\n", "data: cut off"])).toEqual([]);
  });
});
