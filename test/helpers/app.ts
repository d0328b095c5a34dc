import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { Writable } from "node:stream";
import pg from "pg";
import { inject } from "vitest";
import type { FastifyInstance } from "fastify";
import { buildApp, loggerOptions, type AppConfig, type BuildAppOptions } from "../../src/app.ts";
import type { Database } from "../../src/config.ts";

export const ADMIN_TOKEN = "test-admin-token-0123456789";
export const usingPostgres = (): boolean => inject("templateDatabase") !== undefined;

export interface TestDatabase {
  database: Database;
  /** Postgres only: a URL for extra connections (a second app instance, pg_terminate_backend). */
  url?: string;
  /** The SECRETS_KEY of every app on this database (a server refuses a database written with another key). */
  secretsKey?: Buffer;
  drop(): Promise<void>;
}

/** A fresh database per call: a clone of the migrated template (Postgres) or a loaded dump (PGlite). */
export async function createTestDatabase(): Promise<TestDatabase> {
  const template = inject("templateDatabase");
  if (template) {
    const name = `ej_test_${randomBytes(6).toString("hex")}`;
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    await admin.end();
    const url = new URL(process.env.DATABASE_URL!);
    url.pathname = `/${name}`;
    return {
      database: { kind: "postgres", url: url.toString() },
      url: url.toString(),
      async drop() {
        const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
        await client.connect();
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await client.end();
      },
    };
  }
  const dump = await readFile(inject("pgliteDump")!);
  return { database: { kind: "pglite", dataDir: "memory://", initialData: new Blob([dump]) }, drop: async () => {} };
}

export function testConfig(database: Database, overrides: Partial<AppConfig> = {}): AppConfig {
  return {
    database,
    leaseMs: 300_000,
    pausedJobTtlMs: 7 * 24 * 60 * 60 * 1000,
    bodyLimitBytes: 33_554_432,
    dataDir: "./.data-test",
    adminToken: ADMIN_TOKEN,
    secretsKey: randomBytes(32),
    logLevel: "silent",
    sseHeartbeatMs: 15_000,
    ...overrides,
  };
}

export interface TestApp {
  app: FastifyInstance;
  db: TestDatabase;
  /** Every log line the app wrote (the app logs at `info` when `captureLogs` is set). */
  logs: string[];
  close(): Promise<void>;
}

export interface StartTestAppOptions extends Omit<BuildAppOptions, "logger" | "loggerInstance"> {
  config?: Partial<AppConfig>;
  /** Capture every log line (at `info`, or at the level given) into `logs`. */
  captureLogs?: boolean | string;
  /** A database shared with other app instances; the caller drops it. */
  db?: TestDatabase;
}

/** An app on a fresh test database; any of buildApp's options (limits, timeouts, shutdown drain) may be given. */
export async function startTestApp(options: StartTestAppOptions = {}): Promise<TestApp> {
  const { config, captureLogs, db: sharedDb, ...buildOptions } = options;
  const db = sharedDb ?? (await createTestDatabase());
  db.secretsKey ??= randomBytes(32);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  const app = await buildApp(testConfig(db.database, { secretsKey: db.secretsKey, ...config }), {
    // Load shedding reacts to the machine, not the code under test: on a busy CI host it would answer 503
    // to unrelated tests. The protection tests turn it on.
    underPressure: false,
    ...buildOptions,
    logger: captureLogs ? { ...loggerOptions(captureLogs === true ? "info" : captureLogs), stream: sink } : false,
  });
  await app.ready();
  return {
    app,
    db,
    logs,
    async close() {
      await app.close();
      if (!sharedDb) await db.drop();
    },
  };
}
