import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp } from "../helpers/app.ts";
import { createRestartableDatabase } from "../helpers/restartable-database.ts";
import { api, postCheckpoint, seedTenant, startJob, toolResultFor, type CheckpointBodyOptions } from "../helpers/fixtures.ts";
import { grownJobBodies } from "../helpers/corpus.ts";
import { describeTitle, hasChromium, launchChromium, rows, waitForRows, waitForText } from "../helpers/dashboard.ts";

const SCREENSHOT = path.join(import.meta.dirname, "../../test-artifacts/dashboard.png");

type ToolCall = { id: string; skillName: string; toolName: string; args: Record<string, unknown> };
const webSearch: ToolCall = { id: "call_search", skillName: "search", toolName: "webSearch", args: { q: "expert jobs" } };
const think: ToolCall = { id: "call_think", skillName: "@perstack/base", toolName: "think", args: { thought: "Compare the results" } };
const readNotes: ToolCall = { id: "call_read", skillName: "@perstack/base", toolName: "readTextFile", args: { path: "notes.md" } };
const attemptCompletion: ToolCall = { id: "call_done", skillName: "@perstack/base", toolName: "attemptCompletion", args: {} };

/** A step that called `toolCall` and got `result` back, the job having used `totalTokens` so far. */
const step = (stepNumber: number, toolCall: ToolCall, result: string, totalTokens: number): CheckpointBodyOptions => ({
  stepNumber,
  totalTokens,
  toolCall,
  toolResult: toolResultFor(toolCall, result),
});

