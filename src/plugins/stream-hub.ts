import type { ServerResponse } from "node:http";
import fp from "fastify-plugin";
import type { FastifyBaseLogger } from "fastify";
import { channels, type ApiKeyRevokedPayload, type CheckpointCreatedPayload, type ExpertJobChangedPayload } from "../db/channels.ts";
import { checkpointSerializer } from "../modules/checkpoints/checkpoint-json.ts";
import { exclusions, type Exclusion } from "../modules/checkpoints/checkpoints.schemas.ts";
import type { CheckpointsService, FeedEvent } from "../modules/checkpoints/checkpoints.service.ts";
import { decodeRuns, encodeRuns, type MessageRuns } from "../modules/checkpoints/message-store.ts";
import type { ExpertJobStatus } from "../modules/expert-jobs/expert-jobs.schemas.ts";
import { isStopped } from "../modules/expert-jobs/job-state.ts";
import { markedStatuses, type WatchMarks } from "../modules/expert-jobs/watch-marks.ts";
import { oneAtATime } from "../notify/bus.ts";

export interface StreamSubscription {
  expertJobId: string;
  /** The last event id the client has; events after it are sent. */
  afterSeq: number;
  /** Parts left out of every event (`?exclude=`). */
  exclude: ReadonlySet<Exclusion>;
  response: ServerResponse;
  /** The API key that opened the stream, counted against `maxStreamsPerKey`. */
  apiKeyId?: string;
}

export interface StreamHubOptions {
  heartbeatMs: number;
  /** A subscriber whose socket takes no bytes for this long while data waits for it is cut off. */
  stallTimeoutMs: number;
  /**
   * A subscriber that falls more than this many events behind the job's newest, counting only events
   * posted since it connected, is cut off (0: never). A fresh stream replaying a long history is not behind.
   */
  maxLagEvents: number;
  /** Checkpoints per database read, at most. */
  batchSize: number;
  /** Bytes of checkpoints per database read, at most (a read always brings at least one checkpoint). */
  batchBytes: number;
  /** Bytes of frames a job's feed keeps for subscribers that are behind the others. */
  cacheBytes: number;
  /** Open streams one API key may hold on this instance (the route answers 429 beyond it). */
  maxStreamsPerKey: number;
  /** How long a feed keeps retrying failed reads (database down) before its streams get `event: error`. */
  readRetryWindowMs: number;
  observer?: StreamHubObserver;
}

export type CutOffReason = "stalled" | "lagging";

export interface JobHead {
  lastSeq: number;
  status: ExpertJobStatus;
}

/** Timings for metrics. `lagMs`: from the first notification a read serves to its start (undefined for other reads). */
export interface StreamHubObserver {
  feedRead(lagMs: number | undefined, durationMs: number): void;
  cutOff(reason: CutOffReason): void;
}

declare module "fastify" {
  interface FastifyInstance {
    streamHub: StreamHub;
  }
}

/** One shape of the events: what its subscribers leave out. Interned per hub, so `key` identifies it. */
interface Variant {
  key: string;
  exclude: ReadonlySet<Exclusion>;
}

interface Subscriber {
  response: ServerResponse;
  lastSent: number;
  variant: Variant;
  apiKeyId?: string;
  /** A write returned false: nothing more is written until the socket drains. */
  blocked: boolean;
  /** While blocked: when the socket last took bytes (or blocked), and how much it still held then. */
  progressAt: number;
  pending: [queued: number, unsent: number];
  /** The job's newest event when the subscriber joined: its lag counts only events after it. */
  joinedHead?: number;
}

/** An event's frame in one variant: built once, written to every subscriber of that variant. */
interface Frame {
  seq: number;
  key: string;
  buffer: Buffer;
  /** Sockets that hold it: written to them, not yet handed to the kernel. */
  writing: number;
  /** Kept in the feed's cache for subscribers that have not reached it yet. */
  cached: boolean;
}

interface ReadPlan {
  afterSeq: number;
  variants: Map<string, Variant>;
}

const COMMA = Buffer.from(",");

const frame = (event: string, data: string, id?: number) => `${id === undefined ? "" : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`;

/**
 * Bytes a response still holds: what its stream buffers, and what libuv has not yet handed to the kernel
 * of a write in progress. The first stays constant while one large write drains slowly, the second then
 * shrinks: together they tell a slow client (still draining) from a stalled one.
 */
