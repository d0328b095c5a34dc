import { Writable } from "node:stream";
import { buildApp, loggerOptions, type AppConfig, type BuildAppOptions } from "../../../src/app.ts";
import { createTestDatabase, testConfig, type TestApp, type TestDatabase } from "../../helpers/app.ts";

export interface CustomAppOptions extends BuildAppOptions {
  config?: Partial<AppConfig>;
  /** Capture every log line at this level (the lines land in `logs`). */
  captureLogs?: string;
  /** A database shared with other app instances; the caller drops it. */
  db?: TestDatabase;
}

/** startTestApp with any of buildApp's options (limits, timeouts, shutdown drain). */
export async function startCustomApp(options: CustomAppOptions = {}): Promise<TestApp> {
  const { config, captureLogs, db: sharedDb, ...buildOptions } = options;
  const db = sharedDb ?? (await createTestDatabase());
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      logs.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  const app = await buildApp(testConfig(db.database, config), {
    ...buildOptions,
    logger: captureLogs ? { ...loggerOptions(captureLogs), stream: sink } : false,
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

/** A table-by-table digest of everything a request could change (row contents, not just counts). */
export async function databaseDigest(app: TestApp["app"]): Promise<Record<string, string>> {
  const tables = ["organization", "application", "api_key", "expert", "provider_key", "expert_job", "checkpoint", "job_message"];
  const rows = await app.prisma.$queryRawUnsafe<Array<{ name: string; digest: string | null }>>(
    tables
      .map((table) => `SELECT '${table}' AS name, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS digest FROM ${table} t`)
      .join(" UNION ALL "),
  );
  return Object.fromEntries(rows.map((row) => [row.name, row.digest ?? ""]));
}
