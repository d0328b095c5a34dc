import { PGlite } from "@electric-sql/pglite";
import { loadConfig, loadEnvFile } from "../config.ts";
import { connectWithRetry } from "./connect.ts";
import { openPGliteFolder } from "./data-dir-lock.ts";
import { applyMigrations, pgMigrationConnection } from "./migrations.ts";

// `npm run db:migrate`: applies pending migrations to DATABASE_URL, or to the PGlite in DATA_DIR.
loadEnvFile();
const { database } = loadConfig({ ...process.env, SECRETS_KEY: process.env.SECRETS_KEY || Buffer.alloc(32).toString("base64") });
let result;
if (database.kind === "postgres") {
  const client = await connectWithRetry(database.url, { timeoutMs: database.connectTimeoutMs ?? 0 });
  try {
    result = await applyMigrations(pgMigrationConnection(client));
  } finally {
    await client.end();
  }
} else {
  // Refused while a server holds the folder (one process only), like a second server.
  const lock = await openPGliteFolder(database.dataDir).catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
  const lite = await PGlite.create(database.dataDir);
  try {
    result = await applyMigrations(lite);
  } finally {
    await lite.close();
    await lock?.release();
  }
}
for (const warning of result.warnings) console.warn(warning);
console.log(result.applied.length > 0 ? `applied: ${result.applied.join(", ")}` : "no pending migrations");
