import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import multipart from "@fastify/multipart";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Config } from "./config.ts";
import { authPlugin } from "./plugins/auth.ts";
import { databasePlugin, defaultConnectTimeoutMs } from "./plugins/database.ts";
import { errorHandlerPlugin, sendError } from "./plugins/error-handler.ts";
import { jobSweeperPlugin } from "./plugins/job-sweeper.ts";
import { metricsPlugin } from "./plugins/metrics.ts";
import { notificationsPlugin, type NotificationsOptions } from "./plugins/notifications.ts";
import { protectionPlugin, type RateLimitOptions, type UnderPressureOptions } from "./plugins/protection.ts";
import { requestDrainPlugin } from "./plugins/request-drain.ts";
import { runtimePlugin } from "./plugins/runtime.ts";
import { servicesPlugin } from "./plugins/services.ts";
import { streamHubPlugin } from "./plugins/stream-hub.ts";
import { dashboardRoutes } from "./dashboard/dashboard.routes.ts";
import { adminRoutes } from "./modules/admin/admin.routes.ts";
import { checkpointStreamRoutes } from "./modules/checkpoints/checkpoint-stream.routes.ts";
import { checkpointsRoutes } from "./modules/checkpoints/checkpoints.routes.ts";
import { expertJobsRoutes } from "./modules/expert-jobs/expert-jobs.routes.ts";
import { healthRoutes } from "./modules/health/health.routes.ts";
import type { RetentionBatches } from "./modules/expert-jobs/job-retention.service.ts";
import { runtimeRoutes } from "./modules/runtime/runtime.routes.ts";

type LimitSettings =
  "rateLimitPerMinute" | "maxStreamsPerKey" | "sseStallTimeoutMs" | "sseMaxLagEvents" | "sseBatchBytes" | "sseCacheBytes";

/** The limits the environment sets (RATE_LIMIT_PER_MINUTE, MAX_STREAMS_PER_KEY, SSE_*) reach the app as `BuildAppOptions` (see `appLimits`). */
export type AppConfig = Omit<Config, "secretsKey" | "port" | "host" | LimitSettings> & { secretsKey: Buffer };

/** The protection limits the environment sets, as app options. */
export function appLimits(config: Pick<Config, LimitSettings>): Pick<BuildAppOptions, "rateLimit" | "maxStreamsPerKey" | "streamDelivery"> {
  return {
    rateLimit: config.rateLimitPerMinute === 0 ? false : { max: config.rateLimitPerMinute, timeWindowMs: 60_000 },
    maxStreamsPerKey: config.maxStreamsPerKey,
    streamDelivery: {
      stallTimeoutMs: config.sseStallTimeoutMs,
      maxLagEvents: config.sseMaxLagEvents,
      batchBytes: config.sseBatchBytes,
      cacheBytes: config.sseCacheBytes,
    },
  };
}

/** How streams are fed and when a client is cut off (SSE_STALL_TIMEOUT_MS, SSE_MAX_LAG_EVENTS, SSE_BATCH_BYTES, SSE_CACHE_BYTES). */
export interface StreamDelivery {
  stallTimeoutMs: number;
  maxLagEvents: number;
  batchBytes: number;
  cacheBytes: number;
}

export const streamDeliveryDefaults: StreamDelivery = {
  stallTimeoutMs: 30_000,
  maxLagEvents: 1_000,
  batchBytes: 4 * 1024 * 1024,
  cacheBytes: 32 * 1024 * 1024,
};

