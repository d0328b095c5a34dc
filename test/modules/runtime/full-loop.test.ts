import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeClient, runJob, runOnce } from "../../../examples/runtime.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";
import {
  api,
  askUserToolCall,
  claimJob,
  eventually,
  expertMessage,
  postCheckpoint,
  reportStatus,
  seedTenant,
  startJob,
  textPart,
  toolCallPart,
  toolMessage,
  type Tenant,
} from "../../helpers/fixtures.ts";

describe("the runtime loop end to end", () => {
  let t: TestApp;
  let tenant: Tenant;
  let base: string;
  beforeAll(async () => {
    t = await startTestApp();
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => t.close());

  it("start → claim → checkpoints → interactive pause → continue → claim with the right checkpoint → completed", async () => {
    tenant = await seedTenant(t.app);
    const client = api(t.app, tenant.clientKey);
    const job = await startJob(t.app, tenant, { query: "Plan my trip" });

    const first = await claimJob(t.app, tenant);
    expect(first.statusCode).toBe(200);
    expect(first.json().data.claim).toMatchObject({ expertJob: { id: job.id, status: "processing", query: "Plan my trip" } });
    expect(first.json().data.claim).not.toHaveProperty("checkpoint");

    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
    await postCheckpoint(t.app, tenant, job.id, { stepNumber: 2, totalTokens: 200 });
    const askMessage = expertMessage(toolCallPart(askUserToolCall.id, askUserToolCall.toolName, askUserToolCall.args));
    const paused = await postCheckpoint(t.app, tenant, job.id, {
      stepNumber: 3,
      status: "stoppedByInteractiveTool",
      toolCall: askUserToolCall,
      newMessages: [askMessage],
      totalTokens: 300,
    });
    expect(paused.action).toEqual({
      type: "interactiveTool",
      skillName: "interactive",
      toolName: "askUser",
      args: { question: "Proceed?" },
    });
    expect((await client.get(`/expert_jobs/${job.id}`)).json().data.expertJob).toMatchObject({
      status: "requestInteractiveToolResult",
      currentStep: 3,
      totalSteps: 3,
    });
    expect((await reportStatus(t.app, tenant, job.id, "requestInteractiveToolResult")).statusCode).toBe(200);
    expect((await claimJob(t.app, tenant)).statusCode).toBe(204);

    const continued = await client.post(`/expert_jobs/${job.id}/continue`, { query: "Yes, go ahead", interactiveToolCallResult: true });
    expect(continued.statusCode).toBe(200);

    const second = (await claimJob(t.app, tenant)).json().data.claim;
    expect(second.expertJob).toMatchObject({
      id: job.id,
      status: "processing",
      query: "Yes, go ahead",
      interactiveToolCallResult: true,
      currentStep: 3,
      totalSteps: 3,
    });
    expect(second.checkpoint).toEqual(paused);
    expect(second.providerKey).toEqual({ provider: "anthropic", key: "sk-anthropic-secret" });

    const answer = toolMessage(askUserToolCall.id, askUserToolCall.toolName, second.expertJob.query);
    const history = [...second.checkpoint.messages, answer];
    await postCheckpoint(t.app, tenant, job.id, {
      stepNumber: 4,
      messages: [...history, expertMessage(toolCallPart("call_4", "webSearch", { q: "x" }))],
      inputMessages: [answer],
      totalTokens: 400,
    });
    const final = expertMessage(textPart("Booked."));
    await postCheckpoint(t.app, tenant, job.id, {
      stepNumber: 5,
      status: "completed",
      messages: [...history, final],
      newMessages: [final],
      totalTokens: 500,
    });
    expect((await reportStatus(t.app, tenant, job.id, "completed")).statusCode).toBe(200);

    const done = (await client.get(`/expert_jobs/${job.id}`)).json().data.expertJob;
    expect(done).toMatchObject({ status: "completed", currentStep: 5, totalSteps: 5, usage: { totalTokens: 500 } });
    const checkpoints = (await client.get(`/expert_jobs/${job.id}/checkpoints/`)).json();
    expect(checkpoints.data.checkpoints.map((checkpoint: { stepNumber: number; status: string }) => checkpoint.status)).toEqual([
      "init",
      "proceeding",
      "stoppedByInteractiveTool",
      "proceeding",
      "completed",
    ]);
    expect((await claimJob(t.app, tenant)).statusCode).toBe(204);
  });

  describe("examples/runtime.ts", () => {
    it("returns nothing when no job comes within waitMs", async () => {
      const owner = await seedTenant(t.app);
      expect(await runOnce({ url: base, key: owner.runtimeKey, waitMs: 50 })).toBeUndefined();
    });

    it("waits stepDelayMs (STEP_DELAY_MS) before each step, so the steps can be watched arriving", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "Slowly" });
      expect(await runOnce({ url: base, key: owner.runtimeKey, waitMs: 1_000, stepDelayMs: 400 })).toBe("completed");
      const checkpoints = (await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}/checkpoints/`)).json().data.checkpoints;
      const steps = checkpoints.map((checkpoint: { startedAt: string; finishedAt: string }) => ({
        startedAt: Date.parse(checkpoint.startedAt),
        finishedAt: Date.parse(checkpoint.finishedAt),
      }));
      expect(steps).toHaveLength(3);
      // Each step lasts the delay (where a model call would be), and they come one after the other.
      for (const step of steps) expect(step.finishedAt - step.startedAt).toBeGreaterThanOrEqual(400);
      for (let index = 1; index < steps.length; index++)
        expect(steps[index]!.startedAt).toBeGreaterThanOrEqual(steps[index - 1]!.finishedAt);
    });

    it("runs a job to completion with init, proceeding and completed checkpoints", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "Say hello" });
      expect(await runOnce({ url: base, key: owner.runtimeKey, waitMs: 1_000 })).toBe("completed");
      const checkpoints = (await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}/checkpoints/`)).json().data.checkpoints;
      expect(checkpoints.map((checkpoint: { status: string }) => checkpoint.status)).toEqual(["init", "proceeding", "completed"]);
      expect(checkpoints.map((checkpoint: { action: { type: string } }) => checkpoint.action.type)).toEqual([
        "init",
        "think",
        "attemptCompletion",
      ]);
      expect(checkpoints[2].action.result).toBe("Done: Say hello");
      expect((await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob).toMatchObject({
        status: "completed",
        currentStep: 3,
        totalSteps: 3,
      });
    });

    it("pauses at an interactive tool and resumes with the client's answer as the tool result", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "ask: may I book it?" });
      expect(await runOnce({ url: base, key: owner.runtimeKey, waitMs: 1_000 })).toBe("requestInteractiveToolResult");
      const continued = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/continue`, {
        query: "yes",
        interactiveToolCallResult: true,
      });
      expect(continued.statusCode).toBe(200);
      expect(await runOnce({ url: base, key: owner.runtimeKey, waitMs: 1_000 })).toBe("completed");

      const checkpoints = (await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}/checkpoints/`)).json().data.checkpoints;
      expect(checkpoints.map((checkpoint: { stepNumber: number }) => checkpoint.stepNumber)).toEqual([1, 2, 3, 4, 5, 6]);
      const [, , pause, resumedInit] = checkpoints;
      expect(pause.action).toMatchObject({ type: "interactiveTool", toolName: "askUser" });
      expect(resumedInit.newMessages).toEqual([
        expect.objectContaining({
          type: "toolMessage",
          contents: [expect.objectContaining({ toolCallId: pause.toolCall.id, contents: [expect.objectContaining({ text: "yes" })] })],
        }),
      ]);
      expect(resumedInit.messages.slice(0, pause.messages.length)).toEqual(pause.messages);
      expect(checkpoints[5].action.result).toBe("Thanks, you said: yes");
    });

    it("stops mid-step as soon as a client cancels (its status watch), reports canceled and stores nothing more", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "A very slow one" });
      // A step that would take two minutes (a slow model call): only the cancel ends it within the test's time.
      const running = runOnce({ url: base, key: owner.runtimeKey, waitMs: 5_000, stepDelayMs: 120_000 });
      await eventually(async () => t.app.runtime.watchingStatuses > 0, 30_000);
      const canceled = await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      expect(canceled.json().data.expertJob.status).toBe("canceling");
      expect(await running).toBe("canceled");
      expect((await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("canceled");
      expect(await t.app.prisma.checkpoint.count({ where: { expertJobId: job.id } })).toBe(0);
      expect(t.app.runtime.watchingStatuses).toBe(0);
    }, 60_000);

    it("sends its lease token: once its lease is lost it stops and nothing it sends is stored", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "Slow again", maxRetries: 3 });
      const running = runOnce({ url: base, key: owner.runtimeKey, waitMs: 5_000, stepDelayMs: 120_000 });
      await eventually(async () => t.app.runtime.watchingStatuses > 0, 30_000);
      await t.app.prisma.expertJob.update({ where: { id: job.id }, data: { leaseExpiresAt: new Date(Date.now() - 1_000) } });
      expect((await t.app.runtime.sweep()).requeued).toBeGreaterThanOrEqual(1);
      expect(await running).toBe("gone");
      expect(await t.app.prisma.checkpoint.count({ where: { expertJobId: job.id } })).toBe(0);
      expect((await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("queued");
    }, 60_000);

    it("drops a job canceled while it runs", async () => {
      const owner = await seedTenant(t.app);
      const job = await startJob(t.app, owner, { query: "Long one" });
      const claim = (await claimJob(t.app, owner)).json().data.claim;
      await api(t.app, owner.clientKey).post(`/expert_jobs/${job.id}/cancel`);
      await api(t.app, owner.runtimeKey).post(`/expert_jobs/${job.id}`, { status: "canceled" });
      expect(await runJob(new RuntimeClient({ url: base, key: owner.runtimeKey }), claim)).toBe("gone");
      expect((await api(t.app, owner.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob.status).toBe("canceled");
    });
  });
});
