import type { ServerResponse } from "node:http";
import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { channels, type ApiKeyRevokedPayload, type CheckpointCreatedPayload, type ExpertJobChangedPayload } from "../db/channels.ts";
import { checkpointSerializer } from "../modules/checkpoints/checkpoint-json.ts";
import type { Checkpoint } from "../modules/checkpoints/checkpoints.schemas.ts";
import type { CheckpointsService } from "../modules/checkpoints/checkpoints.service.ts";
import type { ExpertJobStatus } from "../modules/expert-jobs/expert-jobs.schemas.ts";
import { isStopped } from "../modules/expert-jobs/job-state.ts";

export interface StreamSubscription {
  expertJobId: string;
  /** The last event id the client has; events after it are sent. */
  afterSeq: number;
  excludeMessages: boolean;
  response: ServerResponse;
  /** The API key that opened the stream, counted against `maxStreamsPerKey`. */
  apiKeyId?: string;
}

export interface StreamHubOptions {
  heartbeatMs: number;
  /** Unsent bytes a client may have queued before it is cut off (it resumes with Last-Event-ID). */
  maxBufferedBytes: number;
  /** Checkpoints read per database round trip while catching up. */
  batchSize: number;
  /** Open streams one API key may hold on this instance (the route answers 429 beyond it). */
  maxStreamsPerKey: number;
  /** How long a feed keeps retrying failed reads (database down) before its streams get `event: error`. */
  readRetryWindowMs: number;
  observer?: StreamHubObserver;
}

/** Timings for metrics. `lagMs`: from the first notification a read serves to its start (undefined for other reads). */
export interface StreamHubObserver {
  feedRead(lagMs: number | undefined, durationMs: number): void;
}

declare module "fastify" {
  interface FastifyInstance {
    streamHub: StreamHub;
  }
}

interface Subscriber {
  response: ServerResponse;
  lastSent: number;
  excludeMessages: boolean;
  apiKeyId?: string;
}

type EventVariant = "full" | "excludeMessages";

interface FeedEvent {
  seq: number;
  frames: Partial<Record<EventVariant, Buffer>>;
}

interface FeedRead {
  status: ExpertJobStatus;
  lastSeq: number;
  events: FeedEvent[];
}

const frame = (event: string, data: string, id?: number) => `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`;

/**
 * All open streams of one job on this instance. Wake-ups are coalesced: at most one read runs per
 * job, each checkpoint is serialised once per variant and written to every subscriber that needs it.
 * Every read starts from the database (seq > what each subscriber has), so a lost or merged
 * notification never loses an event.
 */
class JobFeed {
  readonly subscribers = new Set<Subscriber>();
  #reading = false;
  #again = false;
  #failingSince: number | undefined;
  #failures = 0;
  #notifiedAt: number | undefined;

  constructor(
    readonly expertJobId: string,
    private readonly hub: StreamHub,
  ) {}