export interface BuildAppOptions {
  /** Pino options or a ready logger; false silences it (tests). */
  logger?: FastifyServerOptions["logger"];
  loggerInstance?: FastifyServerOptions["loggerInstance"];
  notifications?: NotificationsOptions;
  /** Stream delivery limits (defaults: `streamDeliveryDefaults`). */
  streamDelivery?: Partial<StreamDelivery>;
  /** How often the job sweeper takes back expired leases, expires paused jobs and applies retention (default 5 s). */
  sweepIntervalMs?: number;
  /** Retention's batches (default 50 jobs per transaction, 20 transactions per sweep). */
  retentionBatches?: RetentionBatches;
  /** Requests per API key and window (default 1200 per minute); false turns the limit off. */
  rateLimit?: RateLimitOptions | false;
  /** Load shedding (503) when the event loop lags (default: mean delay over 5 s above 1000 ms); false: off. */
  underPressure?: UnderPressureOptions | false;
  /** Open streams per API key and instance (default 100). */
  maxStreamsPerKey?: number;
  /** How long a stream keeps retrying reads while the database is unreachable before it sends `event: error` (default 30 s). */
  streamReadRetryWindowMs?: number;
  /** HTTP server timeouts (defaults: `serverTimeouts`). */
  timeouts?: Partial<ServerTimeouts>;
  /** How long shutdown waits for requests in flight (default 1.5 s). */
  shutdownDrainMs?: number;
}

export interface ServerTimeouts {
  /** Time to receive a request's headers (slow-loris bound). */
  headersTimeoutMs: number;
  /** Time to receive a whole request, body included; a 32 MiB checkpoint on a slow link needs minutes. */
  requestTimeoutMs: number;
  /** Socket inactivity before the server closes it; above the longest claim wait (30 s). Streams opt out. */
  connectionTimeoutMs: number;
  /** Idle keep-alive connections; above the usual load balancer idle timeout (60 s). */
  keepAliveTimeoutMs: number;
  /** How often Node checks the headers and request timeouts. */
  checkIntervalMs: number;
}

export const serverTimeouts: ServerTimeouts = {
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 300_000,
  connectionTimeoutMs: 120_000,
  keepAliveTimeoutMs: 72_000,
  checkIntervalMs: 30_000,
};

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** Log lines never carry credentials: `Authorization` is not logged and `access_token` is masked in URLs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/gi, "$1[REDACTED]");
}

export function loggerOptions(level: string): Exclude<FastifyServerOptions["logger"], boolean | undefined> {
  return {
    level,
    redact: { paths: ["req.headers.authorization", "headers.authorization", "*.headers.authorization"], censor: "[REDACTED]" },
    serializers: {
      req: (request) => ({ method: request.method, url: redactUrl(request.url), remoteAddress: request.ip }),
    },
  };
}

