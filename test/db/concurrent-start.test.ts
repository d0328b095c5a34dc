import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { usingPostgres } from "../helpers/app.ts";
import { startServerProcess, type ServerProcess } from "../reliability/helpers/server-process.ts";

const INSTANCES = 3;
const migrationsDir = path.resolve(import.meta.dirname, "../../prisma/migrations");

async function withAdmin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/**
 * An upgrade or a fresh deployment: several instances start at the same moment on one database that
 * has no schema yet. The advisory lock around migrating lets one apply each migration while the others
 * wait, then find nothing left to do.
 */
describe.skipIf(!usingPostgres())(
  `${INSTANCES} instances starting at once on an empty database${usingPostgres() ? "" : " (skipped: Postgres only, PGlite is single-process)"}`,
  () => {
    it("all become ready, each migration is applied exactly once, and one of them prints the first-start keys", async () => {
      const name = `ej_test_empty_${randomBytes(6).toString("hex")}`;
      await withAdmin((client) => client.query(`CREATE DATABASE ${name}`));
      const url = new URL(process.env.DATABASE_URL!);
      url.pathname = `/${name}`;
      const env = { DATABASE_URL: url.toString(), SECRETS_KEY: randomBytes(32).toString("base64") };
      const servers: ServerProcess[] = [];
      try {
        const started = await Promise.allSettled(Array.from({ length: INSTANCES }, () => startServerProcess({ env })));
        for (const result of started) if (result.status === "fulfilled") servers.push(result.value);
        expect(started.filter((result) => result.status === "rejected")).toEqual([]);
        // Three start-ups on two cores can briefly trip the event-loop load shedding (503): ready within 30 s.
        for (const server of servers) {
          const deadline = Date.now() + 30_000;
          let ready = await fetch(`${server.url}/readyz`);
          while (ready.status !== 200 && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 500));
            ready = await fetch(`${server.url}/readyz`);
          }
          expect(ready.status, `${await ready.text()}\n${server.output.slice(-5).join("\n")}`).toBe(200);
        }

        const expected = (await readdir(migrationsDir, { withFileTypes: true }))
          .filter((entry) => entry.isDirectory())
          .map((entry) => entry.name)
          .sort();
        const recorded = await (async () => {
          const client = new pg.Client({ connectionString: url.toString() });
          await client.connect();
          try {
            return (
              await client.query<{ migration_name: string; finished: boolean }>(
                `SELECT migration_name, finished_at IS NOT NULL AS finished FROM "_prisma_migrations" ORDER BY migration_name`,
              )
            ).rows;
          } finally {
            await client.end();
          }
        })();
        expect(recorded).toEqual(expected.map((migration) => ({ migration_name: migration, finished: true })));
        const applied = servers.flatMap((server) =>
          server.output.flatMap((line) => {
            const parsed = JSON.parse(line.startsWith("{") ? line : "{}") as { msg?: string; migrations?: string[] };
            return parsed.msg === "database migrations applied" ? parsed.migrations! : [];
          }),
        );
        expect(applied.sort()).toEqual(expected);
        expect(servers.filter((server) => server.bootstrap !== undefined)).toHaveLength(1);
      } finally {
        for (const server of servers) server.child.kill("SIGTERM");
        await Promise.all(servers.map((server) => server.exited));
        await withAdmin((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
      }
    }, 180_000);
  },
);
