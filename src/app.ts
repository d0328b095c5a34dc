import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import multipart from "@fastify/multipart";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Config, WebhookConfig } from "./config.ts";
import { RequestValidationError } from "./errors.ts";
import { MAX_JSON_DEPTH, unstorableJson } from "./lib/json-limits.ts";
import { authPlugin, type AuthFailureLimit } from "./plugins/auth.ts";
import { databasePlugin, defaultConnectTimeoutMs } from "./plugins/database.ts";
import { clientErrorHandler, errorHandlerPlugin, expectationFailed, sendError } from "./plugins/error-handler.ts";
import { inputTypesPlugin } from "./plugins/input-types.ts";
import { jobSweeperPlugin } from "./plugins/job-sweeper.ts";
import { metricsPlugin } from "./plugins/metrics.ts";
import { defaultSafetyIntervalMs, notificationsPlugin, type NotificationsOptions } from "./plugins/notifications.ts";
import { protectionPlugin, type RateLimitOptions, type UnderPressureOptions } from "./plugins/protection.ts";
import { requestDrainPlugin } from "./plugins/request-drain.ts";
import { runtimePlugin } from "./plugins/runtime.ts";
import { servicesPlugin } from "./plugins/services.ts";
import { streamHubPlugin } from "./plugins/stream-hub.ts";
import { jobChangesDefaults, jobChangesPlugin } from "./plugins/job-changes.ts";
import { webhookDeliveryPlugin } from "./plugins/webhook-delivery.ts";
import { dashboardRoutes } from "./dashboard/dashboard.routes.ts";
import { adminRoutes } from "./modules/admin/admin.routes.ts";
import { checkpointStreamRoutes } from "./modules/checkpoints/checkpoint-stream.routes.ts";
import { checkpointsRoutes } from "./modules/checkpoints/checkpoints.routes.ts";
import { expertJobsRoutes } from "./modules/expert-jobs/expert-jobs.routes.ts";
import { expertJobStreamRoutes } from "./modules/expert-jobs/expert-job-stream.routes.ts";
import { healthRoutes } from "./modules/health/health.routes.ts";
import type { RetentionBatches } from "./modules/expert-jobs/job-retention.service.ts";
import { runtimeRoutes } from "./modules/runtime/runtime.routes.ts";
import { webhookDeliveryDefaults } from "./modules/webhooks/webhook-delivery.service.ts";
import { webhookAdminRoutes } from "./modules/webhooks/webhooks.routes.ts";

type LimitSettings =
  | "rateLimitPerMinute"
  | "maxStreamsPerKey"
  | "authFailuresPerMinute"
  | "sseStallTimeoutMs"
  | "sseMaxLagEvents"
  | "sseBatchBytes"
  | "sseCacheBytes";

/** The limits the environment sets (RATE_LIMIT_PER_MINUTE, MAX_STREAMS_PER_KEY, AUTH_FAILURES_PER_MINUTE, SSE_*) reach the app as `BuildAppOptions` (see `appLimits`). */
export type AppConfig = Omit<Config, "secretsKey" | "port" | "host" | "webhooks" | LimitSettings | NotifySettings> & {
  secretsKey: Buffer;
  /** Defaults: `webhookDeliveryDefaults`. */
  webhooks?: Partial<WebhookConfig>;
} & Partial<Pick<Config, NotifySettings>>;

/** Default: PostgreSQL NOTIFY (in process on PGlite), with a safety re-read every `defaultSafetyIntervalMs`. */
type NotifySettings = "notify" | "notifySafetyIntervalMs";

