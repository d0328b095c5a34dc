export type SseItem = { kind: "event"; event: string; data: string; id?: string } | { kind: "comment"; text: string };

/**
 * Parses a text/event-stream body (WHATWG HTML §9.2.6): any of CRLF, LF or CR ends a line, `data`
 * lines join with LF, a blank line dispatches, comments are reported so callers can see keep-alives.
 * Each chunk is scanned once, so a checkpoint of many megabytes arriving in small chunks stays linear.
 */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<SseItem, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const lineBreak = /\r\n|\r|\n/g;
  let partial = "";
  let afterCR = false;
  let event = "";
  let data: string[] = [];
  let id: string | undefined;

  function* line(text: string): Generator<SseItem> {
    if (text === "") {
      if (data.length > 0) yield { kind: "event", event: event || "message", data: data.join("\n"), ...(id !== undefined && { id }) };
      event = "";
      data = [];
      id = undefined;
      return;
    }
    if (text.startsWith(":")) {
      yield { kind: "comment", text: text.slice(1).trimStart() };
      return;
    }
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    const value = colon === -1 ? "" : text.slice(colon + (text[colon + 1] === " " ? 2 : 1));
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id" && !value.includes("\0")) id = value;
  }

  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const text = decoder.decode(value, { stream: true });
      // A CRLF split across chunks: its LF opens this one.
      let start: number = afterCR && text.startsWith("\n") ? 1 : 0;
      afterCR = false;
      lineBreak.lastIndex = start;
      for (let found = lineBreak.exec(text); found; found = lineBreak.exec(text)) {
        const complete = partial + text.slice(start, found.index);
        partial = "";
        start = found.index + found[0].length;
        afterCR = found[0] === "\r" && start === text.length;
        yield* line(complete);
      }
      partial += text.slice(start);
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
