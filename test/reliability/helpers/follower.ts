export interface Follower {
  /** Event ids of every `message` received, across reconnects, in arrival order. */
  ids: number[];
  /** `event: error` payloads received. */
  errors: string[];
  /** Statuses other than 200 met while (re)connecting. */
  refusals: number[];
  reconnects: number;
  completed?: { status: string; expertJobId: string };
  /** Resolves on the first 200. */
  connected: Promise<void>;
  /** Resolves after `complete` (or stop()). */
  done: Promise<void>;
  /** Drops the current connection; the follower reconnects with Last-Event-ID. */
  kill(): void;
  stop(): void;
}

/**
 * A stream client that behaves like EventSource: it reconnects after any end that is not `complete`
 * (an `event: error`, a dropped connection, a 5xx while the server or its database is down) and resumes
 * with Last-Event-ID, so what it collects shows whether anything was lost or repeated.
 */
export function follow(url: string, headers: Record<string, string>, options: { retryMs?: number; after?: number } = {}): Follower {
  const retryMs = options.retryMs ?? 100;
  const controller = new AbortController();
  let connection: AbortController | undefined;
  let resolveConnected!: () => void;
  let resolveDone!: () => void;
  const follower: Follower = {
    ids: [],
    errors: [],
    refusals: [],
    reconnects: 0,
    connected: new Promise((resolve) => (resolveConnected = resolve)),
    done: new Promise((resolve) => (resolveDone = resolve)),
    kill: () => connection?.abort(),
    stop: () => controller.abort(),
  };
  const resumeFrom = options.after;
  controller.signal.addEventListener("abort", () => resolveDone());

  const once = async (): Promise<"complete" | "again"> => {
    const lastId = follower.ids.at(-1) ?? resumeFrom;
    connection = new AbortController();
    const response = await fetch(url, {
      headers: { accept: "text/event-stream", ...headers, ...(lastId !== undefined && { "last-event-id": String(lastId) }) },
      signal: AbortSignal.any([controller.signal, connection.signal]),
    });
    if (response.status !== 200 || !response.body) {
      follower.refusals.push(response.status);
      await response.body?.cancel();
      return "again";
    }
    resolveConnected();
    const decoder = new TextDecoder();
    let buffer = "";
    for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
      buffer += decoder.decode(chunk, { stream: true });
      let boundary: number;
      while ((boundary = buffer.indexOf("\n\n")) !== -1) {
        const block = buffer.slice(0, boundary);
        buffer = buffer.slice(boundary + 2);
        let id: string | undefined;
        let event = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("id: ")) id = line.slice(4);
          else if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data = line.slice(6);
        }
        if (event === "message" && id !== undefined) follower.ids.push(Number(id));
        else if (event === "error") follower.errors.push(data);
        else if (event === "complete") {
          follower.completed = JSON.parse(data);
          return "complete";
        }
      }
    }
    return "again";
  };

  void (async () => {
    while (!controller.signal.aborted) {
      try {
        if ((await once()) === "complete") break;
      } catch {
        // connection refused or reset: retry like EventSource
      }
      if (controller.signal.aborted) break;
      follower.reconnects++;
      await new Promise((resolve) => setTimeout(resolve, retryMs));
    }
    resolveDone();
  })();
  return follower;
}

/** What a follower got compared with 1..expected: lost, duplicated and out-of-order event ids. */
export function audit(ids: number[], expected: number): { lost: number; duplicated: number; outOfOrder: number } {
  const seen = new Set<number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let last = 0;
  for (const id of ids) {
    if (seen.has(id)) duplicated++;
    else if (id < last) outOfOrder++;
    seen.add(id);
    last = Math.max(last, id);
  }
  let lost = 0;
  for (let id = 1; id <= expected; id++) if (!seen.has(id)) lost++;
  return { lost, duplicated, outOfOrder };
}
