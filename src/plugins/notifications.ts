import fp from "fastify-plugin";
import type { NotifyBackend } from "../config.ts";
import type { Notifier } from "../db/channels.ts";
import { NotificationBus, type Notifications } from "../notify/bus.ts";
import { NatsNotifications } from "../notify/nats.ts";
import { PgListener, pgSend } from "../notify/postgres.ts";
import { Publisher, type Notification, type SendBatch } from "../notify/publisher.ts";
import type { ReconnectPolicy } from "../notify/reconnect.ts";

export type { CatchUpReason, Notifications, NotificationListener } from "../notify/bus.ts";

export interface NotificationsOptions {
  backend?: NotifyBackend;
  /**
   * Every so often each stream feed and waiting claim checks the database for what a lost notification
   * would have told it (NOTIFY_SAFETY_INTERVAL_MS): the bound on the delay a lost publish causes.
   */
  safetyIntervalMs?: number;
  reconnect?: ReconnectPolicy;
  /** How often the listening connection proves it is alive (LISTEN: a query; NATS: a PING). */
  heartbeatMs?: number;
  /** How long start-up keeps trying to reach NATS. */
  connectTimeoutMs?: number;
  /** Tests: false drops a notification after its commit, as a crash between commit and send would. */
  sendFilter?: (notification: Notification) => boolean;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Wake-ups from every instance, and the catch-ups that stand in for lost ones. */
    notifications: Notifications;
    /** Sends notifications after commit (see Publisher). */
    notifier: Notifier & Pick<Publisher, "sent" | "batches">;
    /** The backend pid of this instance's LISTEN connection (PostgreSQL LISTEN only). */
    listenerProcessId: number | undefined;
  }
}

export const defaultSafetyIntervalMs = 5_000;

export const notificationsPlugin = fp<NotificationsOptions>(
  async (app, options) => {
    const bus = new NotificationBus();
    const database = app.database;
    const reconnect = options.reconnect ?? { initialDelayMs: 100, maxDelayMs: 5_000 };
    const heartbeatMs = options.heartbeatMs ?? 30_000;
    const backend = options.backend ?? { kind: "postgres" };
    let send: SendBatch;
    let stopBackend: () => Promise<void>;
    let processId: () => number | undefined = () => undefined;
    if (database.kind === "pglite") {
      // config.ts refuses NATS without DATABASE_URL; a caller of buildApp gets the same answer here.
      if (backend.kind !== "postgres") throw new Error("NOTIFY_BACKEND=nats needs DATABASE_URL: embedded PGlite is one process");
      // One process: a notification is an event in it, after the commit like any other.
      send = async (batch) => {
        for (const { channel, payload } of batch) bus.emit(channel, payload);
      };
      stopBackend = async () => {};
    } else if (backend.kind === "nats") {
      const nats = await NatsNotifications.start(bus, app.log, {
        servers: backend.servers,
        subjectPrefix: backend.subjectPrefix,
        connectTimeoutMs: options.connectTimeoutMs ?? 30_000,
        reconnect,
        heartbeatMs,
      });
      send = nats.send;
      stopBackend = () => nats.close();
    } else {
      const listener = new PgListener(database.url, bus, app.log, reconnect, heartbeatMs);
      await listener.start();
      send = pgSend(app.sql);
      stopBackend = () => listener.close();
      processId = () => listener.processId;
    }
    const publisher = new Publisher(send, app.log, { retry: reconnect, sendFilter: options.sendFilter });
    const safety = setInterval(() => bus.emitCatchUp("periodic"), options.safetyIntervalMs ?? defaultSafetyIntervalMs);
    safety.unref();
    app.decorate("notifications", bus);
    app.decorate("notifier", publisher);
    app.decorate("listenerProcessId", { getter: processId });
    app.addHook("preClose", async () => clearInterval(safety));
    // After every request and sweep finished (onClose), before the database closes (registered after it).
    app.addHook("onClose", async () => {
      await publisher.close(2_000);
      await stopBackend();
    });
  },
  { name: "notifications", dependencies: ["database"], fastify: "5.x" },
);
