import { afterAll, describe, expect, it } from "vitest";
import { eventually, type Tenant } from "../helpers/fixtures.ts";
import { jobCheckpoints, runRuntime, type RuntimeRun } from "./helpers/runtime.ts";
import {
  consistencyProblems,
  createServerStore,
  seedThroughAdmin,
  startServerProcess,
  type ServerProcess,
  type ServerStore,
} from "./helpers/server-process.ts";

const JOBS = 4;
const STEPS = 12;
const KILLS = 2;

/**
 * The real server (`node --import tsx src/server.ts`) is killed with SIGKILL while runtimes post
 * checkpoints, then started again on the same database. A checkpoint is stored whole (the checkpoint,
 * the job's counters and lastSeq, its messages) or not at all; everything acknowledged survives; the
 * runtimes' retries (same ids) then complete every job without a duplicate.
 */
describe("SIGKILL during POST .../checkpoints/", () => {
  let store: ServerStore | undefined;
  let server: ServerProcess | undefined;
  afterAll(async () => {
    server?.child.kill("SIGKILL");
    await server?.exited;
    await store?.drop();
  });

  it(`keeps every checkpoint whole or absent across ${KILLS} kills, and loses nothing acknowledged`, async () => {
    store = await createServerStore();
    server = await startServerProcess(store);
    const tenant: Tenant = await seedThroughAdmin(server);
    const base = () => server!.url;
    const jobs: Array<{ id: string }> = [];
    for (let index = 0; index < JOBS; index++) {
      const response = await fetch(`${base()}/api/studio/v1/expert_jobs`, {
        method: "POST",
        headers: { authorization: `Bearer ${tenant.clientKey}`, "content-type": "application/json" },
        body: JSON.stringify({ expertKey: tenant.expert.key, query: "Do it" }),
      });
      expect(response.status).toBe(200);
      jobs.push(((await response.json()) as { data: { expertJob: { id: string } } }).data.expertJob);
    }
    // Big steps keep transactions open long enough for a kill to land inside some of them.
    const bodies = jobs.map(() => jobCheckpoints(tenant, STEPS, { padBytes: 64 * 1024 }));
    const runs: RuntimeRun[] = jobs.map((job, index) => runRuntime(base, tenant.runtimeKey, job.id, bodies[index]!));
    const acknowledged = () => runs.reduce((sum, run) => sum + run.acknowledged.length, 0);

    let checked = 0;
    let committedUnacknowledged = 0;
    for (let kill = 1; kill <= KILLS; kill++) {
      const target = Math.floor((JOBS * STEPS * kill) / (KILLS + 1));
      await eventually(async () => acknowledged() >= target, 60_000, 5);
      server.child.kill("SIGKILL");
      const { signal } = await server.exited;
      expect(signal).toBe("SIGKILL");
      const acknowledgedBeforeKill = runs.map((run) => [...run.acknowledged]);

      const { problems, checkpoints } = await consistencyProblems(store);
      expect(problems, `after kill ${kill}`).toEqual([]);
      checked += checkpoints;
      // Acknowledged means committed: all of them are there.
      const stored = new Set((await store.query<{ id: string }>("SELECT id FROM checkpoint")).map((row) => row.id));
      for (const ids of acknowledgedBeforeKill) for (const id of ids) expect(stored.has(id), `acknowledged ${id} lost`).toBe(true);
      committedUnacknowledged += stored.size - acknowledgedBeforeKill.flat().length;

      server = await startServerProcess(store);
    }

    await Promise.all(runs.map((run) => run.done));
    for (const [index, job] of jobs.entries()) {
      const response = await fetch(`${base()}/api/studio/v1/expert_jobs/${job.id}/checkpoints?take=100`, {
        headers: { authorization: `Bearer ${tenant.clientKey}` },
      });
      const { data, meta } = (await response.json()) as {
        data: { checkpoints: Array<{ id: string; messages: unknown[] }> };
        meta: { total: number };
      };
      expect(meta.total).toBe(STEPS);
      // Every checkpoint rebuilds exactly the conversation that was posted, in order, once.
      expect(data.checkpoints.map((checkpoint) => checkpoint.id)).toEqual(bodies[index]!.map((body) => body.checkpoint.id));
      data.checkpoints.forEach((checkpoint, step) => expect(checkpoint.messages).toEqual(bodies[index]![step]!.checkpoint.messages));
      const got = await fetch(`${base()}/api/studio/v1/expert_jobs/${job.id}`, {
        headers: { authorization: `Bearer ${tenant.clientKey}` },
      });
      expect(((await got.json()) as { data: { expertJob: Record<string, unknown> } }).data.expertJob).toMatchObject({
        status: "completed",
        totalSteps: STEPS,
        currentStep: STEPS,
        totalDuration: STEPS * 2000,
      });
    }

    server.child.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);
    const final = await consistencyProblems(store);
    expect(final.problems).toEqual([]);
    expect(final.checkpoints).toBe(JOBS * STEPS);
    const retried = runs.reduce((sum, run) => sum + run.retries, 0);
    const failures = new Map<string, number>();
    for (const [cause, count] of runs.flatMap((run) => [...run.failures])) failures.set(cause, (failures.get(cause) ?? 0) + count);
    // Some posts were cut mid-request by the kill (the socket closed or reset under them: which one depends on
    // where the request was), not merely refused while the server was down.
    const cut = (failures.get("UND_ERR_SOCKET") ?? 0) + (failures.get("ECONNRESET") ?? 0);
    expect(cut, JSON.stringify(Object.fromEntries(failures))).toBeGreaterThan(0);
    console.info(
      `process kill: ${KILLS} SIGKILLs mid-ingest, ${checked + final.checkpoints} checkpoint rows checked, ` +
        `${JOBS * STEPS} acknowledged and present (${committedUnacknowledged} committed before their answer was lost), ` +
        `${retried} retried posts ${JSON.stringify(Object.fromEntries(failures))}, 0 torn writes`,
    );
  }, 240_000);
});
