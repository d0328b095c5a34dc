import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_CONTENT_FIELDS } from "../../../src/modules/checkpoints/checkpoint-action.ts";
import { exclusions, type Exclusion } from "../../../src/modules/checkpoints/checkpoints.schemas.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import { api, seedTenant, type Tenant } from "../../helpers/fixtures.ts";
import { replayTrace, type ReplayedJob } from "../../helpers/corpus.ts";
import { openSse } from "../../helpers/sse.ts";

/** What leaving out `exclude` must give: the whole checkpoint without exactly those parts. */
function without(checkpoint: Record<string, any>, exclude: Exclusion[]): Record<string, any> {
  const light = { ...checkpoint };
  if (exclude.includes("messages")) {
    delete light.messages;
    delete light.inputMessages;
  }
  for (const part of ["newMessages", "toolCall", "toolResult"] as const) if (exclude.includes(part)) delete light[part];
  if (exclude.includes("actionContent") && light.action.type !== "interactiveTool") {
    light.action = { ...light.action };
    for (const field of ACTION_CONTENT_FIELDS) delete light.action[field];
  }
  return light;
}

const combinations: Exclusion[][] = [
  ["messages"],
  ["newMessages"],
  ["toolCall"],
  ["toolResult"],
  ["actionContent"],
  ["messages", "newMessages"],
  ["toolResult", "actionContent"],
  [...exclusions],
];

describe("exclude: reads that leave out the heavy parts, on the real runtime traces", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  const jobs = {} as Record<"long-research" | "interactive" | "delegation", ReplayedJob>;

  beforeAll(async () => {
    t = await startTestApp({ config: { sseHeartbeatMs: 60_000 } });
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
    for (const name of ["long-research", "interactive", "delegation"] as const) jobs[name] = await replayTrace(t.app, tenant, name);
  }, 120_000);
  afterAll(async () => t.close());

  const client = () => api(t.app, tenant.clientKey);

  it.each(combinations.map((exclude) => [exclude.join(",")]))(
    "exclude=%s: list, GET and stream answer each checkpoint whole without exactly those parts",
    async (list) => {
      const exclude = list.split(",") as Exclusion[];
      for (const job of Object.values(jobs)) {
        const page = await client().get(`/expert_jobs/${job.expertJobId}/checkpoints/?take=100&exclude=${list}`);
        expect(page.statusCode).toBe(200);
        const answered = page.json().data.checkpoints;
        expect(answered).toEqual(job.checkpoints.map((checkpoint) => without(checkpoint, exclude)));
        const stream = await openSse(`${base}/api/studio/v1/expert_jobs/${job.expertJobId}/checkpoints/stream?exclude=${list}`, {
          authorization: `Bearer ${tenant.clientKey}`,
        });
        await stream.ended;
        const events = stream.events.filter((event) => event.event === "message");
        expect(events).toHaveLength(job.checkpoints.length);
        for (const [index, checkpoint] of job.checkpoints.entries()) {
          const one = await client().get(`/expert_jobs/${job.expertJobId}/checkpoints/${checkpoint.id}?exclude=${list}`);
          // GET, the list and the stream give the same bytes for each checkpoint.
          expect(one.body).toBe(JSON.stringify({ data: { checkpoint: answered[index] } }));
          expect(events[index]!.data).toBe(JSON.stringify(answered[index]));
        }
      }
    },
    120_000,
  );

  it("keeps an interactive tool's question with actionContent excluded, and the answer's action type everywhere", async () => {
    const page = (
      await client().get(`/expert_jobs/${jobs.interactive.expertJobId}/checkpoints/?take=100&exclude=${exclusions.join(",")}`)
    ).json();
    const paused = page.data.checkpoints.find((checkpoint: any) => checkpoint.status === "stoppedByInteractiveTool");
    expect(paused.action).toMatchObject({ type: "interactiveTool", toolName: "askUser", args: expect.any(Object) });
    expect(Object.keys(paused.action.args).length).toBeGreaterThan(0);
    expect(page.data.checkpoints.map((checkpoint: any) => checkpoint.action.type)).toEqual(
      jobs.interactive.checkpoints.map((checkpoint) => checkpoint.action.type),
    );
  });

  it("a timeline of the 79-step long-research job (58 MB as posted) is well under 100 KB", async () => {
    const full = await client().get(`/expert_jobs/${jobs["long-research"].expertJobId}/checkpoints/?take=100`);
    const light = await client().get(`/expert_jobs/${jobs["long-research"].expertJobId}/checkpoints/?take=100&exclude=messages`);
    const timeline = await client().get(
      `/expert_jobs/${jobs["long-research"].expertJobId}/checkpoints/?take=100&exclude=${exclusions.join(",")}`,
    );
    expect(full.body.length).toBeGreaterThan(50_000_000);
    expect(light.body.length).toBeGreaterThan(5_000_000);
    expect(timeline.body.length).toBeLessThan(100_000);
    const steps = timeline.json().data.checkpoints;
    expect(steps).toHaveLength(79);
    expect(steps.filter((checkpoint: any) => checkpoint.action.type === "retry").map((checkpoint: any) => checkpoint.stepNumber)).toEqual([
      24, 57,
    ]);
    expect(steps.at(-1).action.type).toBe("attemptCompletion");
  });

  it.each(["messages,messages", "toolResult,messages,toolResult"])("accepts a name twice (%s) as once", async (list) => {
    const job = jobs.delegation;
    const page = await client().get(`/expert_jobs/${job.expertJobId}/checkpoints/?take=100&exclude=${list}`);
    expect(page.json().data.checkpoints).toEqual(job.checkpoints.map((checkpoint) => without(checkpoint, list.split(",") as Exclusion[])));
  });
});