export async function buildApp(config: AppConfig, options: BuildAppOptions = {}): Promise<FastifyInstance> {
  const timeouts = { ...serverTimeouts, ...options.timeouts };
  const app = Fastify({
    ...(options.loggerInstance ? { loggerInstance: options.loggerInstance } : { logger: options.logger ?? loggerOptions(config.logLevel) }),
    bodyLimit: config.bodyLimitBytes,
    // Long enough that any over-long id reaches schema validation (422) rather than the router's 414.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 16_384 },
    // What the router rejects before any hook runs (a malformed URL) still gets the envelope and a request id.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      if (error.code === "FST_ERR_MAX_PARAM_LENGTH") return sendError(reply, 422, [{ path: "/params", message: "is too long" }]);
      return sendError(reply, 400, "Malformed URL");
    },
    forceCloseConnections: true,
    // Opening the database (waiting for PostgreSQL to come up, PGlite's crash recovery, pending migrations)
    // can outlast Fastify's 10 s default.
    pluginTimeout: 120_000 + (config.database.kind === "postgres" ? (config.database.connectTimeoutMs ?? defaultConnectTimeoutMs) : 0),
    // Requests arriving during shutdown get the error envelope from the request-drain plugin instead.
    return503OnClosing: false,
    connectionTimeout: timeouts.connectionTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    http: {
      headersTimeout: timeouts.headersTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      connectionsCheckingInterval: timeouts.checkIntervalMs,
    },
    requestIdHeader: false,
    genReqId: (request) => {
      const incoming = request.headers["x-request-id"];
      return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    ajv: { customOptions: { coerceTypes: "array", removeAdditional: false, useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  // The Perstack client sends `Content-Type: application/json` on every request, bodiless ones included.
  const parseJson = app.getDefaultJsonParser("error", "error");
  // Only JSON and multipart/form-data bodies exist in this API; anything else is a 415.
  app.removeContentTypeParser(["application/json", "text/plain"]);
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    const text = body.toString();
    if (text.trim() === "") return done(null, undefined);
    parseJson(request, text, done);
  });
  await app.register(multipart, {
    attachFieldsToBody: "keyValues",
    limits: { fieldSize: config.bodyLimitBytes, fields: 1000, files: 100, fileSize: config.bodyLimitBytes, parts: 1100 },
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Expert Jobs API",
        version: "1.0.0",
        description: "Self-hosted implementation of the Perstack Studio expert jobs API.",
      },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer", description: "An API key (studio API) or ADMIN_TOKEN (admin API)" },
        },
      },
      security: [{ bearer: [] }],
      // The order of the docs page: the studio API first, operations last.
      tags: [
        { name: "expert jobs", description: "Start, read, continue and cancel jobs (client key)" },
        { name: "checkpoints", description: "Read, list and stream a job's checkpoints (client key)" },
        { name: "runtime", description: "Claim jobs, post checkpoints, report status (runtime key)" },
        { name: "admin", description: "Organizations, applications, keys and experts (ADMIN_TOKEN)" },
        { name: "operations", description: "Health and metrics (no key)" },
      ],
    },
  });

  await app.register(errorHandlerPlugin);
  await app.register(databasePlugin, { database: config.database });
  // After the database opened: its start-up (migrations, PGlite's WebAssembly) is not load to shed.
  await app.register(protectionPlugin, {
    rateLimit: options.rateLimit ?? { max: 1200, timeWindowMs: 60_000 },
    underPressure: options.underPressure ?? { maxEventLoopDelayMs: 1000, sampleIntervalMs: 5000 },
    corsOrigins: config.corsOrigins,
    docsPrefix: "/docs",
    bodyLimitBytes: config.bodyLimitBytes,
  });
  await app.register(metricsPlugin);
  await app.register(authPlugin, { adminToken: config.adminToken });
  await app.register(servicesPlugin, {
    secretsKey: config.secretsKey,
    leaseMs: config.leaseMs,
    retentionBatches: options.retentionBatches,
  });
  await app.register(notificationsPlugin, options.notifications ?? {});
  await app.register(streamHubPlugin, {
    heartbeatMs: config.sseHeartbeatMs,
    ...streamDeliveryDefaults,
    ...options.streamDelivery,
    batchSize: 50,
    maxStreamsPerKey: options.maxStreamsPerKey ?? 100,
    readRetryWindowMs: options.streamReadRetryWindowMs ?? 30_000,
    observer: app.metrics.streamHub,
  });
  await app.register(runtimePlugin, { leaseMs: config.leaseMs, pausedJobTtlMs: config.pausedJobTtlMs });
  await app.register(jobSweeperPlugin, { intervalMs: options.sweepIntervalMs ?? 5_000, jobRetentionMs: config.jobRetentionMs });
  // After the stream hub and the runtime: its preClose waits for what theirs leave in flight.
  await app.register(requestDrainPlugin, { timeoutMs: options.shutdownDrainMs ?? 1_500 });

  await app.register(healthRoutes);
  await app.register(
    async (studio) => {
      studio.addHook("onRequest", studio.authenticateApiKey);
      await studio.register(expertJobsRoutes);
      await studio.register(runtimeRoutes);
      await studio.register(checkpointsRoutes);
      await studio.register(checkpointStreamRoutes);
    },
    { prefix: "/api/studio/v1" },
  );
  if (config.adminToken !== undefined) {
    await app.register(
      async (admin) => {
        admin.addHook("onRequest", admin.authenticateAdmin);
        await admin.register(adminRoutes);
      },
      { prefix: "/api/admin/v1" },
    );
  }

  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  // Swagger UI's files are served from node_modules: the page needs no network beyond this server.
  await app.register(swaggerUi, {
    routePrefix: "/docs",
    theme: { title: "Expert Jobs API" },
    uiConfig: { layout: "BaseLayout", deepLinking: true, docExpansion: "list", defaultModelsExpandDepth: 0 },
  });
  await app.register(dashboardRoutes);
  return app;
}
