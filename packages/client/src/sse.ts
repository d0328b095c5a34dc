import { createParser } from "eventsource-parser";

export type SseItem = { kind: "event"; event: string; data: string; id?: string } | { kind: "comment"; text: string };

/**
 * Parses a text/event-stream body (WHATWG HTML §9.2.6) with `eventsource-parser`, yielding events and
 * comments (so callers can see keep-alives) as each chunk completes them. An unterminated last event
 * is dropped, as EventSource drops it.
 */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<SseItem, void, undefined> {
  const parsed: SseItem[] = [];
  const parser = createParser({
    onEvent: ({ event, data, id }) => parsed.push({ kind: "event", event: event || "message", data, ...(id !== undefined && { id }) }),
    onComment: (comment) => parsed.push({ kind: "comment", text: comment.trimStart() }),
  });
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let endsWithCR = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      // The parser holds a last CR back in case an LF follows (CRLF is one line end): at the end there is none.
      if (done) {
        if (endsWithCR) parser.feed("\n");
        yield* parsed.splice(0);
        return;
      }
      const text = decoder.decode(value, { stream: true });
      if (text !== "") endsWithCR = text.endsWith("\r");
      parser.feed(text);
      yield* parsed.splice(0);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
