import { ExpertJobsApiError, ExpertJobsStreamError, errorFromResponse } from "./errors.ts";
import { parseEventStream, type SseItem } from "./sse.ts";
import type { Checkpoint, Exclude, ExpertJob, ExpertJobStatus, JobChange, StreamEvent } from "./types.ts";

export interface RetryOptions {
  /** First reconnect delay; it doubles per failed attempt up to `maxDelayMs`, with jitter (default 500). */
  initialDelayMs?: number;
  /** Default 10000. */
  maxDelayMs?: number;
  /** Failed reconnects in a row before the stream throws ExpertJobsStreamError (default: never gives up, like EventSource). */
  maxRetries?: number;
}

export interface StreamOptions extends ReconnectOptions {
  /** Start after this event id (a checkpoint's sequence number), e.g. the last one a previous stream delivered. */
  after?: number;
  /**
   * Heavy parts to leave out of every checkpoint: `"messages"` (and `inputMessages`: the whole conversation),
   * `"newMessages"`, `"toolCall"`, `"toolResult"`, `"actionContent"` — one name or several.
   */
  exclude?: Exclude;
}

export interface StreamTransport {
  open(path: string, headers: Record<string, string>, signal: AbortSignal): Promise<Response>;
}

/** The server reported a failure while streaming (`event: error`); it ends the response and expects a resume. */
class ServerStreamError extends Error {}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason);
      else resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });

/** Reconnect behaviour shared by every stream of the client. */
export interface ReconnectOptions {
  /** Ends the stream: the iteration throws the signal's reason. */
  signal?: AbortSignal;
  retry?: RetryOptions;
  /** Called before each reconnect with the failure that caused it. */
  onReconnect?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

/** What a reconnecting stream yields: `open` each time a response starts, then its events and comments. */
type Delivery = { kind: "open" } | SseItem;

/**
 * Opens `path` and yields what it sends; when the response fails or ends, or the server sends an
 * `error` event, reconnects with backoff (each connection's headers from `headers()`, so a resume can
 * send the newest Last-Event-ID) until the caller stops iterating. HTTP 4xx answers (other than
 * 408/429) are final and thrown as ExpertJobsApiError.
 */
async function* reconnecting(
  transport: StreamTransport,
  path: string,
  headers: () => Record<string, string>,
  options: ReconnectOptions,
): AsyncGenerator<Delivery, never, undefined> {
  const { initialDelayMs = 500, maxDelayMs = 10_000, maxRetries = Infinity } = options.retry ?? {};
  let failures = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    const connection = new AbortController();
    const abort = () => connection.abort(options.signal?.reason);
    options.signal?.addEventListener("abort", abort, { once: true });
    let failure: unknown;
    try {
      const response = await transport.open(path, { accept: "text/event-stream", ...headers() }, connection.signal);
      if (!response.ok || !response.body) {
        const error = await errorFromResponse(response);
        if (!error.retryable) throw error;
        throw new ExpertJobsStreamError(`stream refused: ${error.message}`, { cause: error });
      }
      yield { kind: "open" };
      for await (const item of parseEventStream(response.body)) {
        if (item.kind === "event" && item.event === "error") throw new ServerStreamError(`server stream error: ${item.data}`);
        failures = 0;
        yield item;
      }
      failure = new Error("the stream ended");
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (error instanceof ExpertJobsApiError) throw error;
      failure = error;
    } finally {
      options.signal?.removeEventListener("abort", abort);
      connection.abort();
    }

    failures++;
    if (failures > maxRetries) throw new ExpertJobsStreamError(`gave up after ${maxRetries} reconnects`, { cause: failure });
    const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** (failures - 1));
    // Half fixed, half random: spreads many clients reconnecting to a restarted server.
    const delayMs = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    options.onReconnect?.({ attempt: failures, delayMs, error: failure });
    await sleep(delayMs, options.signal ?? new AbortController().signal);
  }
}

/**
 * Yields a job's checkpoints in order, each exactly once, then `complete`. On a network error, a
 * server restart or an `error` event it reconnects with backoff, sending `Last-Event-ID` so the
 * server resumes right after the last checkpoint delivered. HTTP 4xx answers (other than 408/429)
 * are final and thrown as ExpertJobsApiError.
 */
export async function* streamCheckpoints(
  transport: StreamTransport,
  expertJobId: string,
  options: StreamOptions = {},
): AsyncGenerator<StreamEvent, void, undefined> {
  const exclude = typeof options.exclude === "string" ? [options.exclude] : (options.exclude ?? []);
  const query = exclude.length > 0 ? `?exclude=${exclude.join(",")}` : "";
  const path = `/api/studio/v1/expert_jobs/${encodeURIComponent(expertJobId)}/checkpoints/stream${query}`;
  let lastEventId = options.after;
  const resumeFrom = (): Record<string, string> => (lastEventId === undefined ? {} : { "last-event-id": String(lastEventId) });
  for await (const item of reconnecting(transport, path, resumeFrom, options)) {
    if (item.kind !== "event") continue;
    if (item.event === "message") {
      const id = Number(item.id);
      if (lastEventId !== undefined && id <= lastEventId) continue;
      lastEventId = id;
      yield { type: "checkpoint", id, checkpoint: JSON.parse(item.data) as Checkpoint };
    } else if (item.event === "complete") {
      const { status, expertJobId: jobId } = JSON.parse(item.data) as { status: ExpertJobStatus; expertJobId: string };
      yield { type: "complete", status, expertJobId: jobId };
      return;
    }
  }
}

/**
 * The application's job changes (`GET …/expert_jobs/stream`), for as long as the caller iterates.
 * Nothing is replayed, so each (re)connection first yields `connected`: read the job list then, and
 * apply the `job` events that follow (each the job as GET answers it). Reconnects like `streamCheckpoints`.
 */
export async function* streamJobChanges(
  transport: StreamTransport,
  options: ReconnectOptions = {},
): AsyncGenerator<JobChange, never, undefined> {
  for await (const item of reconnecting(transport, "/api/studio/v1/expert_jobs/stream", () => ({}), options)) {
    if (item.kind === "open") yield { type: "connected" };
    else if (item.kind === "event" && item.event === "message") yield { type: "job", expertJob: JSON.parse(item.data) as ExpertJob };
  }
  throw new Error("unreachable: a reconnecting stream never ends");
}
