import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { inject } from "vitest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { createTestDatabase, startTestApp, usingPostgres } from "../helpers/app.ts";
import { postGrownJob, replayTrace } from "../helpers/corpus.ts";
import { seedTenant, type Tenant } from "../helpers/fixtures.ts";
import { startServerProcess } from "./helpers/server-process.ts";

const run = promisify(execFile);

type Answer = { status: number; body: string };

/** Every answer a client can get about the jobs: the list, each job, its checkpoints (each, and paged) and its stream. */
async function everythingServed(clientKey: string, get: (url: string) => Promise<Answer>): Promise<Map<string, Answer>> {
  const answers = new Map<string, Answer>();
  const read = async (url: string) => {
    const answer = await get(url).catch((error: Error) => {
      throw new Error(`GET ${url} (${answers.size} answers so far): ${error.message}`, { cause: error });
    });
    answers.set(url, answer);
    return answer;
  };
  const jobs = JSON.parse((await read("/api/studio/v1/expert_jobs?take=100")).body).data.expertJobs as Array<{ id: string }>;
  for (const { id } of jobs) {
    const base = `/api/studio/v1/expert_jobs/${id}`;
    await read(base);
    const page = JSON.parse((await read(`${base}/checkpoints/?take=100`)).body).data.checkpoints as Array<{ id: string }>;
    for (const checkpoint of page) await read(`${base}/checkpoints/${checkpoint.id}`);
    await read(`${base}/checkpoints/?take=7&skip=3&order=desc&exclude=messages`);
    // Every job here has stopped, so its stream replays everything, sends `complete` and ends: whole, and
    // as the dashboard's timeline reads it.
    await read(`${base}/checkpoints/stream?access_token=${clientKey}`);
    await read(`${base}/checkpoints/stream?exclude=messages,newMessages,toolCall,toolResult,actionContent&access_token=${clientKey}`);
    await read(`${base}/checkpoints/stream?after=2&exclude=messages&access_token=${clientKey}`);
  }
  return answers;
}

/**
 * A few real jobs, all stopped: three recorded traces and a grown conversation of 20 steps with a 3 MB
 * file read (a ~12.6 MB event, and checkpoints of 3.6 MB and more from then on).
 */
async function seedJobs(app: FastifyInstance): Promise<Tenant> {
  const tenant = await seedTenant(app);
  for (const trace of ["delegation", "interactive", "exceeded-max-steps"] as const) await replayTrace(app, tenant, trace);
  await postGrownJob(app, tenant, { steps: 20, bytesPerStep: 30_000, largeRead: { step: 8, bytes: 3_000_000 } });
  return tenant;
}

/** GET over real HTTP (as clients read streams: a fast reader, unlike inject's unbounded buffer). */
const fetched = (baseUrl: string, key: string) => async (url: string) => {
  const response = await fetch(baseUrl + url, { headers: { authorization: `Bearer ${key}` } });
  return { status: response.status, body: await response.text() };
};

function expectSameAnswers(before: Map<string, Answer>, after: Map<string, Answer>) {
  expect([...after.keys()]).toEqual([...before.keys()]);
  for (const [url, answer] of before) {
    expect(answer.status, url).toBe(200);
    const restored = after.get(url)!;
    expect(restored.status, url).toBe(200);
    // Byte for byte: the same JSON, the same SSE frames.
    expect(restored.body.length, url).toBe(answer.body.length);
    expect(restored.body === answer.body, url).toBe(true);
  }
}

describe.skipIf(!usingPostgres())(
  `PostgreSQL: pg_dump, restore into an empty database, start the server on it${usingPostgres() ? "" : " (skipped: needs DATABASE_URL)"}`,
  () => {
    const secretsKey = randomBytes(32);
    const restoredName = `ej_test_restored_${randomBytes(6).toString("hex")}`;
    let scratch: string;
    beforeAll(async () => {
      scratch = await mkdtemp(path.join(tmpdir(), "ej-backup-"));
    });
    afterAll(async () => {
      const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${restoredName} WITH (FORCE)`);
      await admin.end();
      await rm(scratch, { recursive: true, force: true });
    });

    it("serves every job, checkpoint and stream exactly as before, with the same keys", async () => {
      const source = await createTestDatabase();
      let before: Map<string, Answer>;
      let key: string;
      const t = await startTestApp({ db: source, config: { secretsKey } });
      try {
        key = (await seedJobs(t.app)).clientKey;
        before = await everythingServed(key, fetched(await t.app.listen({ port: 0, host: "127.0.0.1" }), key));
        expect(before.size).toBeGreaterThan(50);
      } finally {
        await t.close();
      }

      // README's commands (Backup and restore), with this test's URLs.
      const dump = path.join(scratch, "expert_jobs.dump");
      await run("pg_dump", ["--format=custom", "--file", dump, source.url!]);
      await source.drop();
      const restoredUrl = new URL(process.env.DATABASE_URL!);
      restoredUrl.pathname = `/${restoredName}`;
      const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${restoredName}`);
      await admin.end();
      await run("pg_restore", ["--no-owner", "--exit-on-error", "--dbname", restoredUrl.toString(), dump]);

      const server = await startServerProcess({
        env: { DATABASE_URL: restoredUrl.toString(), SECRETS_KEY: secretsKey.toString("base64") },
      });
      try {
        expect(server.bootstrap, "no first-start keys: the database is not empty").toBeUndefined();
        expectSameAnswers(before, await everythingServed(key, fetched(server.url, key)));
      } finally {
        server.child.kill("SIGTERM");
        await server.exited;
      }
    }, 300_000);
  },
);

describe.skipIf(usingPostgres())(
  `PGlite: copy DATA_DIR while the server is stopped, start a server on the copy${usingPostgres() ? " (skipped: the suite runs on PostgreSQL)" : ""}`,
  () => {
    it("serves every job, checkpoint and stream exactly as before, with the same keys", async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), "ej-pglite-backup-"));
      const copy = `${dataDir}-copy`;
      try {
        const initialData = new Blob([await readFile(inject("pgliteDump")!)]);
        const secretsKey = randomBytes(32);
        let before: Map<string, Answer>;
        let key: string;
        const t = await startTestApp({
          db: { database: { kind: "pglite", dataDir: path.join(dataDir, "pglite"), initialData }, drop: async () => {} },
          config: { secretsKey },
        });
        try {
          key = (await seedJobs(t.app)).clientKey;
          before = await everythingServed(key, fetched(await t.app.listen({ port: 0, host: "127.0.0.1" }), key));
        } finally {
          await t.close();
        }
        // README: stop the server, then copy the whole folder.
        await run("cp", ["-a", dataDir, copy]);
        await rm(dataDir, { recursive: true, force: true });

        const server = await startServerProcess({ env: { DATA_DIR: copy, SECRETS_KEY: secretsKey.toString("base64") } });
        try {
          expect(server.bootstrap).toBeUndefined();
          expectSameAnswers(before, await everythingServed(key, fetched(server.url, key)));
        } finally {
          server.child.kill("SIGTERM");
          await server.exited;
        }
      } finally {
        await rm(dataDir, { recursive: true, force: true });
        await rm(copy, { recursive: true, force: true });
      }
    }, 300_000);
  },
);
