import fp from "fastify-plugin";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { Type } from "@sinclair/typebox";
import type { StreamHubObserver } from "./stream-hub.ts";

declare module "fastify" {
  interface FastifyInstance {
    metrics: Metrics;
  }
}

export interface Metrics {
  /** This app's registry: never prom-client's global one, so several apps can share a process. */
  registry: Registry;
  /** Passed to the stream hub (it reports feed read timings through it). */
  streamHub: StreamHubObserver;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

const MetricsTextSchema = Type.String({
  description: "Prometheus text exposition format 0.0.4",
  examples: [
    "# HELP expert_jobs_open_streams Open checkpoint streams on this instance.\n# TYPE expert_jobs_open_streams gauge\nexpert_jobs_open_streams 3\n",
  ],
});

/**
 * Prometheus metrics at GET /metrics. Gauges and totals are read from the other plugins' own state when
 * scraped (open streams, waiting claims, sweep totals, pool counts), so nothing is counted twice;
 * only request durations and stream read timings are observed as they happen. Registered after the
 * database and before the routes (its onResponse hook must see them); reads the stream hub and the
 * runtime at scrape time.
 */
export const metricsPlugin = fp(
  async (app) => {
    const registry = new Registry();
    const registers = [registry];
    /** A counter by one label, read at scrape time from totals another plugin keeps. */
    const totalsCounter = <K extends string>(
      counter: { name: string; help: string; label: string; keys: readonly K[] },
      totals: () => Readonly<Record<K, number>>,
    ) =>
      new Counter({
        name: counter.name,
        help: counter.help,
        labelNames: [counter.label],
        registers,
        collect() {
          const read = totals();
          this.reset();
          for (const key of counter.keys) this.inc({ [counter.label]: key }, read[key]);
        },
      });

    const requestDuration = new Histogram({
      name: "http_request_duration_seconds",
      help: "Time to answer a request, by route pattern (unmatched: no route), method and status code.",
      labelNames: ["method", "route", "status_code"] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    // A stream's reply is hijacked and never reaches onResponse: open streams are counted below instead.
    app.addHook("onResponse", async (request, reply) => {
      requestDuration.observe(
        { method: request.method, route: request.routeOptions.url ?? "unmatched", status_code: reply.statusCode },
        reply.elapsedTime / 1000,
      );
    });

    new Gauge({
      name: "expert_jobs_open_streams",
      help: "Open checkpoint streams on this instance.",
      registers,
      collect() {
        this.set(app.streamHub.openStreams);
      },
    });
    new Counter({
      name: "expert_jobs_stream_events_sent_total",
      help: "Checkpoint events written to streams by this instance.",
      registers,
      collect() {
        this.reset();
        this.inc(app.streamHub.eventsSent);
      },
    });
    new Gauge({
      name: "expert_jobs_stream_held_bytes",
      help: "Bytes the open streams hold in memory: event frames cached or being written, and message texts.",
      registers,
      collect() {
        this.set(app.streamHub.heldBytes);
      },
    });
    new Counter({
      name: "expert_jobs_stream_reads_total",
      help: "Database reads of stream feeds by this instance (each serves every stream of its job that needs it).",
      registers,
      collect() {
        this.reset();
        this.inc(app.streamHub.feedReads);
      },
    });
    new Counter({
      name: "expert_jobs_stream_frame_bytes_total",
      help: "Bytes of event frames built from those reads; compare with what the streams were sent to see how much they shared.",
      registers,
      collect() {
        this.reset();
        this.inc(app.streamHub.framesBuiltBytes);
      },
    });
    const notificationLag = new Histogram({
      name: "expert_jobs_notification_lag_seconds",
      help: "From a NOTIFY reaching this instance to the stream read it triggers starting (waits while a read of the same job runs).",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const readDuration = new Histogram({
      name: "expert_jobs_stream_read_duration_seconds",
      help: "One stream feed read: the job row, new checkpoints from the database, serialising and writing them.",
      buckets: LATENCY_BUCKETS,
      registers,
    });

    const cutOffs = new Counter({
      name: "expert_jobs_stream_cutoffs_total",
      help: "Stream clients cut off by this instance: stalled (the socket took nothing for SSE_STALL_TIMEOUT_MS) or lagging (more than SSE_MAX_LAG_EVENTS behind).",
      labelNames: ["reason"] as const,
      registers,
    });

    new Gauge({
      name: "expert_jobs_claims_waiting",
      help: "Claims long-polling on this instance for a job to be queued.",
      registers,
      collect() {
        this.set(app.runtime.waitingClaims);
      },
    });
    totalsCounter(
      {
        name: "expert_jobs_lease_expiries_total",
        help: "Claimed jobs whose lease ran out, taken back by this instance's sweeper, by what became of them.",
        label: "outcome",
        keys: ["requeued", "failed", "canceled"],
      },
      () => app.runtime.sweptTotals,
    );
    new Counter({
      name: "expert_jobs_paused_jobs_expired_total",
      help: "Paused jobs nobody continued within PAUSED_JOB_TTL_MS, expired by this instance's sweeper.",
      registers,
      collect() {
        this.reset();
        this.inc(app.runtime.sweptTotals.expired);
      },
    });

    totalsCounter(
      {
        name: "expert_jobs_jobs_deleted_total",
        help: "Jobs this instance deleted with their checkpoints and messages, by reason: retention (JOB_RETENTION_DAYS) or admin.",
        label: "reason",
        keys: ["retention", "admin"],
      },
      () => app.jobRetention.deletedTotals,
    );

    new Gauge({
      name: "expert_jobs_status_watches_waiting",
      help: "Runtime status watches (GET …/expert_jobs/{id}/status with `while`) long-polling on this instance.",
      registers,
      collect() {
        this.set(app.runtime.watchingStatuses);
      },
    });
    totalsCounter(
      {
        name: "expert_jobs_webhook_attempts_total",
        help: "Webhook delivery attempts this instance finished, by outcome: succeeded, retried (failed, due again later) or failed (given up).",
        label: "outcome",
        keys: ["succeeded", "retried", "failed"],
      },
      () => app.webhookDeliveries.totals,
    );

    const database = app.database;
    // Embedded PGlite has no pool: these exist on PostgreSQL only.
    if (database.kind === "postgres") {
      const { pool } = database;
      new Gauge({
        name: "expert_jobs_db_pool_connections",
        help: "PostgreSQL pool connections by state (total, idle).",
        labelNames: ["state"] as const,
        registers,
        collect() {
          this.set({ state: "total" }, pool.totalCount);
          this.set({ state: "idle" }, pool.idleCount);
        },
      });
      new Gauge({
        name: "expert_jobs_db_pool_waiting",
        help: "Queries waiting for a free PostgreSQL pool connection.",
        registers,
        collect() {
          this.set(pool.waitingCount);
        },
      });
    }
    new Gauge({
      name: "expert_jobs_notification_listener_up",
      help: "1 while the connection that brings notifications (LISTEN, or NATS) is up (always 1 on embedded PGlite).",
      registers,
      collect() {
        this.set(app.notifications.connected ? 1 : 0);
      },
    });
    new Counter({
      name: "expert_jobs_notifications_sent_total",
      help: "Notifications this instance sent after commits, and the batches (NOTIFY transactions or NATS flushes) they went in.",
      labelNames: ["unit"] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ unit: "notifications" }, app.notifier.sent);
        this.inc({ unit: "batches" }, app.notifier.batches);
      },
    });
    new Counter({
      name: "expert_jobs_safety_wakes_total",
      help: "Stream feeds and waiting claims woken by the periodic safety re-read: what a notification should have woken (lost, or still on its way).",
      labelNames: ["kind"] as const,
      registers,
      collect() {
        this.reset();
        this.inc({ kind: "feed" }, app.streamHub.safetyWakes);
        this.inc({ kind: "claim" }, app.runtime.safetyWakes);
      },
    });

    app.decorate("metrics", {
      registry,
      streamHub: {
        feedRead(lagMs, durationMs) {
          if (lagMs !== undefined) notificationLag.observe(lagMs / 1000);
          readDuration.observe(durationMs / 1000);
        },
        cutOff(reason) {
          cutOffs.inc({ reason });
        },
      },
    } satisfies Metrics);
    app.addHook("onClose", async () => registry.clear());

    app.get(
      "/metrics",
      {
        schema: {
          summary: "Prometheus metrics",
          description: "Request durations per route, open streams, stream events and read timings, claims, lease expiries, pool usage.",
          tags: ["operations"],
          security: [],
          produces: ["text/plain"],
          response: { 200: MetricsTextSchema },
        },
      },
      async (_request, reply) => {
        const text = await registry.metrics();
        return reply.type(registry.contentType).send(text);
      },
    );
  },
  { name: "metrics", dependencies: ["database"], fastify: "5.x" },
);
