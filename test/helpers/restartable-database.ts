import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createTestDatabase, type TestDatabase } from "./app.ts";

export interface RestartableDatabase {
  /** For the first app instance. */
  db: TestDatabase;
  /** For an instance started after the previous one closed (a server restart); same data. */
  reopen(): TestDatabase;
  drop(): Promise<void>;
}

/**
 * A database that outlives an app: the Postgres clone, or PGlite files on disk (one process at a time),
 * first loaded from the migrated dump, which is much faster than migrating an empty folder.
 */
export async function createRestartableDatabase(): Promise<RestartableDatabase> {
  const base = await createTestDatabase();
  if (base.database.kind === "postgres") return { db: base, reopen: () => base, drop: () => base.drop() };
  const dataDir = await mkdtemp(path.join(tmpdir(), "ej-restart-"));
  const drop = () => rm(dataDir, { recursive: true, force: true });
  const secretsKey = randomBytes(32);
  return {
    db: { database: { kind: "pglite", dataDir, initialData: base.database.initialData }, secretsKey, drop },
    reopen: () => ({ database: { kind: "pglite", dataDir }, secretsKey, drop }),
    drop,
  };
}