  wake(notifiedAt?: number): void {
    if (this.subscribers.size === 0) return;
    if (notifiedAt !== undefined) this.#notifiedAt ??= notifiedAt;
    if (this.#reading) {
      this.#again = true;
      return;
    }
    this.#reading = true;
    const started = performance.now();
    const lagMs = this.#notifiedAt === undefined ? undefined : started - this.#notifiedAt;
    this.#notifiedAt = undefined;
    void this.#drain().finally(() => {
      this.hub.observer?.feedRead(lagMs, performance.now() - started);
      this.#reading = false;
      if (this.#again && this.subscribers.size > 0) {
        this.#again = false;
        this.wake();
      }
    });
  }

  async #drain(): Promise<void> {
    let job: (FeedRead & { from: number }) | undefined;
    try {
      // One statement reads the job's status and last_seq with the checkpoints after what the subscribers
      // have; status and last_seq change in the checkpoint's own transaction, so once everything up to
      // lastSeq is sent, a stopped status really is the end of the stream.
      job = await this.#read(this.subscribers);
      if (!job) return this.#failAll("internal", "Expert job not found");
      for (let batch: (FeedRead & { from: number }) | undefined = job; batch;) {
        this.#deliver(batch);
        // Only a batch that brought events can leave anyone behind; an empty one (most reads, e.g. while
        // thousands of streams open) then costs no pass over the subscribers.
        const behind: Subscriber[] =
          batch.events.length > 0 ? [...this.subscribers].filter((subscriber) => subscriber.lastSent < job!.lastSeq) : [];
        batch = behind.length > 0 ? await this.#read(behind) : undefined;
      }
    } catch (error) {
      return this.#readFailed(error);
    }
    this.#failingSince = undefined;
    this.#failures = 0;
    if (isStopped(job.status)) this.#completeAll(job.status, job.lastSeq);
  }

  /** The next batch for these subscribers: from the one furthest behind, in the variants they need. */
  #read(subscribers: Iterable<Subscriber>): Promise<(FeedRead & { from: number }) | undefined> {
    let from = Number.POSITIVE_INFINITY;
    const variants = new Set<EventVariant>();
    for (const subscriber of subscribers) {
      from = Math.min(from, subscriber.lastSent);
      variants.add(subscriber.excludeMessages ? "excludeMessages" : "full");
    }
    const after = Number.isFinite(from) ? from : 0;
    return this.hub.readFeed(this.expertJobId, after, variants).then((feed) => feed && { ...feed, from: after });
  }

  #deliver({ events, from }: { events: FeedEvent[]; from: number }) {
    for (const event of events) {
      for (const subscriber of this.subscribers) {
        // A subscriber that joined while this batch was read may be behind its start or need a variant the
        // batch lacks: a later read (it is behind, or woke the feed again) serves it.
        const chunk = event.frames[subscriber.excludeMessages ? "excludeMessages" : "full"];
        if (subscriber.lastSent >= event.seq || subscriber.lastSent < from || !chunk) continue;
        this.hub.write(this, subscriber, chunk);
        subscriber.lastSent = event.seq;
        this.hub.eventsSent++;
      }
    }
  }

  /**
   * A failed read (the database restarting, a dropped connection) keeps the streams open: the feed
   * retries with capped, jittered backoff and then catches up from the database like after any wake-up.
   * Only failures that outlast the retry window end the streams with `event: error`.
   */
  #readFailed(error: unknown) {
    const now = Date.now();
    this.#failingSince ??= now;
    if (now - this.#failingSince >= this.hub.readRetryWindowMs) {
      this.hub.log.error({ err: error, expertJobId: this.expertJobId }, "stream read failed");
      this.#failingSince = undefined;
      this.#failures = 0;
      return this.#failAll("checkpointLoadFailed", "Failed to load checkpoints");
    }
    this.hub.log.warn({ err: error, expertJobId: this.expertJobId }, "stream read failed; retrying");
    const delay = Math.min(5_000, 100 * 2 ** this.#failures++) * (0.5 + Math.random() / 2);
    setTimeout(() => this.wake(), delay).unref();
  }

  #completeAll(status: ExpertJobStatus, lastSeq: number) {
    const data = JSON.stringify({ status, expertJobId: this.expertJobId });
    for (const subscriber of this.subscribers) {
      if (subscriber.lastSent < lastSeq) continue;
      this.hub.end(this, subscriber, frame("complete", data));
    }
  }

  #failAll(type: "checkpointLoadFailed" | "internal", message: string) {
    const data = JSON.stringify({ type, expertJobId: this.expertJobId, message });
    for (const subscriber of this.subscribers) this.hub.end(this, subscriber, frame("error", data));
  }
}

export class StreamHub {
  /** Checkpoint events written to streams since start. */
  eventsSent = 0;
  readonly #feeds = new Map<string, JobFeed>();
  readonly #streamsByKey = new Map<string, number>();
  readonly #json = checkpointSerializer();
  readonly #heartbeat: NodeJS.Timeout;
  #closing = false;

  constructor(
    private readonly checkpoints: CheckpointsService,
    readonly log: FastifyBaseLogger,
    private readonly options: StreamHubOptions,
  ) {
    this.#heartbeat = setInterval(() => this.#ping(), options.heartbeatMs);
    this.#heartbeat.unref();
  }

