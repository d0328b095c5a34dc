import fp from "fastify-plugin";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaPGlite } from "pglite-prisma-adapter";
import type { FastifyBaseLogger } from "fastify";
import { PrismaClient } from "../generated/prisma/client.ts";
import type { Database } from "../config.ts";
import { connectWithRetry } from "../db/connect.ts";
import { openPGliteFolder } from "../db/data-dir-lock.ts";
import { applyMigrations, pgMigrationConnection } from "../db/migrations.ts";
import { createSql, type Sql } from "../db/sql.ts";

export type DatabaseHandle = { kind: "postgres"; url: string; pool: pg.Pool } | { kind: "pglite"; lite: PGlite };

declare module "fastify" {
  interface FastifyInstance {
    prisma: PrismaClient;
    database: DatabaseHandle;
    /** The hot paths' raw statements (src/db/sql.ts), prepared on PostgreSQL. */
    sql: Sql;
  }
}

export interface OpenedDatabase {
  prisma: PrismaClient;
  handle: DatabaseHandle;
  close(): Promise<void>;
}

/** How long start-up waits for PostgreSQL to accept connections by default (DATABASE_CONNECT_TIMEOUT_MS). */
export const defaultConnectTimeoutMs = 30_000;

/** Opens the database, applies pending migrations, and returns a Prisma client bound to it. */
export async function openDatabase(database: Database, log: FastifyBaseLogger): Promise<OpenedDatabase> {
  if (database.kind === "postgres") {
    // The first connection waits for a database that is still starting; it also runs the migrations.
    const timeoutMs = database.connectTimeoutMs ?? defaultConnectTimeoutMs;
    const client = await connectWithRetry(database.url, {
      timeoutMs,
      onRetry: (reason, delayMs) =>
        log.warn(`database not reachable yet (${reason}); retrying in ${Math.round(delayMs)} ms, for up to ${timeoutMs} ms in all`),
    });
    try {
      const result = await applyMigrations(pgMigrationConnection(client), undefined, (waitedMs) =>
        log.info(`waiting ${Math.round(waitedMs / 1000)} s so far for another instance to finish migrating the database`),
      );
      reportMigrations(result, log);
    } finally {
      await client.end();
    }
    const pool = new pg.Pool({ connectionString: database.url, max: 10, keepAlive: true });
    // An idle client dropped by the server (restart, pg_terminate_backend) must not crash the process.
    pool.on("error", (error) => log.warn({ err: error }, "idle database connection lost"));
    const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { disposeExternalPool: false }) });
    return {
      prisma,
      handle: { kind: "postgres", url: database.url, pool },
      async close() {
        await prisma.$disconnect();
        await pool.end();
      },
    };
  }
  const lock = await openPGliteFolder(database.dataDir);
  let lite: PGlite;
  try {
    lite = await PGlite.create(database.dataDir, database.initialData ? { loadDataDir: database.initialData } : {});
    reportMigrations(await applyMigrations(lite), log);
  } catch (error) {
    await lock?.release();
    throw error;
  }
  const prisma = new PrismaClient({ adapter: new PrismaPGlite(lite) });
  return {
    prisma,
    handle: { kind: "pglite", lite },
    async close() {
      await prisma.$disconnect();
      await lite.close();
      await lock?.release();
    },
  };
}

function reportMigrations(result: { applied: string[]; warnings: string[] }, log: FastifyBaseLogger) {
  if (result.applied.length > 0) log.info({ migrations: result.applied }, "database migrations applied");
  for (const warning of result.warnings) log.warn(warning);
}

export const databasePlugin = fp<{ database: Database }>(
  async (app, { database }) => {
    const opened = await openDatabase(database, app.log);
    app.decorate("prisma", opened.prisma);
    app.decorate("database", { getter: () => opened.handle });
    app.decorate("sql", createSql(opened.handle));
    app.addHook("onClose", async () => opened.close());
  },
  { name: "database", fastify: "5.x" },
);