/** The protection limits the environment sets, as app options. */
export function appLimits(
  config: Pick<Config, LimitSettings>,
): Pick<BuildAppOptions, "rateLimit" | "maxStreamsPerKey" | "authFailureLimit" | "streamDelivery"> {
  return {
    rateLimit: config.rateLimitPerMinute === 0 ? false : { max: config.rateLimitPerMinute, timeWindowMs: 60_000 },
    maxStreamsPerKey: config.maxStreamsPerKey,
    authFailureLimit: config.authFailuresPerMinute === 0 ? false : { max: config.authFailuresPerMinute, timeWindowMs: 60_000 },
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
  /** Reconnect and heartbeat timings, and test hooks, of notifications (the backend comes from the config). */
  notifications?: Omit<NotificationsOptions, "backend" | "safetyIntervalMs">;
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
  /** Failed authentications per client address and window before 429 (default 30 per minute); false: off. */
  authFailureLimit?: AuthFailureLimit | false;
  /** How long a stream keeps retrying reads while the database is unreachable before it sends `event: error` (default 30 s). */
  streamReadRetryWindowMs?: number;
  /** HTTP server timeouts (defaults: `serverTimeouts`). */
  timeouts?: Partial<ServerTimeouts>;
  /** How long shutdown waits for requests in flight (default 1.5 s). */
  shutdownDrainMs?: number;
  /** Beyond WEBHOOK_TIMEOUT_MS, how long a claimed webhook delivery is kept from other instances (default 5 s). */
  webhookClaimMarginMs?: number;
  /** How long a streamed job's watch mark holds without renewal (default: `watchLeaseMs`). */
  watchLeaseMs?: number;
}

/**
 * A watch mark is renewed at every safety re-read once half of it is gone, so it outlives several missed
 * renewals (a busy event loop, a database failover) before a checkpoint goes unannounced.
 */
export const watchLeaseMs = (safetyIntervalMs: number): number => Math.max(60_000, 6 * safetyIntervalMs);

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

/** Percent-decoding until nothing changes (`%2561` is `%61` is `a`); a malformed escape ends it. */
function decodedFully(text: string): string {
  let current = text;
  for (let round = 0; round < 4; round++) {
    let next: string;
    try {
      next = decodeURIComponent(current.replaceAll("+", " "));
    } catch {
      return current;
    }
    if (next === current) return current;
    current = next;
  }
  return current;
}

// An API key's id part (`ejk_<24 chars>`), or the stream's token parameter, however it is spelled.
const CREDENTIAL = /access.?token|ejk_[a-z0-9]{24}/i;

/**
 * Log lines never carry credentials: `Authorization` is not logged, and every part of a URL (path segment
 * or query parameter) that, once decoded, names `access_token` or holds an API key is masked, whatever its
 * spelling: `access%5Ftoken=`, `%61ccess_token=`, `;access_token=`, `access_token%3D…`, a key in another parameter.
 */
export function redactUrl(url: string): string {
  return url.replace(/[^/?&;#]+/g, (part) => {
    const decoded = decodedFully(part);
    if (!CREDENTIAL.test(decoded)) return part;
    return /access.?token/i.test(decoded) ? "access_token=[REDACTED]" : "[REDACTED]";
  });
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
    // Longer path parameters get 422 from the router (below); URLs past 16 KiB meet Node's header limit first (431).
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1_024 },
    // What the router rejects before any hook runs (a malformed URL) still gets the envelope and a request id.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      if (error.code === "FST_ERR_MAX_PARAM_LENGTH") return sendError(reply, 422, [{ path: "/params", message: "is too long" }]);
      return sendError(reply, 400, "Malformed URL");
    },
    clientErrorHandler,
    forceCloseConnections: true,
    ...(config.trustProxy !== undefined && { trustProxy: config.trustProxy }),
    // Opening the database (waiting for PostgreSQL to come up, PGlite's crash recovery, pending migrations)
    // can outlast Fastify's 10 s default.
    pluginTimeout: 120_000 + (config.database.kind === "postgres" ? (config.database.connectTimeoutMs ?? defaultConnectTimeoutMs) : 0),
    // Requests arriving during shutdown get the error envelope from the request-drain plugin instead.
    return503OnClosing: false,
    connectionTimeout: timeouts.connectionTimeoutMs,
    requestTimeout: timeouts.requestTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    http: {
      // The onRequest hook below answers a missing Host itself, in the envelope (Node's own 400 has no body).
      requireHostHeader: false,
      headersTimeout: timeouts.headersTimeoutMs,
      requestTimeout: timeouts.requestTimeoutMs,
      connectionsCheckingInterval: timeouts.checkIntervalMs,
    },
    requestIdHeader: false,
    genReqId: (request) => {
      const incoming = request.headers["x-request-id"];
      return typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    // No coercion: query strings and form fields are converted to their types by the input-types plugin.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  try {
    await setUp(app, config, options);
  } catch (error) {
    // A start-up that fails midway (a SECRETS_KEY that does not match) closes what it opened: the database, its lock.
    await app.close().catch(() => {});
    throw error;
  }
  return app;
}

