import { randomBytes } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import type { TestProject } from "vitest/node";
import { applyMigrations, pgMigrationConnection } from "../src/db/migrations.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** Postgres: the migrated template every test file clones. */
    templateDatabase?: string;
    /** PGlite: a migrated data-dir dump every test file loads. */
    pgliteDump?: string;
  }
}

/** Migrates the schema once; test files then start from a copy instead of migrating again. */
export default async function setup(project: TestProject) {
  const url = process.env.DATABASE_URL;
  if (url) {
    const template = `ej_test_template_${randomBytes(4).toString("hex")}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${template}`);
    const target = new URL(url);
    target.pathname = `/${template}`;
    const client = new pg.Client({ connectionString: target.toString() });
    await client.connect();
    await applyMigrations(pgMigrationConnection(client));
    await client.end();
    project.provide("templateDatabase", template);
    return async () => {
      await admin.query(`DROP DATABASE IF EXISTS ${template} WITH (FORCE)`);
      await admin.end();
    };
  }
  const lite = await PGlite.create("memory://");
  await applyMigrations(lite);
  const dump = path.join(tmpdir(), `ej-test-pglite-${randomBytes(4).toString("hex")}.tar`);
  await writeFile(dump, Buffer.from(await (await lite.dumpDataDir("none")).arrayBuffer()));
  await lite.close();
  project.provide("pgliteDump", dump);
  return async () => rm(dump, { force: true });
}
