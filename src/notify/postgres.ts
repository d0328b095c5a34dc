import pg from "pg";
import type { FastifyBaseLogger } from "fastify";
import { listenedChannels } from "../db/channels.ts";
import type { Sql } from "../db/sql.ts";
import type { NotificationBus } from "./bus.ts";
import type { SendBatch } from "./publisher.ts";
import { reconnectDelay, type ReconnectPolicy } from "./reconnect.ts";

/**
 * A batch of notifications in one statement, so one transaction of its own: it takes NOTIFY's global
 * commit lock once for the whole batch, and no write transaction ever waits for it.
 */
export const pgSend =
  (sql: Sql): SendBatch =>
  async (batch) => {
    // pg_notify returns void, which drivers cannot decode: cast to text ('').
    await sql.query(
      "notify_batch",
      "SELECT pg_notify(n.channel, n.payload)::text FROM unnest($1::text[], $2::text[]) AS n(channel, payload)",
      [batch.map((notification) => notification.channel), batch.map((notification) => notification.payload)],
    );
  };

/** One dedicated connection (never a pooled one: LISTEN is per session) that LISTENs and reconnects. */
export class PgListener {
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
      this.bus.connected = false;
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
    this.bus.connected = true;
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
        this.bus.emitCatchUp("reconnected");
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
