import { connect, Events, type NatsConnection } from "nats";
import type { FastifyBaseLogger } from "fastify";
import { listenedChannels } from "../db/channels.ts";
import { StartupError } from "../startup/startup-error.ts";
import type { NotificationBus } from "./bus.ts";
import type { SendBatch } from "./publisher.ts";
import { reconnectDelay, type ReconnectPolicy } from "./reconnect.ts";

export interface NatsOptions {
  servers: string[];
  /** Subjects are `<prefix>.<channel>`: deployments sharing one NATS keep apart by prefix. */
  subjectPrefix: string;
  /** How long start-up keeps trying a NATS that is not reachable yet. */
  connectTimeoutMs: number;
  reconnect: ReconnectPolicy;
  /** Client PING interval: a half-open connection is noticed after two unanswered ones. */
  heartbeatMs: number;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

/**
 * Notifications over core NATS: one subject per channel, no persistence (the database is the log).
 * The client reconnects by itself; once it is back, and its subscriptions are known to the server
 * again, every listener catches up as after a LISTEN reconnect: messages sent meanwhile are gone.
 */
export class NatsNotifications {
  #closed = false;

  private constructor(
    private readonly connection: NatsConnection,
    private readonly bus: NotificationBus,
    private readonly log: FastifyBaseLogger,
    private readonly options: NatsOptions,
  ) {}

  static async start(bus: NotificationBus, log: FastifyBaseLogger, options: NatsOptions): Promise<NatsNotifications> {
    const connection = await connectWithRetry(log, options);
    const nats = new NatsNotifications(connection, bus, log, options);
    for (const channel of listenedChannels) {
      connection.subscribe(nats.#subject(channel), {
        callback: (error, message) => {
          if (!error) bus.emit(channel, decoder.decode(message.data));
        },
      });
    }
    // A round trip: the server has every subscription before the app serves (and publishes) anything.
    await connection.flush();
    bus.connected = true;
    void nats.#watch();
    return nats;
  }

  #subject(channel: string) {
    return `${this.options.subjectPrefix}.${channel}`;
  }

  readonly send: SendBatch = async (batch) => {
    // While the connection is down the client buffers these and sends them once it is back.
    if (this.connection.isClosed()) throw new Error("NATS connection closed");
    for (const { channel, payload } of batch) this.connection.publish(this.#subject(channel), encoder.encode(payload));
  };

  async #watch() {
    for await (const status of this.connection.status()) {
      if (status.type === Events.Disconnect) {
        this.bus.connected = false;
        if (!this.#closed) this.log.warn({ server: status.data }, "NATS connection lost; reconnecting");
      } else if (status.type === Events.Reconnect) {
        try {
          // The subscriptions went out again on reconnect; after this round trip the server has them, so
          // whatever the catch-up's reads miss is published after it, and arrives.
          await this.connection.flush();
        } catch {
          continue;
        }
        this.bus.connected = true;
        this.log.info({ server: status.data }, "NATS reconnected");
        this.bus.emitCatchUp("reconnected");
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.connection.close().catch(() => {});
  }
}

async function connectWithRetry(log: FastifyBaseLogger, options: NatsOptions): Promise<NatsConnection> {
  const deadline = Date.now() + options.connectTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      return await connect({
        servers: options.servers,
        name: "expert-jobs",
        timeout: Math.max(500, Math.min(5_000, options.connectTimeoutMs)),
        reconnect: true,
        maxReconnectAttempts: -1,
        // NATS waits a fixed time (plus jitter) between attempts: a second at most keeps an outage short.
        reconnectTimeWait: Math.min(options.reconnect.maxDelayMs, 1_000),
        reconnectJitter: options.reconnect.initialDelayMs,
        pingInterval: options.heartbeatMs,
        maxPingOut: 2,
      });
    } catch (error) {
      const reason = (error as Error).message;
      const delay = reconnectDelay(attempt, options.reconnect);
      if (Date.now() + delay >= deadline) {
        const within = options.connectTimeoutMs > 0 ? ` within ${Math.ceil(options.connectTimeoutMs / 1000)} s` : "";
        throw new StartupError(
          `NATS_URL: cannot connect to NATS at ${options.servers.join(",")}${within} (${reason}): start NATS, fix NATS_URL, or raise DATABASE_CONNECT_TIMEOUT_MS`,
          { cause: error },
        );
      }
      log.warn(`NATS not reachable yet (${reason}); retrying in ${Math.round(delay)} ms`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
