import type { FastifyBaseLogger } from "fastify";
import {
  channels,
  type ApiKeyRevokedPayload,
  type CheckpointCreatedPayload,
  type ExpertJobChangedPayload,
  type Notifier,
} from "../db/channels.ts";
import { reconnectDelay, type ReconnectPolicy } from "./reconnect.ts";

export interface Notification {
  channel: string;
  payload: string;
}

/** Delivers a batch to every instance (this one included); resolves once it is sent. */
export type SendBatch = (batch: readonly Notification[]) => Promise<void>;

export interface PublisherOptions {
  /** Backoff between attempts while sending fails (the database or NATS unreachable). */
  retry: ReconnectPolicy;
  /** Tests: false drops the notification, as if the process died between commit and send. */
  sendFilter?: (notification: Notification) => boolean;
}

/**
 * The send side of notifications, one per instance. Writers hand it a notification after their commit
 * and go on; it sends what is pending in one batch, and while a batch is on its way the next ones wait
 * and join the following batch. So an idle instance sends at once, and a busy one sends one batch per
 * round trip however many checkpoints commit meanwhile (with PostgreSQL: one NOTIFY transaction, which
 * takes NOTIFY's global commit lock once for the batch instead of once per write transaction).
 * Pending notifications of one job's checkpoints merge into the newest: listeners only need to know
 * that the job has something new. A failed send keeps its notifications and retries.
 */
export class Publisher implements Notifier {
  /** Notifications sent, and batches they went in, since start. */
  sent = 0;
  batches = 0;
  readonly #pending = new Map<string, Notification>();
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(
    private readonly send: SendBatch,
    private readonly log: FastifyBaseLogger,
    private readonly options: PublisherOptions,
  ) {}

  checkpointCreated(payload: CheckpointCreatedPayload): void {
    this.#publish(channels.checkpointCreated, payload.expertJobId, payload);
  }

  expertJobChanged(payload: ExpertJobChangedPayload): void {
    // Not merged across statuses: a claim waits for `queued`, which a later `processing` must not hide.
    this.#publish(channels.expertJobChanged, `${payload.expertJobId}\0${payload.status}`, payload);
  }

  apiKeyRevoked(payload: ApiKeyRevokedPayload): void {
    this.#publish(channels.apiKeyRevoked, payload.apiKeyId, payload);
  }

  #publish(channel: string, key: string, payload: object) {
    const notification = { channel, payload: JSON.stringify(payload) };
    if (this.options.sendFilter && !this.options.sendFilter(notification)) return;
    this.#pending.set(`${channel}\0${key}`, notification);
    this.#flushing ??= this.#flush();
  }

  async #flush(): Promise<void> {
    // Writes that commit in the same turn of the event loop go in one batch.
    await new Promise((resolve) => setImmediate(resolve));
    let failures = 0;
    while (this.#pending.size > 0) {
      const batch = [...this.#pending];
      this.#pending.clear();
      try {
        await this.send(batch.map(([, notification]) => notification));
        this.sent += batch.length;
        this.batches++;
        failures = 0;
      } catch (error) {
        // Newer ones that arrived meanwhile win; the rest go again.
        for (const [key, notification] of batch) if (!this.#pending.has(key)) this.#pending.set(key, notification);
        if (this.#closed) break;
        this.log.warn({ err: error, pending: this.#pending.size }, "sending notifications failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, reconnectDelay(failures++, this.options.retry)));
      }
    }
    this.#flushing = undefined;
  }

  /** Sends what is pending (waiting up to `timeoutMs`), then stops retrying. */
  async close(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.#flushing, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    this.#closed = true;
  }
}