describe("the list and GET on the long-research trace (79 checkpoints, 58 MB as posted)", () => {
  let t: TestApp;
  let tenant: Tenant;
  let job: ReplayedJob;

  beforeAll(async () => {
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    job = await replayTrace(t.app, tenant, "long-research");
  }, 120_000);
  afterAll(async () => t.close());

  it.each(["asc", "desc"])(
    "pages through it 7 at a time in %s order, whole, matching what POST answered",
    async (order) => {
      const expected = order === "asc" ? job.checkpoints : [...job.checkpoints].reverse();
      const seen: unknown[] = [];
      for (let skip = 0; skip < 79; skip += 7) {
        const page = await api(t.app, tenant.clientKey).get(
          `/expert_jobs/${job.expertJobId}/checkpoints/?take=7&skip=${skip}&order=${order}`,
        );
        expect(page.statusCode).toBe(200);
        expect(page.json().meta).toEqual({ total: 79, take: 7, skip });
        seen.push(...page.json().data.checkpoints);
      }
      expect(seen).toEqual(expected);
    },
    60_000,
  );

  it("filters by tool name, and GET answers the 4 MB step exactly as POST did", async () => {
    const reads = job.checkpoints.filter((checkpoint) => checkpoint.toolName === "readTextFile");
    const page = await api(t.app, tenant.clientKey).get(
      `/expert_jobs/${job.expertJobId}/checkpoints/?take=100&filter=readtextfile&exclude=messages`,
    );
    expect(page.json().meta.total).toBe(reads.length);
    expect(page.json().data.checkpoints.map((checkpoint: { id: string }) => checkpoint.id)).toEqual(
      reads.map((checkpoint) => checkpoint.id),
    );
    const largest = job.checkpoints[72]!;
    const got = await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.expertJobId}/checkpoints/${largest.id}`);
    expect(got.body).toBe(JSON.stringify({ data: { checkpoint: largest } }));
    expect(got.body.length).toBeGreaterThan(4_000_000);
  });
});