function pendingBytes(response: ServerResponse): [number, number] {
  const handle = (response.socket as unknown as { _handle?: { writeQueueSize?: number } } | null)?._handle;
  return [response.writableLength, handle?.writeQueueSize ?? 0];
}

/**
 * All open streams of one job on this instance. Each subscriber gets events at its own socket's pace: an
 * event is written whole, and after a write the socket cannot take at once, that subscriber gets nothing
 * more until it drains. Events come from the database in batches bounded by count and bytes, read when a
 * subscriber that can take more needs them; at most one read runs per job, and the frames it builds are
 * kept (up to `cacheBytes`) for every subscriber that needs them, fast or behind. Every read starts from
 * the database (seq > what a subscriber has), so a lost or merged notification never loses an event.
 */
class JobFeed {
  readonly subscribers = new Set<Subscriber>();
  /**
   * Every frame alive: cached, or still held by a socket it was written to. A subscriber that needs a
   * frame some socket still holds takes that same Buffer: no read, no copy.
   */
  readonly #frames = new Map<number, Map<string, Frame>>();
  /** The cached frames, in order of last use. */
  readonly #cache = new Set<Frame>();
  #cachedBytes = 0;
  /** Bytes of the frames alive (cached or being written). */
  #liveBytes = 0;
  /** The job's message texts by ordinal, as stored (UTF-8); every one up to `#textsThrough` is here. */
  readonly #texts = new Map<number, Buffer>();
  #textBytes = 0;
  #textsThrough = 0;
  /** The job's newest event and status, as of the latest read (undefined before the first). */
  #head: number | undefined;
  #status: ExpertJobStatus | undefined;
  /** The database may have events or a status the feed has not read (a notification, a new subscriber). */
  #stale = true;
  #reading = false;
  #failingSince: number | undefined;
  #failures = 0;
  #notifiedAt: number | undefined;
  /**
   * The job's watch mark holds, as far as this feed knows: its checkpoints are announced. Until then every
   * read marks the job first, so that whatever the read does not find is announced.
   */
  marked = false;

  constructor(
    readonly expertJobId: string,
    private readonly hub: StreamHub,
  ) {}

  /** What the feed holds in memory: the frames alive and the message texts. */
  get heldBytes(): number {
    return this.#liveBytes + this.#textBytes;
  }

  add(subscriber: Subscriber): void {
    this.subscribers.add(subscriber);
    subscriber.joinedHead = this.#stale ? undefined : this.#head;
    // Subscribed before the next read: anything committed from now on is either in that read or wakes another.
    this.#stale = true;
    this.schedule();
  }

