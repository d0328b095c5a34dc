import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";

const IntegerString = (defaultValue: number, minimum: number, maximum = Number.MAX_SAFE_INTEGER) =>
  Type.Integer({ default: defaultValue, minimum, maximum });

export const EnvSchema = Type.Object({
  PORT: IntegerString(3000, 0, 65535),
  HOST: Type.String({ default: "127.0.0.1", minLength: 1 }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: "^postgres(ql)?://" })),
  DATABASE_CONNECT_TIMEOUT_MS: IntegerString(30_000, 0),
  LEASE_MS: IntegerString(300_000, 1000),
  PAUSED_JOB_TTL_MS: IntegerString(7 * 24 * 60 * 60 * 1000, 1000),
  JOB_RETENTION_DAYS: Type.Optional(Type.Integer({ minimum: 1, maximum: 36_500 })),
  BODY_LIMIT_BYTES: IntegerString(33_554_432, 1024),
  DATA_DIR: Type.String({ default: "./.data", minLength: 1 }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  SECRETS_KEY: Type.Optional(Type.String({ minLength: 1 })),
  LOG_LEVEL: Type.Union(
    ["fatal", "error", "warn", "info", "debug", "trace", "silent"].map((level) => Type.Literal(level)),
    { default: "info" },
  ),
  SSE_HEARTBEAT_MS: IntegerString(15_000, 10),
  SSE_STALL_TIMEOUT_MS: IntegerString(30_000, 100),
  SSE_MAX_LAG_EVENTS: IntegerString(1_000, 0),
  SSE_BATCH_BYTES: IntegerString(4 * 1024 * 1024, 64 * 1024),
  SSE_CACHE_BYTES: IntegerString(32 * 1024 * 1024, 0),
  CORS_ORIGINS: Type.Optional(Type.String({ minLength: 1 })),
  RATE_LIMIT_PER_MINUTE: IntegerString(1200, 0),
  MAX_STREAMS_PER_KEY: IntegerString(100, 1),
  AUTH_FAILURES_PER_MINUTE: IntegerString(30, 0),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  NOTIFY_BACKEND: Type.Union([Type.Literal("postgres"), Type.Literal("nats")], { default: "postgres" }),
  NATS_URL: Type.String({ default: "nats://127.0.0.1:4222", minLength: 1 }),
  NATS_SUBJECT_PREFIX: Type.String({ default: "expert_jobs", pattern: "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$" }),
  NOTIFY_SAFETY_INTERVAL_MS: IntegerString(5_000, 100),
  WEBHOOK_ALLOW_PRIVATE: Type.Boolean({ default: false }),
  WEBHOOK_TIMEOUT_MS: IntegerString(10_000, 100, 300_000),
  WEBHOOK_RETRY_WINDOW_MS: IntegerString(24 * 60 * 60 * 1000, 0),
  WEBHOOK_RETRY_BASE_MS: IntegerString(5_000, 10),
  WEBHOOK_RETRY_MAX_DELAY_MS: IntegerString(60 * 60 * 1000, 10),
  WEBHOOK_POLL_INTERVAL_MS: IntegerString(1_000, 10),
  WEBHOOK_CONCURRENCY: IntegerString(10, 1, 1000),
});

export type Database =
  /** `connectTimeoutMs`: how long start-up retries a database that is not reachable yet (default 30 s). */
  | { kind: "postgres"; url: string; connectTimeoutMs?: number }
  /** `initialData`: a PGlite data-dir dump to start from (tests start from a migrated copy). */
  | { kind: "pglite"; dataDir: string; initialData?: Blob };

/**
 * How instances tell each other that something committed: PostgreSQL NOTIFY (sent after the commit) and
 * LISTEN, or core NATS, one subject per channel under `subjectPrefix`. Embedded PGlite notifies in process.
 */
export type NotifyBackend = { kind: "postgres" } | { kind: "nats"; servers: string[]; subjectPrefix: string };
/** Webhook delivery (WEBHOOK_*). */
export interface WebhookConfig {
  /** Loopback and private ranges allowed as receivers (on-premise); link-local and metadata addresses never are. */
  allowPrivate: boolean;
  /** One attempt: connect, send, the answer's status. */
  timeoutMs: number;
  /** Retries stop (the delivery is failed) once the next would start later than this after the event. */
  retryWindowMs: number;
  /** The first retry's delay; each further one doubles it (with jitter), up to retryMaxDelayMs. */
  retryBaseMs: number;
  retryMaxDelayMs: number;
  /** How often each instance looks for due deliveries (retries); new events wake it at once. */
  pollIntervalMs: number;
  /** Deliveries one instance sends at a time. */
  concurrency: number;
}

export interface Config {
  port: number;
  host: string;
  database: Database;
  leaseMs: number;
  pausedJobTtlMs: number;
  /** Finished jobs whose last change is older than this are deleted by the sweeper; unset: kept forever. */
  jobRetentionMs?: number;
  bodyLimitBytes: number;
  dataDir: string;
  adminToken?: string;
  /** 32 bytes for AES-256-GCM; unset only with PGlite, where the server keeps a generated key in DATA_DIR. */
  secretsKey?: Buffer;
  logLevel: string;
  sseHeartbeatMs: number;
  /** A stream whose socket takes nothing for this long while data waits is cut off. */
  sseStallTimeoutMs: number;
  /** A stream more than this many events behind the newest (posted since it connected) is cut off; 0: never. */
  sseMaxLagEvents: number;
  /** Bytes of checkpoints per stream read from the database. */
  sseBatchBytes: number;
  /** Bytes of event frames each job's feed keeps for streams behind the others. */
  sseCacheBytes: number;
  /** Browser origins allowed by CORS (`*`: any); unset: no CORS headers at all. */
  corsOrigins?: string[];
  /** Requests per API key, instance and minute; 0 turns the limit off. */
  rateLimitPerMinute: number;
  /** Open streams per API key and instance. */
  maxStreamsPerKey: number;
  /** Failed authentications per client address, instance and minute before 429; 0 turns the limit off. */
  authFailuresPerMinute: number;
  /** Which proxies' X-Forwarded-For names the client (Fastify's `trustProxy`); unset: none, the peer is the client. */
  trustProxy?: true | string[];
  notify: NotifyBackend;
  /** How often open streams and waiting claims check the database for what a lost notification would have told them. */
  notifySafetyIntervalMs: number;
  webhooks: WebhookConfig;
}

