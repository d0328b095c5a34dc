import type { DatabaseHandle } from "../plugins/database.ts";

/**
 * Raw statements of the hottest paths (posting a checkpoint, a stream's wake-up), by name. On PostgreSQL
 * they run as named prepared statements: each connection plans them once instead of on every call, which
 * is most of their cost (the stream read measured 0.61 ms as an unnamed statement, 0.13 ms prepared; through
 * Prisma's $queryRaw 0.78 ms). On PGlite they are plain queries. Column types are chosen by the SQL (JSON
 * and timestamps come back as text), so both drivers return the same rows. Everything else goes through Prisma.
 */
export interface Sql {
  /**
   * `name`: prepare the statement (planned once per connection, then with a generic plan). Leave it out
   * where the best plan depends on the values (an OFFSET, arrays of ranges): those are planned per call.
   */
  query<T>(name: string | undefined, text: string, values: unknown[]): Promise<T[]>;
}

/** PostgreSQL cuts identifiers, statement names included, at 63 bytes: two longer names could meet. */
const MAX_STATEMENT_NAME = 63;

export function createSql(database: DatabaseHandle): Sql {
  const checked =
    (query: Sql["query"]): Sql["query"] =>
    (name, text, values) => {
      if (name !== undefined && name.length > MAX_STATEMENT_NAME)
        throw new Error(`statement name over ${MAX_STATEMENT_NAME} characters: ${name}`);
      return query(name, text, values);
    };
  return { query: checked(driverQuery(database)) };
}

function driverQuery(database: DatabaseHandle): Sql["query"] {
  if (database.kind === "postgres") {
    const { pool } = database;
    return async (name, text, values) => (await pool.query(name === undefined ? { text, values } : { name, text, values })).rows;
  }
  const { lite } = database;
  return async (_name, text, values) => (await lite.query(text, values)).rows as never[];
}

/** A timestamp column as ISO 8601 text, as `Date#toISOString` writes it (UTC, milliseconds), the same on both drivers. */
export const iso = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