  /**
   * Whether the job as the safety re-read found it (undefined: gone) has moved on from the feed's last
   * read: a notification that should have woken the feed did not come (yet). A feed with a read due
   * anyway does not count.
   */
  outdatedBy(head: JobHead | undefined): boolean {
    if (this.subscribers.size === 0 || this.#stale || this.#head === undefined) return false;
    return head === undefined || head.lastSeq !== this.#head || head.status !== this.#status;
  }

  wake(notifiedAt?: number): void {
    if (this.subscribers.size === 0) return;
    if (notifiedAt !== undefined) this.#notifiedAt ??= notifiedAt;
    this.#stale = true;
    this.schedule();
  }

  /** Starts a read if a subscriber that can take more needs one (one read at a time; the next is planned after it). */
  schedule(): void {
    if (this.#reading) return;
    const plan = this.#plan();
    if (plan) void this.#read(plan);
  }

  /**
   * The socket of a blocked subscriber drained: it continues from the cache, or asks for a read. Only a
   * subscriber that needs one plans a read: with events larger than a socket's buffer every socket
   * drains once per event, and planning walks every subscriber (10,000 streams made that quadratic).
   */
  drained(subscriber: Subscriber): void {
    if (!subscriber.blocked || !this.subscribers.has(subscriber)) return;
    this.hub.unblocked(subscriber);
    this.advance(subscriber);
    if (subscriber.blocked || !this.subscribers.has(subscriber)) return;
    const next = subscriber.lastSent + 1;
    if (!this.#stale && (this.#head === undefined || next > this.#head)) return;
    this.schedule();
  }

  /** Writes the subscriber every cached event it can take; ends its stream once it has all of a stopped job. */
  advance(subscriber: Subscriber): void {
    while (!subscriber.blocked) {
      const seq = subscriber.lastSent + 1;
      const found = this.#lookup(seq, subscriber.variant.key);
      if (!found) break;
      subscriber.lastSent = seq;
      this.hub.eventsSent++;
      found.writing++;
      if (!this.hub.write(this, subscriber, found.buffer, () => this.#written(found))) break;
    }
    if (!this.subscribers.has(subscriber) || this.#stale || this.#head === undefined) return;
    if (isStopped(this.#status!) && subscriber.lastSent >= this.#head) this.#complete(subscriber);
  }

  /** The frame of an event in a variant, if it is alive; it is (again) cached, as the one used last. */
  #lookup(seq: number, key: string): Frame | undefined {
    const found = this.#frames.get(seq)?.get(key);
    if (found) this.#cacheFrame(found);
    return found;
  }

  #cacheFrame(frame: Frame) {
    if (frame.cached) this.#cache.delete(frame);
    else this.#cachedBytes += frame.buffer.length;
    frame.cached = true;
    this.#cache.add(frame);
  }

  /** A socket handed the frame to the kernel (or was closed with it). */
  #written(frame: Frame) {
    frame.writing--;
    this.#dropIfDead(frame);
  }

  #dropIfDead(frame: Frame) {
    const variants = this.#frames.get(frame.seq);
    if (frame.cached || frame.writing > 0 || variants?.get(frame.key) !== frame) return;
    variants.delete(frame.key);
    if (variants.size === 0) this.#frames.delete(frame.seq);
    this.#liveBytes -= frame.buffer.length;
  }

  /** From the subscriber furthest behind among those that can take an event the cache lacks, in the variants they need. */
  #plan(): ReadPlan | undefined {
    let afterSeq = Number.POSITIVE_INFINITY;
    const variants = new Map<string, Variant>();
    for (const subscriber of this.subscribers) {
      if (subscriber.blocked) continue;
      const next = subscriber.lastSent + 1;
      if (this.#frames.get(next)?.has(subscriber.variant.key)) continue;
      const known = this.#head !== undefined && next <= this.#head;
      if (!known && !this.#stale) continue;
      afterSeq = Math.min(afterSeq, subscriber.lastSent);
      variants.set(subscriber.variant.key, subscriber.variant);
    }
    return Number.isFinite(afterSeq) ? { afterSeq, variants } : undefined;
  }

  async #read(plan: ReadPlan): Promise<void> {
    this.#reading = true;
    this.#stale = false;
    const started = performance.now();
    const lagMs = this.#notifiedAt === undefined ? undefined : started - this.#notifiedAt;
    this.#notifiedAt = undefined;
    let brought = 0;
    try {
      // One statement reads the job's status and last_seq with the checkpoints after `afterSeq`; status and
      // last_seq change in the checkpoint's own transaction, so once everything up to the head is sent, a
      // stopped status really is the end of the stream.
      const feed = await this.#fetch(plan);
      if (!feed) {
        this.#failAll("internal", "Expert job not found");
        return;
      }
      this.#failingSince = undefined;
      this.#failures = 0;
      this.#head = feed.lastSeq;
      this.#status = feed.status;
      brought = feed.events.length;
      for (const { seq, frames } of feed.events) this.#store(seq, frames);
      for (const subscriber of this.subscribers) {
        subscriber.joinedHead ??= feed.lastSeq;
        this.advance(subscriber);
      }
      this.#cutOffLaggards();
      this.#evict();
    } catch (error) {
      this.#readFailed(error);
      return;
    } finally {
      this.hub.observer?.feedRead(lagMs, performance.now() - started);
      this.#reading = false;
    }
    // A read that brought nothing can only be followed by one a notification or a new subscriber asked for.
    if (brought > 0 || this.#stale) this.schedule();
  }

  /**
   * Reads the next batch and builds its frames in the plan's variants. Conversations are built from the
   * feed's message texts: the read brings the ones after those the feed holds, and any it evicted since
   * are read again by ordinal.
   */
  async #fetch(plan: ReadPlan) {
    if (!this.marked) this.marked = await this.hub.marks.watchJob(this.expertJobId);
    const feed = await this.hub.readFeed(this.expertJobId, plan, this.#textsThrough);
    if (!feed) return undefined;
    // Out of the marked statuses, the job's next change of status wakes the feed, and its read marks again.
    if (!markedStatuses.includes(feed.status)) this.marked = false;
    for (const [ordinal, text] of feed.messages) this.#addText(ordinal, text);
    const variants = [...plan.variants.values()];
    if (variants.some((variant) => !variant.exclude.has("messages"))) {
      const missing: number[] = [];
      for (const event of feed.events)
        for (const ordinal of decodeRuns(event.messageRuns)) if (!this.#texts.has(ordinal)) missing.push(ordinal);
      if (missing.length > 0) {
        for (const [ordinal, text] of await this.hub.messageTexts(
          this.expertJobId,
          encodeRuns([...new Set(missing)].sort((a, b) => a - b)),
        )) {
          this.#addText(ordinal, text);
        }
      }
    }
    return {
      status: feed.status,
      lastSeq: feed.lastSeq,
      events: feed.events.map((event) => ({
        seq: event.seq,
        frames: new Map(variants.map((variant) => [variant.key, this.hub.frame(event, variant, this.#texts)])),
      })),
    };
  }

  #addText(ordinal: number, text: string) {
    if (this.#texts.has(ordinal)) return;
    const bytes = Buffer.from(text);
    this.#texts.set(ordinal, bytes);
    this.#textBytes += bytes.length;
    while (this.#texts.has(this.#textsThrough + 1)) this.#textsThrough++;
  }

  #store(seq: number, frames: Map<string, Buffer>) {
    for (const [key, buffer] of frames) {
      let variants = this.#frames.get(seq);
      if (variants?.has(key)) continue;
      if (!variants) this.#frames.set(seq, (variants = new Map()));
      const built: Frame = { seq, key, buffer, writing: 0, cached: false };
      variants.set(key, built);
      this.#liveBytes += buffer.length;
      this.#cacheFrame(built);
    }
  }

  /**
   * Drops what no subscriber needs any more, then the least recently used frames beyond the budget. Many
   * streams replaying one history move in groups (a read serves every stream near its position): the
   * frames each group is reading were used last, so with groups spread wider than the budget, the
   * stretches between them go, and a group reads them again when it gets there, instead of every stream
   * reading alone. Message texts, the compact source of every frame (O(n) bytes for a job of n steps), go last.
   */
  #evict() {
    let firstNeeded = Number.POSITIVE_INFINITY;
    for (const subscriber of this.subscribers) firstNeeded = Math.min(firstNeeded, subscriber.lastSent + 1);
    for (const cached of this.#cache) {
      if (cached.seq >= firstNeeded && this.#cachedBytes + this.#textBytes <= this.hub.cacheBytes) continue;
      this.#cache.delete(cached);
      this.#cachedBytes -= cached.buffer.length;
      cached.cached = false;
      this.#dropIfDead(cached);
    }
    for (const [ordinal, text] of this.#texts) {
      if (this.#cachedBytes + this.#textBytes <= this.hub.cacheBytes) break;
      this.#texts.delete(ordinal);
      this.#textBytes -= text.length;
      this.#textsThrough = Math.min(this.#textsThrough, ordinal - 1);
    }
  }

  #cutOffLaggards() {
    const { maxLagEvents } = this.hub;
    if (maxLagEvents === 0 || this.#head === undefined) return;
    for (const subscriber of this.subscribers) {
      const behind = this.#head - Math.max(subscriber.lastSent, subscriber.joinedHead ?? this.#head);
      if (behind > maxLagEvents) this.hub.cutOff(this, subscriber, "lagging", { behind });
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
    this.#stale = true;
    if (now - this.#failingSince >= this.hub.readRetryWindowMs) {
      this.hub.log.error({ err: error, expertJobId: this.expertJobId }, "stream read failed");
      this.#failingSince = undefined;
      this.#failures = 0;
      return this.#failAll("checkpointLoadFailed", "Failed to load checkpoints");
    }
    this.hub.log.warn({ err: error, expertJobId: this.expertJobId }, "stream read failed; retrying");
    const delay = Math.min(5_000, 100 * 2 ** this.#failures++) * (0.5 + Math.random() / 2);
    setTimeout(() => this.schedule(), delay).unref();
  }

  #complete(subscriber: Subscriber) {
    this.hub.end(this, subscriber, frame("complete", JSON.stringify({ status: this.#status, expertJobId: this.expertJobId })));
  }

  #failAll(type: "checkpointLoadFailed" | "internal", message: string) {
    const data = JSON.stringify({ type, expertJobId: this.expertJobId, message });
    for (const subscriber of this.subscribers) this.hub.end(this, subscriber, frame("error", data));
  }
}

export class StreamHub {
  /** Checkpoint events written to streams since start. */
  eventsSent = 0;
  /** Feeds the periodic safety re-read woke since start (their notification was lost, or still on its way). */
  safetyWakes = 0;
  /** Database reads of stream feeds, and the bytes of the frames they built, since start. */
  feedReads = 0;
  framesBuiltBytes = 0;
  readonly #feeds = new Map<string, JobFeed>();
  readonly #streamsByKey = new Map<string, number>();
  readonly #variants = new Map<string, Variant>();
  readonly #blocked = new Map<Subscriber, JobFeed>();
  readonly #json = checkpointSerializer();
  readonly #heartbeat: NodeJS.Timeout;
  readonly #watchdog: NodeJS.Timeout;
  readonly #watchdogMs: number;
  #lastCheck = Date.now();
  /** Subscribers whose sockets drained, served together on the next turn of the event loop. */
  readonly #drained = new Map<Subscriber, JobFeed>();
  #closing = false;

  constructor(
    private readonly checkpoints: CheckpointsService,
    readonly marks: WatchMarks,
    readonly log: FastifyBaseLogger,
    private readonly options: StreamHubOptions,
  ) {
    this.#heartbeat = setInterval(() => this.#ping(), options.heartbeatMs);
    this.#heartbeat.unref();
    this.#watchdogMs = Math.max(10, Math.min(1_000, options.stallTimeoutMs / 4));
    this.#watchdog = setInterval(() => this.#checkStalled(), this.#watchdogMs);
    this.#watchdog.unref();
  }

  get openStreams(): number {
    let count = 0;
    for (const feed of this.#feeds.values()) count += feed.subscribers.size;
    return count;
  }

  /** Bytes the streams hold in memory: event frames cached or being written, and message texts. */
  get heldBytes(): number {
    let bytes = 0;
    for (const feed of this.#feeds.values()) bytes += feed.heldBytes;
    return bytes;
  }

  get maxStreamsPerKey(): number {
    return this.options.maxStreamsPerKey;
  }

  get readRetryWindowMs(): number {
    return this.options.readRetryWindowMs;
  }

  get maxLagEvents(): number {
    return this.options.maxLagEvents;
  }

  get cacheBytes(): number {
    return this.options.cacheBytes;
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
      variant: this.#variant(subscription.exclude),
      apiKeyId: subscription.apiKeyId,
      blocked: false,
      progressAt: 0,
      pending: [0, 0],
    };
    if (subscriber.apiKeyId) this.#streamsByKey.set(subscriber.apiKeyId, this.streamsOf(subscriber.apiKeyId) + 1);
    const joined = feed;
    subscription.response.on("close", () => this.#remove(joined, subscriber));
    subscription.response.on("drain", () => this.#queueDrained(joined, subscriber));
    feed.add(subscriber);
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

  /** After the connection that brings notifications came back: any may have been missed, so every feed re-reads. */
  catchUpAll(): void {
    for (const feed of this.#feeds.values()) feed.wake();
  }

  /**
   * The periodic safety re-read: the renewal of the watch marks of every job with open streams here, one
   * query for their heads, and only the feeds whose job moved on since their last read (a lost
   * notification) read again. So a lost notification delays its events by one interval at most, at the
   * cost of two small statements per interval.
   */
  async recheck(): Promise<void> {
    if (this.#feeds.size === 0) return;
    // Renewed before the heads are read: a checkpoint the lapsed mark did not announce is in the heads.
    const marked = await this.marks.watchJobs([...this.#feeds.keys()]);
    for (const [expertJobId, feed] of this.#feeds) feed.marked = marked.has(expertJobId);
    const heads = await this.checkpoints.jobHeads([...this.#feeds.keys()]);
    for (const [expertJobId, feed] of this.#feeds) {
      if (!feed.outdatedBy(heads.get(expertJobId))) continue;
      this.safetyWakes++;
      feed.wake();
    }
  }

  /** The API keys holding streams open here (for the safety re-read's revocation check). */
  get streamingKeys(): string[] {
    return [...this.#streamsByKey.keys()];
  }

  /** The job and its next checkpoints after `plan.afterSeq`, read leaving out what every variant of the plan leaves out. */
  readFeed(expertJobId: string, plan: ReadPlan, messagesAfter: number) {
    const variants = [...plan.variants.values()];
    const exclude = new Set(exclusions.filter((exclusion) => variants.every((variant) => variant.exclude.has(exclusion))));
    this.feedReads++;
    return this.checkpoints.readFeed(expertJobId, {
      afterSeq: plan.afterSeq,
      limit: this.options.batchSize,
      maxBytes: this.options.batchBytes,
      exclude,
      messagesAfter,
    });
  }

  messageTexts(expertJobId: string, runs: MessageRuns): Promise<Map<number, string>> {
    return this.checkpoints.messageTexts(expertJobId, runs);
  }

  /**
   * The event's frame in a variant: serialised once, into the Buffer every subscriber of it gets (encoded
   * once, not per stream). The conversation goes in as the message texts' bytes, copied once into the
   * frame: a replay of a long job builds hundreds of megabytes of frames from a few megabytes of messages,
   * and building them as strings first left as much again for the garbage collector.
   */
  frame(event: FeedEvent, variant: Variant, texts: ReadonlyMap<number, Buffer>): Buffer {
    const checkpoint = event.build(variant.exclude);
    let chunk: Buffer;
    if (variant.exclude.has("messages")) chunk = Buffer.from(frame("message", this.#json.serialize(checkpoint), event.seq));
    else if (!this.#json.aroundMessages) {
      const messagesJson = `[${Array.from(decodeRuns(event.messageRuns), (ordinal) => texts.get(ordinal)!.toString()).join(",")}]`;
      chunk = Buffer.from(frame("message", this.#json.withMessagesJson(checkpoint, messagesJson), event.seq));
    } else {
      const [before, after] = this.#json.aroundMessages(checkpoint);
      const parts: Buffer[] = [Buffer.from(`id: ${event.seq}\nevent: message\ndata: ${before}[`)];
      for (const ordinal of decodeRuns(event.messageRuns)) {
        if (parts.length > 1) parts.push(COMMA);
        parts.push(texts.get(ordinal)!);
      }
      parts.push(Buffer.from(`]${after}\n\n`));
      chunk = Buffer.concat(parts);
    }
    this.framesBuiltBytes += chunk.length;
    return chunk;
  }

  #variant(exclude: ReadonlySet<Exclusion>): Variant {
    const key = exclusions.filter((exclusion) => exclude.has(exclusion)).join(",");
    let variant = this.#variants.get(key);
    if (!variant) {
      variant = { key, exclude: new Set(exclude) };
      this.#variants.set(key, variant);
    }
    return variant;
  }

  /**
   * Writes one whole frame; false when the subscriber must wait for its socket to drain (or is gone).
   * `written` runs once the socket handed it to the kernel, or could not.
   */
  write(feed: JobFeed, subscriber: Subscriber, chunk: string | Buffer, written?: () => void): boolean {
    const { response } = subscriber;
    if (response.destroyed || response.writableEnded) {
      written?.();
      this.#remove(feed, subscriber);
      return false;
    }
    if (response.write(chunk, written && (() => written()))) return true;
    subscriber.blocked = true;
    subscriber.progressAt = Date.now();
    subscriber.pending = pendingBytes(response);
    this.#blocked.set(subscriber, feed);
    return false;
  }

  /**
   * A socket that drains is written again on the next turn of the event loop, not from its drain callback:
   * sockets that keep draining at once would otherwise chain writes from callback to callback and starve
   * timers and new requests for as long as the kernel takes the data.
   */
  #queueDrained(feed: JobFeed, subscriber: Subscriber) {
    if (this.#drained.size === 0) {
      setImmediate(() => {
        const drained = [...this.#drained];
        this.#drained.clear();
        for (const [subscriber, feed] of drained) feed.drained(subscriber);
      });
    }
    this.#drained.set(subscriber, feed);
  }

  unblocked(subscriber: Subscriber): void {
    subscriber.blocked = false;
    this.#blocked.delete(subscriber);
  }

  end(feed: JobFeed, subscriber: Subscriber, chunk: string): void {
    if (!subscriber.response.writableEnded && !subscriber.response.destroyed) subscriber.response.end(chunk);
    this.#remove(feed, subscriber);
  }

  /**
   * Cuts a subscriber off; its client resumes with Last-Event-ID. A stalled socket is destroyed (nothing more
   * reaches it anyway); a lagging one is ended after what it already has, and destroyed if that never drains.
   */
  cutOff(feed: JobFeed, subscriber: Subscriber, reason: CutOffReason, details: Record<string, unknown> = {}): void {
    const { response } = subscriber;
    this.log.warn(
      { expertJobId: feed.expertJobId, reason, lastEventId: subscriber.lastSent, buffered: response.writableLength, ...details },
      "stream client cut off; it may resume with Last-Event-ID",
    );
    this.options.observer?.cutOff(reason);
    if (reason === "stalled") response.destroy();
    else {
      response.end();
      setTimeout(() => response.destroy(), this.options.stallTimeoutMs).unref();
    }
    this.#remove(feed, subscriber);
  }

  #checkStalled() {
    const now = Date.now();
    // Time this process did not run (a long collection, a busy machine) is not time the client stalled.
    const late = now - this.#lastCheck - this.#watchdogMs;
    this.#lastCheck = now;
    for (const [subscriber, feed] of this.#blocked) {
      const [queued, unsent] = pendingBytes(subscriber.response);
      if (queued < subscriber.pending[0] || unsent < subscriber.pending[1]) subscriber.progressAt = now;
      else if (late > 0) subscriber.progressAt += late;
      subscriber.pending = [queued, unsent];
      if (now - subscriber.progressAt >= this.options.stallTimeoutMs) {
        this.cutOff(feed, subscriber, "stalled", { stalledMs: now - subscriber.progressAt });
      }
    }
  }

  #remove(feed: JobFeed, subscriber: Subscriber) {
    this.#blocked.delete(subscriber);
    this.#drained.delete(subscriber);
    if (!feed.subscribers.delete(subscriber)) return;
    if (subscriber.apiKeyId) {
      const open = this.streamsOf(subscriber.apiKeyId) - 1;
      if (open > 0) this.#streamsByKey.set(subscriber.apiKeyId, open);
      else this.#streamsByKey.delete(subscriber.apiKeyId);
    }
    if (feed.subscribers.size === 0 && this.#feeds.get(feed.expertJobId) === feed) this.#feeds.delete(feed.expertJobId);
  }

  /** A blocked subscriber gets no ping: its connection is not idle, and a ping would queue behind what it has not taken. */
  #ping() {
    for (const feed of this.#feeds.values()) {
      for (const subscriber of feed.subscribers) if (!subscriber.blocked) this.write(feed, subscriber, ": ping\n\n");
    }
  }

  /** Ends every open stream so the server can close promptly; clients reconnect and resume. */
  close(): void {
    this.#closing = true;
    clearInterval(this.#heartbeat);
    clearInterval(this.#watchdog);
    for (const feed of this.#feeds.values()) {
      for (const subscriber of feed.subscribers) this.end(feed, subscriber, "");
    }
    this.#feeds.clear();
  }
}

export const streamHubPlugin = fp<StreamHubOptions>(
  async (app, options) => {
    const hub = new StreamHub(app.checkpoints, app.watchMarks, app.log, options);
    const parse = <T>(payload: string): T | undefined => {
      try {
        return JSON.parse(payload) as T;
      } catch {
        app.log.warn({ payload }, "ignoring malformed notification payload");
        return undefined;
      }
    };
    // A revocation whose notification was lost still ends the key's streams here, one interval late.
    const recheck = oneAtATime(async () => {
      await hub.recheck();
      const keys = hub.streamingKeys;
      if (keys.length > 0) for (const apiKeyId of await app.admin.revokedAmong(keys)) hub.revokeApiKey(apiKeyId);
    });
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
      app.notifications.onCatchUp((reason) => {
        // After a reconnect every feed re-reads, so the re-read below only looks for revocations.
        if (reason === "reconnected") hub.catchUpAll();
        void recheck().catch((error) => app.log.warn({ err: error }, "stream safety re-read failed"));
      }),
    ];
    app.decorate("streamHub", hub);
    app.addHook("preClose", async () => {
      for (const stop of stops) stop();
      hub.close();
    });
  },
  { name: "stream-hub", dependencies: ["database", "notifications", "services"], fastify: "5.x" },
);
