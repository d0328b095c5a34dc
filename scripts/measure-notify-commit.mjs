#!/usr/bin/env node
// What NOTIFY costs a write, measured on raw pg (no server): N clients each commit one 1.9 KB insert per
// transaction, for a few seconds per mode, with one LISTEN connection listening:
//   none            the insert alone
//   in-tx           the insert and pg_notify in one statement, so one transaction (the server before issue 14)
//   after-each      the insert, then pg_notify in a transaction of its own, by the same client
//   after-batched   the insert; one notifier connection sends everything pending in one pg_notify
//                   transaction per round trip (the server's Publisher)
// Usage: DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test node scripts/measure-notify-commit.mjs [clients] [seconds] [rounds]
import { randomBytes } from "node:crypto";
import pg from "pg";

const url = process.env.DATABASE_URL;
if (!url) throw new Error("set DATABASE_URL (a PostgreSQL whose role may CREATE DATABASE)");
const clients = Number(process.argv[2] ?? 64);
const seconds = Number(process.argv[3] ?? 8);
const rounds = Number(process.argv[4] ?? 2);
const modes = ["none", "in-tx", "after-each", "after-batched"];

const scratch = `notify_measure_${randomBytes(4).toString("hex")}`;
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query(`CREATE DATABASE ${scratch}`);
const target = new URL(url);
target.pathname = `/${scratch}`;
const connectionString = target.toString();

const insert = "INSERT INTO measured (job, body) VALUES ($1, $2)";
// 1,900 bytes: under the 2 KB at which PostgreSQL would try to compress the row (TOAST).
const body = randomBytes(950).toString("hex");

async function run(mode) {
  const setup = new pg.Client({ connectionString });
  await setup.connect();
  await setup.query(
    "DROP TABLE IF EXISTS measured; CREATE TABLE measured (id bigserial PRIMARY KEY, job text NOT NULL, body text NOT NULL)",
  );
  await setup.end();
  const listener = new pg.Client({ connectionString });
  await listener.connect();
  let heard = 0;
  listener.on("notification", () => heard++);
  await listener.query("LISTEN measured");
  const connections = await Promise.all(
    Array.from({ length: clients }, async () => {
      const client = new pg.Client({ connectionString });
      await client.connect();
      return client;
    }),
  );
  const notifier = new pg.Client({ connectionString });
  await notifier.connect();
  let pending = [];
  let sending = false;
  let batches = 0;
  const flush = async () => {
    sending = true;
    while (pending.length > 0) {
      const batch = pending;
      pending = [];
      await notifier.query("SELECT pg_notify('measured', p)::text FROM unnest($1::text[]) AS p", [batch]);
      batches++;
    }
    sending = false;
  };
  let committed = 0;
  const deadline = performance.now() + seconds * 1000;
  await Promise.all(
    connections.map(async (client, index) => {
      const job = `job-${index}`;
      let seq = 0;
      while (performance.now() < deadline) {
        const payload = JSON.stringify({ expertJobId: job, seq: ++seq });
        if (mode === "in-tx") {
          // One statement, as the server's checkpoint write was: the same round trips as `none`.
          await client.query(
            "WITH inserted AS (INSERT INTO measured (job, body) VALUES ($1, $2) RETURNING id) SELECT pg_notify('measured', $3)::text FROM inserted",
            [job, body, payload],
          );
        } else {
          await client.query(insert, [job, body]);
        }
        committed++;
        if (mode === "after-each") await client.query("SELECT pg_notify('measured', $1)::text", [payload]);
        if (mode === "after-batched") {
          pending.push(payload);
          if (!sending) void flush();
        }
      }
    }),
  );
  while (sending) await new Promise((resolve) => setTimeout(resolve, 10));
  await new Promise((resolve) => setTimeout(resolve, 200));
  await Promise.all([...connections, notifier, listener].map((client) => client.end()));
  return { mode, txPerSecond: Math.round(committed / seconds), heard, batches: mode === "after-batched" ? batches : undefined };
}

try {
  const results = [];
  for (let round = 0; round < rounds; round++) for (const mode of modes) results.push(await run(mode));
  console.log(JSON.stringify({ clients, seconds, rounds, bodyBytes: body.length, results }, null, 2));
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`);
  await admin.end();
}
