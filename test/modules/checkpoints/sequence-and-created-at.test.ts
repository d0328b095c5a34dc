import { createId } from "@paralleldrive/cuid2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, checkpointBody, postCheckpoint, seedTenant, startJob, type Api, type Tenant } from "../../helpers/fixtures.ts";
import { postGrownJob, replayTrace } from "../../helpers/corpus.ts";
import { openSse } from "../../helpers/sse.ts";

type Json = Record<string, any>;

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** What the current public Perstack client requires of every checkpoint (its parse fails otherwise). */
function expectClientFields(checkpoint: Json): void {
  expect(Number.isInteger(checkpoint.sequence) && checkpoint.sequence >= 1, JSON.stringify(checkpoint.sequence)).toBe(true);
  expect(checkpoint.createdAt).toMatch(ISO);
}

describe("checkpoint sequence and createdAt", () => {
  let t: TestApp;
  let tenant: Tenant;
  let client: Api;
  let runtime: Api;
  let base: string;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    client = api(t.app, tenant.clientKey);
    runtime = api(t.app, tenant.runtimeKey);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  const storedRows = (expertJobId: string) =>
    t.app.prisma.checkpoint.findMany({ where: { expertJobId }, orderBy: { seq: "asc" }, select: { id: true, seq: true, createdAt: true } });

  it("POST, GET, the list and the stream carry the stored sequence and createdAt; the stream's event id is the sequence", async () => {
    const job = await startJob(t.app, tenant);
    const before = Date.now();
    const posted: Json[] = [];
    for (let step = 1; step <= 3; step++) posted.push(await postCheckpoint(t.app, tenant, job.id, { stepNumber: step }));
    const after = Date.now();

    const rows = await storedRows(job.id);
    expect(posted.map((checkpoint) => [checkpoint.id, checkpoint.sequence, checkpoint.createdAt])).toEqual(
      rows.map((row) => [row.id, row.seq, row.createdAt.toISOString()]),
    );
    expect(posted.map((checkpoint) => checkpoint.sequence)).toEqual([1, 2, 3]);
    for (const checkpoint of posted) {
      expectClientFields(checkpoint);
      const stored = Date.parse(checkpoint.createdAt);
      expect(stored >= before - 1 && stored <= after + 1, `${checkpoint.createdAt} outside the posts`).toBe(true);
      // The runtime's own times are something else.
      expect(checkpoint.createdAt).not.toBe(checkpoint.startedAt);
    }

    for (const checkpoint of posted) {
      const got = await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}`);
      expect(got.json().data.checkpoint).toEqual(checkpoint);
      const light = await client.get(`/expert_jobs/${job.id}/checkpoints/${checkpoint.id}?exclude=messages,newMessages,actionContent`);
      expect(light.json().data.checkpoint).toMatchObject({ sequence: checkpoint.sequence, createdAt: checkpoint.createdAt });
    }
    const listed = (await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence`)).json().data.checkpoints;
    expect(listed).toEqual(posted);

    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    const events = await stream.waitFor(3);
    stream.close();
    for (const [index, event] of events.entries()) {
      const checkpoint = JSON.parse(event.data);
      expect(checkpoint).toEqual(posted[index]);
      expect(event.id).toBe(String(checkpoint.sequence));
    }
    // The light stream variant is built from other frames: it carries them too.
    const light = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream?exclude=messages`, {
      authorization: `Bearer ${tenant.clientKey}`,
    });
    const lightEvents = await light.waitFor(3);
    light.close();
    expect(lightEvents.map((event) => [event.id, JSON.parse(event.data).sequence, JSON.parse(event.data).createdAt])).toEqual(
      posted.map((checkpoint) => [String(checkpoint.sequence), checkpoint.sequence, checkpoint.createdAt]),
    );
  });

  it("an idempotent re-post answers the first post's bytes, sequence and createdAt included", async () => {
    const job = await startJob(t.app, tenant);
    const body = checkpointBody(tenant, { id: createId(), stepNumber: 1 });
    const first = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, body);
    expect(first.statusCode, first.body).toBe(200);
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    const again = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, body);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.body).toBe(first.body);
    expect(first.json().data.checkpoint).toMatchObject({ sequence: 1 });
  });

  it("sort=sequence orders by storage order, where createdAt's order differs; both directions, pages and filters", async () => {
    const job = await startJob(t.app, tenant);
    const posted: Json[] = [];
    for (let step = 1; step <= 6; step++) posted.push(await postCheckpoint(t.app, tenant, job.id, { stepNumber: step }));
    // Stored times can disagree with the storage order (several instances, clock steps): reverse them.
    await t.app.prisma.$executeRaw`
      UPDATE checkpoint SET created_at = '2026-01-01T00:00:00Z'::timestamptz - seq * interval '1 minute' WHERE expert_job_id = ${job.id}`;
    const ids = (response: { json(): Json }) => (response.json().data.checkpoints as Json[]).map((checkpoint) => checkpoint.sequence);

    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence`))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence&order=desc`))).toEqual([6, 5, 4, 3, 2, 1]);
    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=createdAt`))).toEqual([6, 5, 4, 3, 2, 1]);
    // Pages past the middle are read from the far end: the same rows.
    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence&take=2&skip=4`))).toEqual([5, 6]);
    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence&order=desc&take=2&skip=1`))).toEqual([5, 4]);
    expect(ids(await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence&filter=webSearch&take=3&skip=2`))).toEqual([3, 4, 5]);
    const listed = (await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence`)).json().data.checkpoints as Json[];
    expect(listed.map((checkpoint) => checkpoint.createdAt)).toEqual(
      [1, 2, 3, 4, 5, 6].map((seq) => new Date(Date.parse("2026-01-01T00:00:00Z") - seq * 60_000).toISOString()),
    );
    expect(listed.map((checkpoint) => checkpoint.id)).toEqual(posted.map((checkpoint) => checkpoint.id));
  });

  it("an unknown sort is a 422 in the envelope", async () => {
    const job = await startJob(t.app, tenant);
    const response = await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=seq`);
    expect(response.statusCode).toBe(422);
    expect(response.json()).toMatchObject({ code: 422, error: "Validation Failed" });
    expect(response.json().reason.map((issue: Json) => issue.path)).toContain("/sort");
  });

  it("a client lists a long job by sequence, then streams from where the list ended: every checkpoint once (100 steps × 10 KB)", async () => {
    const job = await startJob(t.app, tenant, { maxSteps: 200 });
    const first = await postGrownJob(t.app, tenant, { expertJobId: job.id, steps: 60, lastStatus: "proceeding" });
    const listed: Json[] = [];
    for (let skip = 0; skip < 60; skip += 25) {
      const page = await client.get(`/expert_jobs/${job.id}/checkpoints/?sort=sequence&take=25&skip=${skip}&exclude=messages`);
      expect(page.statusCode).toBe(200);
      listed.push(...page.json().data.checkpoints);
    }
    expect(listed.map((checkpoint) => checkpoint.sequence)).toEqual(first.checkpoints.map((checkpoint) => checkpoint.sequence));
    const lastListed = listed.at(-1)!.sequence as number;

    const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.id}/checkpoints/stream`, {
      authorization: `Bearer ${tenant.clientKey}`,
      "last-event-id": String(lastListed),
    });
    const rest = await postGrownJob(t.app, tenant, { expertJobId: job.id, steps: 40, firstStep: 60 });
    const events = await stream.waitFor(41, 60_000);
    stream.close();
    expect(events.at(-1)!.event).toBe("complete");
    const streamed = events.slice(0, -1).map((event) => JSON.parse(event.data));
    expect(streamed.map((checkpoint) => checkpoint.sequence)).toEqual(rest.checkpoints.map((checkpoint) => checkpoint.sequence));
    expect(streamed.map((checkpoint) => checkpoint.sequence)).toEqual(Array.from({ length: 40 }, (_, index) => 61 + index));
    expect(streamed.at(-1)).toEqual(rest.checkpoints.at(-1));
  });

  it("every checkpoint of the runtime traces carries them", async () => {
    const replayed = await replayTrace(t.app, tenant, "delegation");
    replayed.checkpoints.forEach((checkpoint, index) => {
      expectClientFields(checkpoint);
      expect(checkpoint.sequence).toBe(index + 1);
    });
    const listed = (await client.get(`/expert_jobs/${replayed.expertJobId}/checkpoints/?sort=sequence&take=100`)).json().data
      .checkpoints as Json[];
    expect(listed).toEqual(replayed.checkpoints);
    const delegate = listed.find((checkpoint) => checkpoint.status === "stoppedByDelegate");
    // The older client's shape: one delegate, not an array.
    expect(delegate?.action).toMatchObject({ type: "delegate", delegateTo: { type: "expertDigest" }, query: expect.any(String) });
  });
});