/** TRUST_PROXY: `true` (any proxy), or the proxies' addresses and CIDR ranges, comma-separated. */
function parseTrustProxy(value: string | undefined): Config["trustProxy"] {
  if (value === undefined || value === "false") return undefined;
  if (value === "true") return true;
  return value
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
}

export class ConfigError extends Error {}

/**
 * Reads `.env` from the working folder into the environment, if there is one (Node's own parser). A
 * variable the environment already has, even empty, keeps its value: the real environment wins.
 */
export function loadEnvFile(file = ".env"): boolean {
  try {
    process.loadEnvFile(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw new ConfigError(`${file}: cannot be read (${(error as Error).message})`);
  }
}

/** The only place that reads process.env. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const known = Object.fromEntries(
    Object.keys(EnvSchema.properties).flatMap((key) => (env[key] === undefined || env[key] === "" ? [] : [[key, env[key]]])),
  );
  const parsed = Value.Convert(EnvSchema, Value.Default(EnvSchema, known));
  const errors = [...Value.Errors(EnvSchema, parsed)];
  if (errors.length > 0) {
    throw new ConfigError(errors.map((error) => `${error.path.slice(1)}: ${error.message}`).join("; "));
  }
  const values = parsed as Static<typeof EnvSchema>;
  const secretsKey = values.SECRETS_KEY === undefined ? undefined : Buffer.from(values.SECRETS_KEY, "base64");
  if (secretsKey && secretsKey.length !== 32) throw new ConfigError("SECRETS_KEY: must be 32 bytes, base64-encoded");
  if (values.DATABASE_URL && !secretsKey) throw new ConfigError("SECRETS_KEY: required when DATABASE_URL is set");
  if (values.NOTIFY_BACKEND === "nats" && !values.DATABASE_URL) {
    throw new ConfigError("NOTIFY_BACKEND: nats needs DATABASE_URL (embedded PGlite is one process and notifies in process)");
  }
  const natsServers = values.NATS_URL.split(",")
    .map((url) => url.trim())
    .filter(Boolean);
  const badServer = natsServers.find((url) => !/^(nats|tls):\/\/[^/\s]+$/.test(url));
  if (badServer !== undefined || natsServers.length === 0) {
    throw new ConfigError(`NATS_URL: ${badServer ?? "(empty)"} is not a nats:// or tls:// URL (host:port; several: comma-separated)`);
  }
  return Object.freeze({
    port: values.PORT,
    host: values.HOST,
    database: values.DATABASE_URL
      ? { kind: "postgres" as const, url: values.DATABASE_URL, connectTimeoutMs: values.DATABASE_CONNECT_TIMEOUT_MS }
      : { kind: "pglite" as const, dataDir: `${values.DATA_DIR.replace(/\/$/, "")}/pglite` },
    leaseMs: values.LEASE_MS,
    pausedJobTtlMs: values.PAUSED_JOB_TTL_MS,
    jobRetentionMs: values.JOB_RETENTION_DAYS === undefined ? undefined : values.JOB_RETENTION_DAYS * 24 * 60 * 60 * 1000,
    bodyLimitBytes: values.BODY_LIMIT_BYTES,
    dataDir: values.DATA_DIR,
    adminToken: values.ADMIN_TOKEN,
    secretsKey,
    logLevel: values.LOG_LEVEL,
    sseHeartbeatMs: values.SSE_HEARTBEAT_MS,
    sseStallTimeoutMs: values.SSE_STALL_TIMEOUT_MS,
    sseMaxLagEvents: values.SSE_MAX_LAG_EVENTS,
    sseBatchBytes: values.SSE_BATCH_BYTES,
    sseCacheBytes: values.SSE_CACHE_BYTES,
    corsOrigins: values.CORS_ORIGINS?.split(",")
      .map((origin) => origin.trim())
      .filter(Boolean),
    rateLimitPerMinute: values.RATE_LIMIT_PER_MINUTE,
    maxStreamsPerKey: values.MAX_STREAMS_PER_KEY,
    authFailuresPerMinute: values.AUTH_FAILURES_PER_MINUTE,
    trustProxy: parseTrustProxy(values.TRUST_PROXY),
    notify:
      values.NOTIFY_BACKEND === "nats"
        ? { kind: "nats" as const, servers: natsServers, subjectPrefix: values.NATS_SUBJECT_PREFIX }
        : { kind: "postgres" as const },
    notifySafetyIntervalMs: values.NOTIFY_SAFETY_INTERVAL_MS,
    webhooks: {
      allowPrivate: values.WEBHOOK_ALLOW_PRIVATE,
      timeoutMs: values.WEBHOOK_TIMEOUT_MS,
      retryWindowMs: values.WEBHOOK_RETRY_WINDOW_MS,
      retryBaseMs: values.WEBHOOK_RETRY_BASE_MS,
      retryMaxDelayMs: values.WEBHOOK_RETRY_MAX_DELAY_MS,
      pollIntervalMs: values.WEBHOOK_POLL_INTERVAL_MS,
      concurrency: values.WEBHOOK_CONCURRENCY,
    },
  });
}