async function setUp(app: FastifyInstance, config: AppConfig, options: BuildAppOptions): Promise<void> {
  app.server.on("checkExpectation", expectationFailed);
  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    // HTTP/1.1 requires Host (RFC 9112 §3.2); HTTP/1.0 clients may leave it out.
    if (request.headers.host === undefined && request.raw.httpVersion === "1.1") return sendError(reply, 400, "Missing Host header");
  });

  // `__proto__` and `constructor` are keys like any other (JSON.parse makes them own properties, never a
  // prototype): tool arguments and results may carry them, and they are kept exactly as posted.
  const parseJson = app.getDefaultJsonParser("ignore", "ignore");
  // Only JSON and multipart/form-data bodies exist in this API; anything else is a 415.
  app.removeContentTypeParser(["application/json", "text/plain"]);
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    const text = body.toString();
    // The Perstack client sends `Content-Type: application/json` on every request, bodiless ones included.
    if (text.trim() === "") return done(null, undefined);
    parseJson(request, text, (error, parsed) => {
      if (error) return done(error, undefined);
      const issue = unstorableJson(parsed);
      if (issue) return done(new RequestValidationError([issue]), undefined);
      done(null, parsed);
    });
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
        description:
          "Self-hosted implementation of the Perstack Studio expert jobs API.\n\n" +
          "Every error is `{code, error, reason}`, also those raised before routing: 400 (malformed HTTP, a missing Host), " +
          "408 (a request that does not arrive in time), 413 (a body over BODY_LIMIT_BYTES), 415 (neither JSON nor " +
          `multipart/form-data), 417 (an unsupported Expect), 431 (request line and headers over 16 KiB). JSON bodies may nest ` +
          `${MAX_JSON_DEPTH} levels and hold numbers within a double's range (422 beyond); types are strict (422), except ` +
          "query strings and form fields, read in JSON number syntax. 429: too many requests for an API key, or too many " +
          "failed authentications from one address (AUTH_FAILURES_PER_MINUTE).",
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
        { name: "webhooks", description: "Webhook endpoints, their delivery log, redelivery (ADMIN_TOKEN)" },
        { name: "operations", description: "Health and metrics (no key)" },
      ],
    },
  });

  await app.register(errorHandlerPlugin);
  await app.register(inputTypesPlugin);
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
  await app.register(authPlugin, {
    adminToken: config.adminToken,
    failureLimit: options.authFailureLimit ?? { max: 30, timeWindowMs: 60_000 },
  });
  // Before the services: they send notifications after their commits.
  await app.register(notificationsPlugin, {
    ...options.notifications,
    backend: config.notify,
    safetyIntervalMs: config.notifySafetyIntervalMs,
    // Start-up waits for NATS as long as it waits for PostgreSQL (DATABASE_CONNECT_TIMEOUT_MS).
    connectTimeoutMs:
      options.notifications?.connectTimeoutMs ?? (config.database.kind === "postgres" ? config.database.connectTimeoutMs : undefined),
  });
  const webhooks = {
    ...webhookDeliveryDefaults,
    ...config.webhooks,
    ...(options.webhookClaimMarginMs !== undefined && { claimMarginMs: options.webhookClaimMarginMs }),
  };
  await app.register(servicesPlugin, {
    secretsKey: config.secretsKey,
    leaseMs: config.leaseMs,
    retentionBatches: options.retentionBatches,
    webhookPolicy: { allowPrivate: webhooks.allowPrivate },
    watchLeaseMs: options.watchLeaseMs ?? watchLeaseMs(config.notifySafetyIntervalMs ?? defaultSafetyIntervalMs),
  });
  await app.register(streamHubPlugin, {
    heartbeatMs: config.sseHeartbeatMs,
    ...streamDeliveryDefaults,
    ...options.streamDelivery,
    batchSize: 50,
    maxStreamsPerKey: options.maxStreamsPerKey ?? 100,
    readRetryWindowMs: options.streamReadRetryWindowMs ?? 30_000,
    observer: app.metrics.streamHub,
  });
  await app.register(jobChangesPlugin, {
    heartbeatMs: config.sseHeartbeatMs,
    ...jobChangesDefaults,
    maxStreamsPerKey: options.maxStreamsPerKey ?? 100,
  });
  await app.register(runtimePlugin, { leaseMs: config.leaseMs, pausedJobTtlMs: config.pausedJobTtlMs });
  await app.register(jobSweeperPlugin, { intervalMs: options.sweepIntervalMs ?? 5_000, jobRetentionMs: config.jobRetentionMs });
  await app.register(webhookDeliveryPlugin, webhooks);
  // After the stream hub and the runtime: its preClose waits for what theirs leave in flight.
  await app.register(requestDrainPlugin, { timeoutMs: options.shutdownDrainMs ?? 1_500 });

  await app.register(healthRoutes);
  await app.register(
    async (studio) => {
      studio.addHook("onRequest", studio.authenticateApiKey);
      await studio.register(expertJobsRoutes);
      await studio.register(expertJobStreamRoutes);
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
        await admin.register(webhookAdminRoutes);
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
}
