import { expect } from "vitest";

export interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

export interface SseStream {
  status: number;
  headers: Headers;
  /** Events received so far (appended as they arrive). */
  events: SseEvent[];
  /** Comment lines (`: ping`) received so far. */
  comments: string[];
  /** Resolves once `count` events have arrived (or rejects after `timeoutMs`). */
  waitFor(count: number, timeoutMs?: number): Promise<SseEvent[]>;
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  close(): void;
}

/** A minimal SSE client over fetch that keeps every event and comment it sees. */
export async function openSse(url: string, headers: Record<string, string> = {}): Promise<SseStream> {
  const controller = new AbortController();
  const response = await fetch(url, { headers: { accept: "text/event-stream", ...headers }, signal: controller.signal });
  const events: SseEvent[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((waiter) => waiter());
  let resolveEnded!: () => void;
  const ended = new Promise<void>((resolve) => (resolveEnded = resolve));

  const pump = async () => {
    if (!response.body) return;
    const decoder = new TextDecoder();
    // Text since the last complete event, in pieces: a many-megabyte event arrives in hundreds of chunks,
    // and joining only once its blank line arrived keeps reading it linear.
    let pieces: string[] = [];
    let lastChar = "";
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        const text = decoder.decode(chunk, { stream: true });
        if (text === "") continue;
        const ends = (lastChar + text).includes("\n\n");
        pieces.push(text);
        lastChar = text.at(-1)!;
        if (!ends) continue;
        let buffer = pieces.join("");
        let boundary: number;
        while ((boundary = buffer.indexOf("\n\n")) !== -1) {
          const block = buffer.slice(0, boundary);
          buffer = buffer.slice(boundary + 2);
          const event: SseEvent = { event: "message", data: "" };
          let isEvent = false;
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) comments.push(line.slice(1).trim());
            else if (line.startsWith("id: ")) event.id = line.slice(4);
            else if (line.startsWith("event: ")) event.event = line.slice(7);
            else if (line.startsWith("data: ")) {
              event.data = line.slice(6);
              isEvent = true;
            }
          }
          if (isEvent) events.push(event);
          notify();
        }
        pieces = buffer === "" ? [] : [buffer];
        lastChar = buffer.at(-1) ?? "";
      }
    } catch {
      // aborted or connection reset
    } finally {
      resolveEnded();
      notify();
    }
  };
  void pump();

  let done = false;
  void ended.then(() => (done = true));
  return {
    status: response.status,
    headers: response.headers,
    events,
    comments,
    ended,
    waitFor(count, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (events.length >= count) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(events.slice(0, count));
          } else if (done) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(new Error(`stream ended after ${events.length} of ${count} events`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out with ${events.length} of ${count} events`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => controller.abort(),
  };
}

/**
 * A fresh stream meets an outage of what brings notifications: steps 1–2 are posted before it, 3–4
 * during it (`begin` until `end`), 5 after. The stream must get 1–5, each once, in order.
 */
export async function streamThroughOutage(
  stream: SseStream,
  post: (steps: number[]) => Promise<unknown>,
  outage: { begin(): Promise<void>; end?(): Promise<void> },
): Promise<void> {
  await post([1, 2]);
  await stream.waitFor(2);
  await outage.begin();
  await post([3, 4]);
  await outage.end?.();
  await stream.waitFor(4, 15_000);
  await post([5]);
  await stream.waitFor(5, 15_000);
  expect(stream.events.filter((event) => event.event === "message").map((event) => event.id)).toEqual(["1", "2", "3", "4", "5"]);
  stream.close();
}
