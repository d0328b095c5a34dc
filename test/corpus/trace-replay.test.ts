import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { api, seedTenant, type Tenant } from "../helpers/fixtures.ts";
import { TRACE_END, replayTrace, traceLines, traceStatuses, type TraceName } from "../helpers/corpus.ts";

const traces: TraceName[] = ["delegation", "interactive", "exceeded-max-steps", "long-research"];

describe("the Perstack runtime traces, replayed as the runtime posted them", () => {
  let t: TestApp;
  let tenant: Tenant;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
  });
  afterAll(async () => t.close());

  it.each(traces)(
    "%s: every line answers 200, the job ends as recorded, GET and list give back what was posted",
    async (name) => {
      const lines = traceLines(name);
      expect(lines.map((line) => Buffer.byteLength(line))).toEqual(traceStatuses(name).map((status) => status.bytes));
      const replayed = await replayTrace(t.app, tenant, name);
      const client = api(t.app, tenant.clientKey);
      const job = (await client.get(`/expert_jobs/${replayed.expertJobId}`)).json().data.expertJob;
      expect({ status: job.status, steps: job.totalSteps }).toEqual(TRACE_END[name]);

      for (const [index, line] of lines.entries()) {
        const posted = JSON.parse(line);
        const answered = replayed.checkpoints[index]!;
        expect(answered.id).toBe(posted.checkpoint.id);
        expect(answered.stepNumber).toBe(posted.checkpoint.stepNumber);
        expect(answered.status).toBe(posted.checkpoint.status);
        expect(answered.messages).toEqual(posted.checkpoint.messages);
        expect(answered.newMessages).toEqual(posted.step.newMessages);
        const got = await client.get(`/expert_jobs/${replayed.expertJobId}/checkpoints/${answered.id}`);
        expect(got.statusCode).toBe(200);
        // GET answers exactly what the POST answered.
        expect(got.body).toBe(JSON.stringify({ data: { checkpoint: answered } }));
      }
      // Re-posting a line is idempotent: the stored checkpoint, unchanged.
      const again = await api(t.app, tenant.runtimeKey).request({
        method: "POST",
        url: `/expert_jobs/${replayed.expertJobId}/checkpoints/`,
        headers: { "content-type": "application/json" },
        payload: lines[1]!,
      });
      expect(again.statusCode).toBe(200);
      expect(again.json().data.checkpoint).toEqual(replayed.checkpoints[1]);

      const page = await client.get(`/expert_jobs/${replayed.expertJobId}/checkpoints/?take=100`);
      expect(page.json().meta.total).toBe(lines.length);
      expect(page.json().data.checkpoints.map((checkpoint: { id: string }) => checkpoint.id)).toEqual(
        replayed.checkpoints.map((checkpoint) => checkpoint.id),
      );
    },
    120_000,
  );
});
