/**
 * The replay path alone, for profiling: posts one 200-step job (~10 KB per step, full messages, the last
 * step completing it) through a first server, then starts a second on the same database and replays the
 * job's whole history to N fresh subscribers, R times, printing each round's time, rate and server CPU.
 * The second server's V8 CPU profile is written to PROF_DIR when it is set, so the profile holds the
 * replays and not the posts that built the job.
 *
 *   node --import tsx bench/replay-probe.ts [subscribers=1] [rounds=5]
 *   PROF_DIR=/tmp/prof node --import tsx bench/replay-probe.ts 100 1
 *   node --import tsx bench/profile-summary.ts /tmp/prof/<file>.cpuprofile
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import path from "node:path";
import { withDatabase } from "./lib/db.ts";
import { HttpClient } from "./lib/http.ts";
import { jobBodyStream } from "./lib/payloads.ts";
import { startServer } from "./lib/server.ts";
import { openStreams } from "./lib/sse-clients.ts";
import { nowMs } from "./lib/stats.ts";
import { seedTenant, startJobs } from "./lib/tenant.ts";

const subscribers = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 5);
const adminToken = `bench-admin-${randomBytes(12).toString("hex")}`;
const logFile = path.join(os.tmpdir(), "replay-probe-server.log");

await withDatabase(process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test", async (url) => {
  const env = { DATABASE_URL: url, SECRETS_KEY: randomBytes(32).toString("base64"), ADMIN_TOKEN: adminToken, LOG_LEVEL: "warn" };
  let server = await startServer({ env, logFile });
  const http = new HttpClient(server.url);
  const tenant = await seedTenant(http, adminToken);
  const [jobId] = await startJobs(http, tenant, 1, { maxSteps: 300 });
  for (const body of jobBodyStream(tenant.expert, 200, 10_000, { lastStatus: "completed" })) {
    const response = await http.request("POST", `/api/studio/v1/expert_jobs/${jobId}/checkpoints/`, await tenant.runtimeKeys.next(), body);
    if (response.status !== 200) throw new Error(`post: ${response.status} ${response.body.toString().slice(0, 300)}`);
  }
  const tokens = await tenant.clientKeys.many(Math.ceil(subscribers / 90));
  http.close();
  await server.stop();
  server = await startServer({ env, logFile, cpuProfileDir: process.env.PROF_DIR });
  const port = Number(new URL(server.url).port);
  for (let round = 0; round < rounds; round++) {
    const cpuBefore = server.cpuMs();
    const started = nowMs();
    const crowd = await openStreams({
      port,
      path: `/api/studio/v1/expert_jobs/${jobId}/checkpoints/stream`,
      tokens,
      count: subscribers,
      perWorker: 50,
      parallel: subscribers,
      mode: "replay",
    });
    const streams = await crowd.replayed(600_000);
    const wallMs = nowMs() - started;
    await crowd.close();
    const bytes = streams.reduce((sum, stream) => sum + stream.bytes, 0);
    const slowest = Math.max(...streams.map((stream) => ((stream.completedAt ?? Number.NaN) - stream.startedAt) / 1000));
    const incomplete = streams.filter((stream) => stream.completedAt === undefined).length;
    console.log(
      `round ${round + 1}: ${subscribers} subscriber(s), ${(bytes / 1e6).toFixed(0)} MB in ${(wallMs / 1000).toFixed(2)} s; slowest ${slowest.toFixed(2)} s, ` +
        `${(bytes / subscribers / 1e6 / slowest).toFixed(0)} MB/s each; server CPU ${server.cpuMs() - cpuBefore} ms; ${incomplete} incomplete`,
    );
  }
  await server.stop();
});