  get openStreams(): number {
    let count = 0;
    for (const feed of this.#feeds.values()) count += feed.subscribers.size;
    return count;
  }

  get maxStreamsPerKey(): number {
    return this.options.maxStreamsPerKey;
  }

  get readRetryWindowMs(): number {
    return this.options.readRetryWindowMs;
  }

  get observer(): StreamHubObserver | undefined {
    return this.options.observer;
  }

  /** Streams the API key holds open on this instance. */
  streamsOf(apiKeyId: string): number {
    return this.#streamsByKey.get(apiKeyId) ?? 0;
  }

  subscribe(subscription: StreamSubscription): void {
    if (this.#closing) {
      subscription.response.end();
      return;
    }
    let feed = this.#feeds.get(subscription.expertJobId);
    if (!feed) {
      feed = new JobFeed(subscription.expertJobId, this);
      this.#feeds.set(subscription.expertJobId, feed);
    }
    const subscriber: Subscriber = {
      response: subscription.response,
      lastSent: subscription.afterSeq,
      excludeMessages: subscription.excludeMessages,
      apiKeyId: subscription.apiKeyId,
    };
    feed.subscribers.add(subscriber);
    if (subscriber.apiKeyId) this.#streamsByKey.set(subscriber.apiKeyId, this.streamsOf(subscriber.apiKeyId) + 1);
    subscription.response.on("close", () => this.#remove(feed, subscriber));
    // Subscribed before the first read: anything committed from now on is either in that read or wakes another.
    feed.wake();
  }

  notifyCheckpoint(payload: CheckpointCreatedPayload): void {
    this.#feeds.get(payload.expertJobId)?.wake(performance.now());
  }

  notifyJobChanged(payload: Pick<ExpertJobChangedPayload, "expertJobId">): void {
    this.#feeds.get(payload.expertJobId)?.wake(performance.now());
  }

  /**
   * Ends the streams a revoked key holds open, without an event: the client's reconnect gets 401. Only
   * as many feeds as there are open are looked at, and revocations are rare.
   */
  revokeApiKey(apiKeyId: string): void {
    if (this.streamsOf(apiKeyId) === 0) return;
    for (const feed of [...this.#feeds.values()]) {
      for (const subscriber of feed.subscribers) if (subscriber.apiKeyId === apiKeyId) this.end(feed, subscriber, "");
    }
  }

  /** After the LISTEN connection came back: notifications may have been missed, so every feed re-reads. */
  catchUpAll(): void {
    for (const feed of this.#feeds.values()) feed.wake();
  }

  /**
   * The job and its checkpoints after `afterSeq`, each serialised once per variant into the frame every
   * subscriber gets (a Buffer, so writing it to 1,000 streams encodes it once, not 1,000 times).
   */
  async readFeed(expertJobId: string, afterSeq: number, variants: Set<EventVariant>): Promise<FeedRead | undefined> {
    const wantsFull = variants.has("full");
    const feed = await this.checkpoints.readFeed(expertJobId, afterSeq, this.options.batchSize, { excludeMessages: !wantsFull });
    if (!feed) return undefined;
    const events = feed.events.map(({ seq, checkpoint, messagesJson }) => {
      const frames: Partial<Record<EventVariant, Buffer>> = {};
      if (wantsFull) frames.full = Buffer.from(frame("message", this.#json.withMessagesJson(checkpoint, messagesJson!), seq));
      if (variants.has("excludeMessages"))
        frames.excludeMessages = Buffer.from(frame("message", this.#json.serialize(withoutMessages(checkpoint)), seq));
      return { seq, frames };
    });
    return { status: feed.status, lastSeq: feed.lastSeq, events };
  }

  write(feed: JobFeed, subscriber: Subscriber, chunk: string | Buffer): void {
    const { response } = subscriber;
    if (response.destroyed || response.writableEnded) return this.#remove(feed, subscriber);
    // Judged before writing, so one event larger than the bound still goes out to a client that keeps up.
    if (response.writableLength > this.options.maxBufferedBytes) {
      this.log.warn({ expertJobId: feed.expertJobId, buffered: response.writableLength }, "stream client too slow; disconnecting");
      response.destroy();
      return this.#remove(feed, subscriber);
    }
    response.write(chunk);
  }

  end(feed: JobFeed, subscriber: Subscriber, chunk: string): void {
    if (!subscriber.response.writableEnded && !subscriber.response.destroyed) subscriber.response.end(chunk);
    this.#remove(feed, subscriber);
  }

  #remove(feed: JobFeed, subscriber: Subscriber) {
    if (!feed.subscribers.delete(subscriber)) return;
    if (subscriber.apiKeyId) {
      const open = this.streamsOf(subscriber.apiKeyId) - 1;
      if (open > 0) this.#streamsByKey.set(subscriber.apiKeyId, open);
      else this.#streamsByKey.delete(subscriber.apiKeyId);
    }
    if (feed.subscribers.size === 0 && this.#feeds.get(feed.expertJobId) === feed) this.#feeds.delete(feed.expertJobId);
  }

  #ping() {
    for (const feed of this.#feeds.values()) {
      for (const subscriber of feed.subscribers) this.write(feed, subscriber, ": ping\n\n");
    }
  }

  /** Ends every open stream so the server can close promptly; clients reconnect and resume. */
  close(): void {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    for (const feed of this.#feeds.values()) {
      for (const subscriber of feed.subscribers) this.end(feed, subscriber, "");
    }
    this.#feeds.clear();
  }
}

function withoutMessages(checkpoint: Checkpoint): Checkpoint {
  const { messages: _messages, inputMessages: _inputMessages, ...rest } = checkpoint;
  return rest;
}

export const streamHubPlugin = fp<StreamHubOptions>(
  async (app, options) => {
    const hub = new StreamHub(app.checkpoints, app.log, options);
    const parse = <T>(payload: string): T | undefined => {
      try {
        return JSON.parse(payload) as T;
      } catch {
        app.log.warn({ payload }, "ignoring malformed notification payload");
        return undefined;
      }
    };
    const stops = [
      app.notifications.on(channels.checkpointCreated, (payload) => {
        const parsed = parse<CheckpointCreatedPayload>(payload);
        if (parsed) hub.notifyCheckpoint(parsed);
      }),
      app.notifications.on(channels.expertJobChanged, (payload) => {
        const parsed = parse<ExpertJobChangedPayload>(payload);
        if (parsed) hub.notifyJobChanged(parsed);
      }),
      app.notifications.on(channels.apiKeyRevoked, (payload) => {
        const parsed = parse<ApiKeyRevokedPayload>(payload);
        if (parsed) hub.revokeApiKey(parsed.apiKeyId);
      }),
      app.notifications.onReconnected(() => hub.catchUpAll()),
    ];
    app.decorate("streamHub", hub);
    app.addHook("preClose", async () => {
      for (const stop of stops) stop();
      hub.close();
    });
  },
  { name: "stream-hub", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
