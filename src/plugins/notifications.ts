import { EventEmitter } from "node:events";
import fp from "fastify-plugin";
import pg from "pg";
import type { FastifyBaseLogger } from "fastify";
import { channels } from "../db/channels.ts";

export type NotificationListener = (payload: string) => void;

/**
 * Wake-up hints from Postgres NOTIFY. A notification may be lost (while the connection is down) or
 * coalesced, so listeners treat it as "something changed" and re-read the database; after every
 * reconnect `reconnected` listeners catch up the same way.
 */
export interface Notifications {
  on(channel: string, listener: NotificationListener): () => void;
  onReconnected(listener: () => void): () => void;
}

declare module "fastify" {
  interface FastifyInstance {
    notifications: Notifications;
  }
}

const listenedChannels = Object.values(channels);

class NotificationBus implements Notifications {
  readonly #events = new EventEmitter();

  constructor() {
    this.#events.setMaxListeners(0);
  }

  on(channel: string, listener: NotificationListener) {
    this.#events.on(`channel:${channel}`, listener);
    return () => void this.#events.off(`channel:${channel}`, listener);
  }

  onReconnected(listener: () => void) {
    this.#events.on("reconnected", listener);
    return () => void this.#events.off("reconnected", listener);
  }

  emit(channel: string, payload: string) {
    this.#events.emit(`channel:${channel}`, payload);
  }

  emitReconnected() {
    this.#events.emit("reconnected");
  }
}

export interface ReconnectPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** Full jitter: a random delay up to min(max, initial·2^attempt), so many instances do not reconnect in step. */
export const reconnectDelay = (attempt: number, policy: ReconnectPolicy): number =>
  Math.random() * Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** attempt);

/** One dedicated connection (never a pooled one: LISTEN is per session) that LISTENs and reconnects. */
class PgListener {
  #client: pg.Client | undefined;
  #closed = false;
  #attempt = 0;
  #timer: NodeJS.Timeout | undefined;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly bus: NotificationBus,
    private readonly log: FastifyBaseLogger,
    private readonly policy: ReconnectPolicy,
    private readonly heartbeatMs: number,
  ) {}

  async start(): Promise<void> {
    await this.#connect();
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, keepAlive: true, application_name: "expert-jobs-listener" });
    let lost = false;
    const onLost = (error?: Error) => {
      if (lost) return;
      lost = true;
      client.removeAllListeners("notification");
      client.end().catch(() => {});
      // Only an established connection reconnects from here: a failed attempt is retried by its caller,
      // and scheduling from both would double the reconnect loops on every failure while the database is down.
      if (this.#client !== client) return;
      this.#client = undefined;
      clearInterval(this.#heartbeat);
      if (!this.#closed) {
        this.log.warn({ err: error }, "notification listener connection lost; reconnecting");
        this.#scheduleReconnect();
      }
    };
    client.on("error", onLost);
    client.on("end", () => onLost());
    client.on("notification", (message) => this.bus.emit(message.channel, message.payload ?? ""));
    try {
      await client.connect();
      for (const channel of listenedChannels) await client.query(`LISTEN "${channel}"`);
    } catch (error) {
      onLost();
      throw error;
    }
    this.#client = client;
    // A half-open TCP connection can look alive for minutes; a cheap query finds out sooner.
    this.#heartbeat = setInterval(() => client.query("SELECT 1").catch(onLost), this.heartbeatMs);
    this.#heartbeat.unref();
  }

  #scheduleReconnect() {
    const delay = reconnectDelay(this.#attempt++, this.policy);
    this.#timer = setTimeout(async () => {
      if (this.#closed) return;
      try {
        await this.#connect();
        this.#attempt = 0;
        this.log.info("notification listener reconnected");
        this.bus.emitReconnected();
      } catch (error) {
        this.log.warn({ err: error }, "notification listener reconnect failed");
        if (!this.#closed) this.#scheduleReconnect();
      }
    }, delay);
  }

  /** For tests and diagnostics: the backend pid of the LISTEN connection. */
  get processId(): number | undefined {
    return (this.#client as unknown as { processID?: number } | undefined)?.processID;
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearInterval(this.#heartbeat);
    await this.#client?.end().catch(() => {});
  }
}

export interface NotificationsOptions {
  reconnect?: ReconnectPolicy;
  heartbeatMs?: number;
}

export const notificationsPlugin = fp<NotificationsOptions>(
  async (app, options) => {
    const bus = new NotificationBus();
    const database = app.database;
    if (database.kind === "postgres") {
      const listener = new PgListener(
        database.url,
        bus,
        app.log,
        options.reconnect ?? { initialDelayMs: 100, maxDelayMs: 5_000 },
        options.heartbeatMs ?? 30_000,
      );
      await listener.start();
      app.decorate("listenerProcessId", { getter: () => listener.processId });
      app.addHook("onClose", async () => listener.close());
    } else {
      const unlisten = await Promise.all(
        listenedChannels.map((channel) => database.lite.listen(channel, (payload) => bus.emit(channel, payload))),
      );
      app.decorate("listenerProcessId", { getter: () => undefined });
      app.addHook("preClose", async () => {
        await Promise.all(unlisten.map((stop) => stop()));
      });
    }
    app.decorate("notifications", bus);
  },
  { name: "notifications", dependencies: ["database"], fastify: "5.x" },
);

declare module "fastify" {
  interface FastifyInstance {
    /** The backend pid of this instance's LISTEN connection (Postgres only). */
    listenerProcessId: number | undefined;
  }
}
