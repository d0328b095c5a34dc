import type { TestApp } from "./app.ts";

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
