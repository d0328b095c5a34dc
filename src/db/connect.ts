import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { StartupError, errorCode } from "../startup/startup-error.ts";

export interface ConnectOptions {
  /** How long to keep retrying a database that is not reachable yet (containers start before it). */
  timeoutMs: number;
  /** Called before each retry. */
  onRetry?: (reason: string, delayMs: number) => void;
}

// Worth retrying: the server is not up yet, still starting, or the name does not resolve yet (DNS of a
// container that is being created). Anything else (a wrong password, a missing database) stays wrong.
const TRANSIENT_SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
const isTransient = (error: unknown): boolean => {
  const code = errorCode(error) ?? "";
  return TRANSIENT_SOCKET_CODES.has(code) || code === "57P03" || /^Connection terminated|timeout expired/i.test((error as Error).message);
};

const where = (url: URL) => `${url.hostname || "localhost"}:${url.port || 5432}`;

const parseUrl = (databaseUrl: string): URL => {
  try {
    return new URL(databaseUrl);
  } catch {
    return new URL("postgresql://localhost");
  }
};

/** One line for a connection failure, naming what to change in DATABASE_URL. */
export function describeConnectError(error: unknown, databaseUrl: string, waitedMs = 0): string {
  const url = parseUrl(databaseUrl);
  const database = decodeURIComponent(url.pathname.slice(1)) || decodeURIComponent(url.username) || "postgres";
  const user = decodeURIComponent(url.username) || "the default user";
  const code = errorCode(error);
  switch (code) {
    case "3D000":
      return `DATABASE_URL: database "${database}" does not exist on ${where(url)}: create it (createdb ${database}), or fix the database name in DATABASE_URL`;
    case "28P01":
    case "28000":
      return `DATABASE_URL: PostgreSQL at ${where(url)} refused the login of ${user} (${(error as Error).message}): fix the user or password in DATABASE_URL`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `DATABASE_URL: the host "${url.hostname}" cannot be resolved (${code}): fix the host in DATABASE_URL`;
    default: {
      const within = waitedMs > 0 ? ` within ${Math.round(waitedMs / 1000)} s` : "";
      const raise = waitedMs > 0 ? ", or raise DATABASE_CONNECT_TIMEOUT_MS" : "";
      return `DATABASE_URL: cannot connect to PostgreSQL at ${where(url)}${within} (${code ?? (error as Error).message}): start PostgreSQL, fix the host and port in DATABASE_URL${raise}`;
    }
  }
}

/**
 * Connects one client, retrying with capped, jittered backoff while the failure is transient, for at
 * most `timeoutMs`; then (or at once, for a failure retrying cannot fix) throws a StartupError.
 */
export async function connectWithRetry(databaseUrl: string, options: ConnectOptions): Promise<pg.Client> {
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 0; ; attempt++) {
    const remaining = deadline - Date.now();
    const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: Math.max(1000, Math.min(10_000, remaining)) });
    try {
      await client.connect();
      return client;
    } catch (error) {
      client.on("error", () => {});
      await client.end().catch(() => {});
      const delayMs = Math.min(5000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
      if (!isTransient(error) || Date.now() + delayMs >= deadline) {
        throw new StartupError(describeConnectError(error, databaseUrl, isTransient(error) ? options.timeoutMs : 0), { cause: error });
      }
      options.onRetry?.(`${where(parseUrl(databaseUrl))}: ${errorCode(error) ?? (error as Error).message}`, delayMs);
      await sleep(delayMs);
    }
  }
}