describe.skipIf(!hasChromium)(describeTitle("the dashboard in Chromium"), () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchChromium();
  });
  afterAll(async () => browser?.close());

  it("shows a job and its checkpoints live, and keeps going across a server restart", async () => {
    const database = await createRestartableDatabase();
    let t = await startTestApp({ db: database.db });
    const page = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    try {
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant, { model: "claude-sonnet-4-5", maxSteps: 20 });
      const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const port = Number(new URL(base).port);

      const consoleErrors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(message.text());
      });
      await page.addInitScript(() => {
        const violations: string[] = [];
        (window as unknown as { cspViolations: string[] }).cspViolations = violations;
        document.addEventListener("securitypolicyviolation", (event) => violations.push(`${event.violatedDirective} ${event.blockedURI}`));
      });

      const response = await page.goto(`${base}/dashboard`);
      expect(response?.status()).toBe(200);
      expect(new URL(page.url()).pathname).toBe("/dashboard/");
      expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'");
      await page.fill("#api-key", tenant.clientKey);
      await page.fill("#job-id", job.id);
      await page.check("#remember");
      await page.click("button[type=submit]");
      await waitForText(page, "#job-status", "queued");
      await waitForText(page, "#connection", "live");

      const posted = [
        await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init", totalTokens: 120 }),
        await postCheckpoint(t.app, tenant, job.id, step(2, webSearch, "3 results", 450)),
        await postCheckpoint(t.app, tenant, job.id, {
          ...step(3, think, "ok", 900),
          startedAt: 1_766_570_500_000,
          finishedAt: 1_766_570_503_500,
        }),
      ];
      await waitForRows(page, 3);
      const [first, second, third] = await rows(page);
      expect(posted.map((checkpoint) => checkpoint.action.type)).toEqual(["init", "generalTool", "think"]);
      expect(first!.slice(0, 7)).toEqual(["1", "1", "init", "search › webSearch", "init", "120", "2.0 s"]);
      expect(second!.slice(0, 6)).toEqual(["2", "2", "generalTool", "search › webSearch", "proceeding", "450 (+330)"]);
      expect(third!.slice(2, 7)).toEqual(["think", "@perstack/base › think", "proceeding", "900 (+450)", "3.5 s"]);
      await waitForText(page, "#job-status", "processing");
      await page.waitForFunction(() => document.querySelector("#job-tokens")?.textContent?.startsWith("900 "), undefined, {
        timeout: 10_000,
      });

      await t.app.close();
      await waitForText(page, "#connection", "reconnecting");
      t = await startTestApp({ db: database.reopen() });
      await t.app.listen({ port, host: "127.0.0.1" });
      await postCheckpoint(t.app, tenant, job.id, step(4, readNotes, JSON.stringify({ path: "notes.md", content: "…" }), 1000));
      await postCheckpoint(t.app, tenant, job.id, step(5, webSearch, "2 results", 1500));
      await waitForRows(page, 5);
      const last = await postCheckpoint(t.app, tenant, job.id, { ...step(6, attemptCompletion, "done", 1800), status: "completed" });
      await waitForText(page, "#connection", "complete");
      await waitForText(page, "#job-status", "completed");

      const all = await rows(page);
      expect(all.map((row) => row[0])).toEqual(["1", "2", "3", "4", "5", "6"]);
      // The last step's action is an error (its messages hold no text to complete with): the row says why.
      expect(last.action).toEqual({ type: "error", error: "No text found" });
      expect(all.map((row) => row[2])).toEqual(["init", "generalTool", "think", "readTextFile", "generalTool", "error — No text found"]);
      expect(all[5]!.slice(3, 6)).toEqual(["@perstack/base › attemptCompletion", "completed", "1,800 (+300)"]);
      expect(await page.textContent("#job-step")).toBe("6 of at most 20 (6 steps run)");

      // The key is in sessionStorage (the box was ticked) and nowhere else the browser keeps or shows.
      expect(page.url()).not.toContain(tenant.clientKey);
      expect(page.url()).toContain(`#job=${job.id}`);
      expect(await page.evaluate(() => Object.keys(localStorage).length)).toBe(0);
      expect(await page.evaluate(() => Object.values(sessionStorage))).toEqual([tenant.clientKey]);
      expect(await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations)).toEqual([]);
      // Only the connection failures while the server was down.
      expect(consoleErrors.filter((text) => !/ERR_CONNECTION_REFUSED|Failed to load resource|503/.test(text))).toEqual([]);

      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
    } finally {
      await page.close();
      await t.app.close();
      await database.drop();
    }
  }, 90_000);

  it("follows a 100-step job of ~10 KB per step with a 12 MB checkpoint live, across a reconnect with Last-Event-ID, and replays it whole", async () => {
    const t = await startTestApp({ config: { sseHeartbeatMs: 60_000 } });
    const live = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    const replay = await browser.newPage({ viewport: { width: 1100, height: 760 } });
    try {
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant, { maxSteps: 200 });
      const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
      const streamRequests: Array<Promise<{ url: string; lastEventId?: string }>> = [];
      live.on("request", (request) => {
        if (!request.url().includes("/checkpoints/stream")) return;
        streamRequests.push(request.allHeaders().then((headers) => ({ url: request.url(), lastEventId: headers["last-event-id"] })));
      });
      const bodies = [...grownJobBodies(tenant, { steps: 100, bytesPerStep: 10_000, largeRead: { step: 30, bytes: 3 * 1024 * 1024 } })];
      const runtime = api(t.app, tenant.runtimeKey);
      const post = async (body: unknown) => {
        const response = await runtime.request({
          method: "POST",
          url: `/expert_jobs/${job.id}/checkpoints/`,
          headers: { "content-type": "application/json" },
          payload: JSON.stringify(body),
        });
        expect(response.statusCode).toBe(200);
        return response.json().data.checkpoint;
      };

      await live.goto(`${base}/dashboard/#job=${job.id}`);
      await live.fill("#api-key", tenant.clientKey);
      await live.click("button[type=submit]");
      await waitForText(live, "#connection", "live");
      const posted = [];
      for (const body of bodies.slice(0, 50)) posted.push(await post(body));
      const big = await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}/checkpoints/${posted[29].id}`);
      expect(big.body.length).toBeGreaterThan(12 * 1024 * 1024);
      await waitForRows(live, 50);

      // Every connection dropped: the browser reconnects by itself and sends the last event id it had.
      t.app.server.closeAllConnections();
      await live.waitForFunction(() => document.querySelector("#connection")?.textContent !== "live", undefined, { timeout: 10_000 });
      for (const body of bodies.slice(50)) posted.push(await post(body));
      await waitForText(live, "#connection", "complete");
      await waitForText(live, "#job-status", "completed");
      const liveRows = await rows(live);
      expect(liveRows.map((row) => row[0])).toEqual(posted.map((_, index) => String(index + 1)));
      expect(liveRows.map((row) => row[1])).toEqual(posted.map((checkpoint) => String(checkpoint.stepNumber)));
      expect(liveRows[29]![2]).toBe("readTextFile");
      expect(liveRows.at(-1)![2]).toBe("attemptCompletion");
      const streams = await Promise.all(streamRequests);
      expect(streams.length).toBeGreaterThanOrEqual(2);
      expect(streams[0]!.url).toContain("exclude=messages%2CnewMessages%2CtoolCall%2CtoolResult%2CactionContent");
      expect(streams.slice(1).some((stream) => stream.lastEventId === "50")).toBe(true);

      await replay.goto(`${base}/dashboard/#job=${job.id}`);
      await replay.fill("#api-key", tenant.clientKey);
      await replay.click("button[type=submit]");
      await waitForText(replay, "#connection", "complete");
      expect(await rows(replay)).toEqual(liveRows);
      await mkdir(path.dirname(SCREENSHOT), { recursive: true });
      await replay.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-long-job.png"), fullPage: false });
    } finally {
      await live.close();
      await replay.close();
      await t.close();
    }
  }, 180_000);

  it("reports a wrong key without opening a stream", async () => {
    const t = await startTestApp();
    const page = await browser.newPage();
    try {
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant);
      const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
      await page.goto(`${base}/dashboard/#job=${job.id}`);
      expect(await page.inputValue("#job-id")).toBe(job.id);
      await page.fill("#api-key", "ejk_wrong");
      await page.click("button[type=submit]");
      await waitForText(page, "#connection", "stopped");
      expect(await page.textContent("#notice")).toBe("Could not load the job: 401 Unauthorized: Failed to authenticate");
      expect(t.app.streamHub.openStreams).toBe(0);
      expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      await page.close();
      await t.close();
    }
  });
});
