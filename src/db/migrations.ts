import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** The two things the runner needs from a connection; both `pg.Client` and PGlite provide them. */
export interface MigrationConnection {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>;
  /** Runs a multi-statement script as one simple-protocol call (an implicit transaction). */
  exec(script: string): Promise<unknown>;
}

/** A `pg` client as a migration connection (a query without parameters uses the simple protocol). */
export const pgMigrationConnection = (client: {
  query(sql: string, params?: unknown[]): Promise<{ rows: any[] }>;
}): MigrationConnection => ({ query: (sql, params) => client.query(sql, params), exec: (script) => client.query(script) });

export interface MigrationResult {
  applied: string[];
  warnings: string[];
}

export const defaultMigrationsDir = path.resolve(import.meta.dirname, "../../prisma/migrations");

// Same lock id and table layout as Prisma's schema engine, so `prisma migrate deploy` and this runner
// can take turns on one database.
const PRISMA_MIGRATE_ADVISORY_LOCK = 72707369;

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

const sha256Hex = (text: string) => createHash("sha256").update(text).digest("hex");

function checksums(script: string): string[] {
  return [sha256Hex(script), sha256Hex(script.replace(/\r\n/g, "\n")), sha256Hex(script.replace(/(?<!\r)\n/g, "\r\n"))];
}

/**
 * Takes the migration lock, polling with `pg_try_advisory_lock` rather than waiting in `pg_advisory_lock`:
 * a session blocked in that statement holds a snapshot, which a migration's CREATE INDEX CONCURRENTLY
 * waits for, while it waits for the lock: a deadlock. Between attempts a waiting instance holds nothing.
 */
async function lockMigrations(db: MigrationConnection, onWait?: (waitedMs: number) => void): Promise<void> {
  const started = Date.now();
  let reported = started;
  for (;;) {
    const { rows } = await db.query(`SELECT pg_try_advisory_lock(${PRISMA_MIGRATE_ADVISORY_LOCK}) AS locked`);
    if (rows[0]?.locked === true) return;
    if (Date.now() - reported >= 10_000) {
      reported = Date.now();
      onWait?.(reported - started);
    }
    await sleep(200 + Math.random() * 300);
  }
}

/** Applies pending migrations; `onWait` hears, every 10 s, that another process still holds the migration lock. */
export async function applyMigrations(
  db: MigrationConnection,
  migrationsDir = defaultMigrationsDir,
  onWait?: (waitedMs: number) => void,
): Promise<MigrationResult> {
  const names = (await readdir(migrationsDir, { withFileTypes: true }))
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();
  const result: MigrationResult = { applied: [], warnings: [] };
  await lockMigrations(db, onWait);
  try {
    await db.exec(createMigrationsTable);
    const { rows } = await db.query(`SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" WHERE rolled_back_at IS NULL`);
    const recorded = new Map<string, { checksum: string; finished: boolean }>(
      rows.map((row) => [row.migration_name, { checksum: row.checksum, finished: row.finished_at !== null }]),
    );
    for (const name of names) {
      const script = await readFile(path.join(migrationsDir, name, "migration.sql"), "utf8");
      const previous = recorded.get(name);
      if (previous && !previous.finished) {
        throw new Error(`migration ${name} failed earlier and needs manual repair (Prisma P3009)`);
      }
      if (previous) {
        if (!checksums(script).includes(previous.checksum)) result.warnings.push(`migration ${name} was edited after it was applied`);
        continue;
      }
      const id = randomUUID();
      await db.query(`INSERT INTO "_prisma_migrations" (id, checksum, started_at, migration_name) VALUES ($1, $2, now(), $3)`, [
        id,
        sha256Hex(script),
        name,
      ]);
      try {
        await db.exec(script);
      } catch (error) {
        await db.query(`UPDATE "_prisma_migrations" SET logs = $2 WHERE id = $1`, [id, String((error as Error).message)]);
        throw error;
      }
      await db.query(`UPDATE "_prisma_migrations" SET applied_steps_count = applied_steps_count + 1, finished_at = now() WHERE id = $1`, [
        id,
      ]);
      result.applied.push(name);
    }
  } finally {
    await db.query(`SELECT pg_advisory_unlock(${PRISMA_MIGRATE_ADVISORY_LOCK})`);
  }
  return result;
}
