/**
 * Cancel latency: the time from a client's `POST …/cancel` to the runtime seeing `canceling`, through the
 * status watch (`GET …/status?while=processing&waitMs=…`) a runtime keeps open while it runs a job.
 * For each round: start a job, claim it (runtime key), open the watch with the claim's lease token, then
 * cancel it (client key) and time until the watch answers. Measured with the cancel sent to the same
 * server instance the runtime watches on, and to a second instance on the same database (the change
 * then travels by LISTEN/NOTIFY between instances), optionally with other watched jobs open meanwhile.
 *
 *   node --import tsx bench/cancel-latency.ts [rounds=50] [otherWatches=100]
 *
 * Needs PostgreSQL (DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/test; a throwaway database
 * is created on it). Writes bench/results/cancel-latency-<UTC time>.json and prints a summary.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { withDatabase } from "./lib/db.ts";
import { HttpClient } from "./lib/http.ts";
import { startServer, type RunningServer } from "./lib/server.ts";
import { nowMs, summarize, type Summary } from "./lib/stats.ts";
import { seedTenant, startJobs, type Tenant } from "./lib/tenant.ts";

const rounds = Number(process.argv[2] ?? 50);
const otherWatches = Number(process.argv[3] ?? 100);
const WAIT_MS = 25_000;
// The watch is sent before the cancel; this long after, it is waiting on the server (an answer to a watch
// that arrived after the cancel would measure nothing: it answers at once).
const SETTLE_MS = 100;
const adminToken = `bench-admin-${randomBytes(12).toString("hex")}`;
const STUDIO = "/api/studio/v1";

/** A long poll on node:http with the lease header: the HttpClient has no header option. */
async function watch(server: RunningServer, key: string, expertJobId: string, leaseToken: string): Promise<{ status: string; at: number }> {
  const response = await fetch(`${server.url}${STUDIO}/expert_jobs/${expertJobId}/status?while=processing&waitMs=${WAIT_MS}`, {
    headers: { authorization: `Bearer ${key}`, "perstack-lease-token": leaseToken },
  });
  const body = (await response.json()) as { data: { jobStatus: { status: string } } };
  const at = nowMs();
  if (response.status !== 200) throw new Error(`watch: ${response.status} ${JSON.stringify(body)}`);
  return { status: body.data.jobStatus.status, at };
}

async function claim(http: HttpClient, key: string): Promise<{ expertJobId: string; leaseToken: string }> {
  const answer = await http.json("POST", `${STUDIO}/expert_jobs/claim`, key, { waitMs: 0 });
  return { expertJobId: answer.data.claim.expertJob.id, leaseToken: answer.data.claim.leaseToken };
}

interface Scenario {
  name: string;
  /** Cancel to watch answer, as the runtime sees it. */
  seenMs: Summary;
  /** The cancel request's own round trip, for comparison. */
  cancelAnsweredMs: Summary;
}

async function measure(name: string, runtimeServer: RunningServer, clientServer: RunningServer, tenant: Tenant): Promise<Scenario> {
  const runtimeHttp = new HttpClient(runtimeServer.url);
  const clientHttp = new HttpClient(clientServer.url);
  const runtimeKey = await tenant.runtimeKeys.next(rounds * 3 + otherWatches * 2);
  const clientKey = await tenant.clientKeys.next(rounds + otherWatches + 16);

  // Other jobs being run and watched meanwhile, each re-polling like a runtime would.
  const backgroundIds = otherWatches > 0 ? await startJobs(clientHttp, tenant, otherWatches) : [];
  const background: Array<{ expertJobId: string; leaseToken: string }> = [];
  for (let index = 0; index < backgroundIds.length; index++) background.push(await claim(runtimeHttp, runtimeKey));
  let stopping = false;
  const backgroundLoops = background.map(async (job) => {
    while (!stopping) await watch(runtimeServer, runtimeKey, job.expertJobId, job.leaseToken).catch(() => sleep(100));
  });

  const seen: number[] = [];
  const answered: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const [expertJobId] = await startJobs(clientHttp, tenant, 1);
    const job = await claim(runtimeHttp, runtimeKey);
    if (job.expertJobId !== expertJobId) throw new Error("claimed another job than the one just started");
    const watching = watch(runtimeServer, runtimeKey, job.expertJobId, job.leaseToken);
    await sleep(SETTLE_MS);
    const sent = nowMs();
    const cancel = clientHttp.json("POST", `${STUDIO}/expert_jobs/${job.expertJobId}/cancel`, clientKey).then(() => nowMs());
    const [{ status, at }, cancelDone] = await Promise.all([watching, cancel]);
    if (status !== "canceling") throw new Error(`watch answered ${status}`);
    seen.push(at - sent);
    answered.push(cancelDone - sent);
    await runtimeHttp.json("POST", `${STUDIO}/expert_jobs/${job.expertJobId}`, runtimeKey, { status: "canceled" });
  }

  stopping = true;
  // Ends the background watches: their jobs are canceled, so they answer at once.
  for (const job of background) await clientHttp.json("POST", `${STUDIO}/expert_jobs/${job.expertJobId}/cancel`, clientKey);
  await Promise.all(backgroundLoops);
  runtimeHttp.close();
  clientHttp.close();
  const result = { name, seenMs: summarize(seen), cancelAnsweredMs: summarize(answered) };
  console.log(
    `${name}: cancel → runtime sees it p50 ${result.seenMs.p50} ms, p90 ${result.seenMs.p90}, p99 ${result.seenMs.p99}, ` +
      `max ${result.seenMs.max} (cancel answered p50 ${result.cancelAnsweredMs.p50} ms), n=${result.seenMs.n}`,
  );
  return result;
}

const scenarios: Scenario[] = [];
const loadBefore = os.loadavg();
await withDatabase(process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test", async (url) => {
  const env = { DATABASE_URL: url, SECRETS_KEY: randomBytes(32).toString("base64"), ADMIN_TOKEN: adminToken, LOG_LEVEL: "warn" };
  const logFile = path.join(os.tmpdir(), "cancel-latency-server.log");
  const first = await startServer({ env, logFile });
  const second = await startServer({ env, logFile });
  try {
    const http = new HttpClient(first.url);
    const tenant = await seedTenant(http, adminToken);
    scenarios.push(await measure("one instance", first, first, tenant));
    scenarios.push(await measure("cancel on another instance", first, second, await seedTenant(http, adminToken)));
    http.close();
  } finally {
    await Promise.all([first.stop(), second.stop()]);
  }
});

const stamp = new Date().toISOString().slice(0, 16).replace(":", "");
const file = path.join(import.meta.dirname, "results", `cancel-latency-${stamp}.json`);
mkdirSync(path.dirname(file), { recursive: true });
writeFileSync(
  file,
  `${JSON.stringify(
    {
      measured: new Date().toISOString(),
      rounds,
      otherWatches,
      settleMs: SETTLE_MS,
      cpus: os.cpus().length,
      loadAverage: { before: loadBefore, after: os.loadavg() },
      scenarios,
    },
    null,
    2,
  )}\n`,
);
console.log(`results: ${path.relative(process.cwd(), file)}`);
