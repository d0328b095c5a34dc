import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import {
  cspViolations,
  describeTitle,
  hasChromium,
  launchChromium,
  newDashboardPage,
  openDashboard,
  rows,
  screenshot,
  waitForRows,
  waitForText,
} from "../helpers/dashboard.ts";
import {
  api,
  askUserToolCall,
  claimJob,
  expertMessage,
  postCheckpoint,
  seedTenant,
  startJob,
  textPart,
  toolCallPart,
  toolResultFor,
  userMessage,
  type Tenant,
} from "../helpers/fixtures.ts";

// A 1×1 PNG.
const PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const webSearch = { id: "call_search", skillName: "search", toolName: "webSearch", args: { q: "expert jobs", limit: 3 } };
const attemptCompletion = { id: "call_done", skillName: "@perstack/base", toolName: "attemptCompletion", args: {} };

describe.skipIf(!hasChromium)(describeTitle("the dashboard's job view in Chromium"), () => {
  let browser: Browser;
  let t: TestApp;
  let tenant: Tenant;
  let base: string;

  beforeAll(async () => {
    browser = await launchChromium();
    t = await startTestApp();
    tenant = await seedTenant(t.app);
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("follows a job through an interactive pause, an answer typed into the page, and its completion", async () => {
    const { page, consoleErrors } = await newDashboardPage(browser);
    try {
      const job = await startJob(t.app, tenant, { maxSteps: 30 });
      await openDashboard(page, base, tenant.clientKey, job.id);
      await waitForText(page, "#job-status", "queued");
      expect(await page.textContent("#job-waiting")).toMatch(/^Waiting for a runtime to claim it/);
      await waitForText(page, "#connection", "live");
      await screenshot(page, "dashboard-queued");

      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init", totalTokens: 100 });
      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 2,
        toolCall: webSearch,
        toolResult: toolResultFor(webSearch, "3 results"),
        totalTokens: 400,
      });
      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 3,
        status: "stoppedByInteractiveTool",
        toolCall: { ...askUserToolCall, args: { question: "Which year should the report cover?" } },
        newMessages: [expertMessage(toolCallPart(askUserToolCall.id, "askUser", { question: "Which year should the report cover?" }))],
        totalTokens: 700,
      });
      await waitForText(page, "#job-status", "requestInteractiveToolResult");
      // The stream ended because the job stopped: the badge says the job is paused, not that it is complete.
      await waitForText(page, "#connection", "paused");
      await waitForRows(page, 3);
      expect(await page.textContent("#answer-question")).toBe("Which year should the report cover?");
      expect(await page.textContent("#answer-tool")).toBe("interactive › askUser");
      expect(await page.textContent("#job-waiting")).toBe("Waiting for your answer to the expert's question below.");
      await screenshot(page, "dashboard-interactive");
      await page.click("#timeline tbody tr:nth-child(2)");
      await page.waitForSelector("#inspector-content .message");
      expect(await page.textContent("#inspector-title")).toBe("Step 2 · generalTool");
      // The picture in the README (docs/dashboard-job-view.png is a copy).
      await screenshot(page, "dashboard-job-view");

      await page.fill("#answer-text", "2025, please");
      await page.click("#answer-form button[type=submit]");
      await waitForText(page, "#job-status", "queued");
      await waitForText(page, "#connection", "live");
      const continued = (await api(t.app, tenant.clientKey).get(`/expert_jobs/${job.id}`)).json().data.expertJob;
      expect(continued).toMatchObject({ status: "queued", query: "2025, please", interactiveToolCallResult: true });
      expect(await page.isHidden("#answer-form")).toBe(true);

      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 4,
        toolCall: webSearch,
        toolResult: toolResultFor(webSearch, "2"),
        totalTokens: 900,
      });
      await waitForText(page, "#job-status", "processing");
      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 5,
        status: "completed",
        toolCall: attemptCompletion,
        toolResult: toolResultFor(attemptCompletion, "ok"),
        newMessages: [expertMessage(textPart("The report covers 2025."))],
        totalTokens: 1000,
      });
      await waitForText(page, "#job-status", "completed");
      await waitForText(page, "#connection", "complete");
      await waitForRows(page, 5);
      const all = await rows(page);
      expect(all.map((row) => row[0])).toEqual(["1", "2", "3", "4", "5"]);
      expect(all.map((row) => row[2])).toEqual(["init", "generalTool", "interactiveTool", "generalTool", "attemptCompletion"]);
      expect(await page.textContent("#job-step")).toBe("5 of at most 30 (5 steps run)");
      expect(await page.textContent("#job-waiting")).toBe("Completed after 5 steps.");
      expect(await cspViolations(page)).toEqual([]);
      expect(consoleErrors).toEqual([]);
      await screenshot(page, "dashboard-completed");
    } finally {
      await page.close();
    }
  }, 90_000);

  it("shows an error step's message and a retry's reason in the timeline, and why the job failed", async () => {
    const { page, consoleErrors } = await newDashboardPage(browser);
    try {
      const job = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 2,
        newMessages: [userMessage(JSON.stringify({ error: "RateLimitError", message: "429 from the provider" }))],
      });
      const think = { id: "call_think", skillName: "@perstack/base", toolName: "think", args: {} };
      await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 3,
        status: "stoppedByError",
        toolCall: think,
        toolResult: toolResultFor(think, ""),
      });
      await openDashboard(page, base, tenant.clientKey, job.id);
      await waitForText(page, "#job-status", "failed");
      await waitForRows(page, 3);
      const [, retry, error] = await rows(page);
      expect(retry![2]).toBe("retry — RateLimitError: 429 from the provider");
      expect(error![2]).toBe("error — No thought found");
      expect(await page.getAttribute("#timeline tbody tr:nth-child(3)", "class")).toContain("is-error");
      expect(await page.getAttribute("#timeline tbody tr:nth-child(2)", "class")).toContain("is-retry");
      expect(await page.textContent("#job-waiting")).toBe("Failed: No thought found");
      await waitForText(page, "#connection", "complete");

      await page.click("#timeline tbody tr:nth-child(3)");
      await page.waitForSelector("#inspector-content .action .problem");
      expect(await page.textContent("#inspector-content .action .problem")).toBe("No thought found");
      expect(consoleErrors).toEqual([]);
      await screenshot(page, "dashboard-error");
    } finally {
      await page.close();
    }
  }, 60_000);

  it("cancels a queued job and a running one from the page, and says in words why a continue is refused", async () => {
    const { page, consoleErrors } = await newDashboardPage(browser);
    try {
      const queued = await startJob(t.app, tenant);
      await openDashboard(page, base, tenant.clientKey, queued.id);
      await waitForText(page, "#connection", "live");
      await page.click("#cancel-button");
      await page.click("#cancel-yes");
      await waitForText(page, "#job-status", "canceled");
      await waitForText(page, "#connection", "complete");
      expect(await page.isHidden("#cancel-button")).toBe(true);
      expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${queued.id}`)).json().data.expertJob.status).toBe("canceled");

      const running = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, running.id, { stepNumber: 1, status: "init" });
      await page.goto(`${base}/dashboard/#job=${running.id}`);
      await page.fill("#api-key", tenant.clientKey);
      await page.click("#watch button[type=submit]");
      await waitForText(page, "#job-status", "processing");
      await page.click("#cancel-button");
      await page.click("#cancel-yes");
      await waitForText(page, "#job-status", "canceling");
      expect(await page.textContent("#job-waiting")).toBe("Cancel requested; waiting for the runtime to stop the step it is running.");
      await postCheckpoint(t.app, tenant, running.id, { stepNumber: 2 });
      await waitForText(page, "#job-status", "canceled");
      await waitForText(page, "#connection", "complete");

      const done = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, done.id, { stepNumber: 1, status: "completed" });
      await page.goto(`${base}/dashboard/#job=${done.id}`);
      await page.fill("#api-key", tenant.clientKey);
      await page.click("#watch button[type=submit]");
      await waitForText(page, "#job-status", "completed");
      await page.click("#continue-title");
      await page.fill("#continue-query", "Now in French");
      await page.fill("#continue-model", "gpt-5");
      await page.click("#continue-form button[type=submit]");
      await waitForText(page, "#action-error", "Could not continue the job: 400 Bad Request: Provider API key not found");
      expect((await api(t.app, tenant.clientKey).get(`/expert_jobs/${done.id}`)).json().data.expertJob.status).toBe("completed");
      await screenshot(page, "dashboard-refused");
      // The refusal is shown on the page; the browser logs the failed request itself.
      expect(consoleErrors.filter((text) => !/status of 400/.test(text))).toEqual([]);
    } finally {
      await page.close();
    }
  }, 90_000);

  it("opens a step's detail on demand: messages, tool call with args, result, an inline image, thinking collapsed, long text collapsed; resumes from it", async () => {
    const { page, consoleErrors } = await newDashboardPage(browser);
    const checkpointReads: string[] = [];
    page.on("request", (request) => {
      if (/\/checkpoints\/[a-z0-9]{24}/.test(request.url())) checkpointReads.push(request.url());
    });
    try {
      // Its own application: the claim below takes the application's oldest queued job.
      const tenant = await seedTenant(t.app);
      const job = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 1, status: "init" });
      const longText = Array.from({ length: 200 }, (_, line) => `Line ${line + 1} of the report.`).join("\n");
      const withImage = await postCheckpoint(t.app, tenant, job.id, {
        stepNumber: 2,
        toolCall: webSearch,
        toolResult: {
          ...toolResultFor(webSearch, "3 results"),
          result: [textPart("3 results"), { id: "img1", type: "imageInlinePart", encodedData: PNG_BASE64, mimeType: "image/png" }],
        },
        newMessages: [
          expertMessage(
            { id: "th1", type: "thinkingPart", thinking: "The user wants recent sources." },
            textPart(longText),
            toolCallPart(webSearch.id, webSearch.toolName, webSearch.args),
          ),
          {
            id: "tm1",
            type: "toolMessage",
            contents: [
              {
                id: "tr1",
                type: "toolResultPart",
                toolCallId: webSearch.id,
                toolName: webSearch.toolName,
                contents: [textPart("3 results"), { id: "img2", type: "imageInlinePart", encodedData: PNG_BASE64, mimeType: "image/png" }],
              },
            ],
          },
        ],
      });
      await postCheckpoint(t.app, tenant, job.id, { stepNumber: 3, status: "completed" });
      await openDashboard(page, base, tenant.clientKey, job.id);
      await waitForRows(page, 3);
      await waitForText(page, "#connection", "complete");
      expect(checkpointReads).toEqual([]);

      await page.click("#timeline tbody tr:nth-child(2)");
      await page.waitForSelector("#inspector-content .message");
      expect(checkpointReads).toHaveLength(1);
      expect(checkpointReads[0]).toContain(`/checkpoints/${withImage.id}?exclude=messages`);
      expect(await page.textContent("#inspector-title")).toBe("Step 2 · generalTool");
      expect(
        await page.$$eval("#inspector-content details.thinking", (details) => details.map((detail) => (detail as HTMLDetailsElement).open)),
      ).toEqual([false]);
      expect(await page.$$eval("#inspector-content img", (images) => images.map((image) => image.getAttribute("src")))).toEqual([
        `data:image/png;base64,${PNG_BASE64}`,
        `data:image/png;base64,${PNG_BASE64}`,
      ]);
      const toolCall = await page.textContent("#inspector-content .block:first-of-type");
      expect(toolCall).toContain("search › webSearch");
      expect(toolCall).toContain('"q": "expert jobs"');
      const expand = page.locator("#inspector-content button.expand").first();
      expect(await expand.textContent()).toMatch(/^Show all [\d,]+ characters \(200 lines\)$/);
      expect(await page.locator("#inspector-content pre.text", { hasText: "Line 1 of" }).textContent()).not.toContain("Line 200 of");
      await expand.click();
      expect(await page.locator("#inspector-content pre.text", { hasText: "Line 1 of" }).textContent()).toContain(
        "Line 200 of the report.",
      );
      await screenshot(page, "dashboard-step-inspector");

      await page.click("#inspector-content button.secondary");
      expect(await page.textContent("#continue-title")).toBe("Resume from step 2");
      await page.fill("#continue-query", "Try other sources");
      await page.click("#continue-form button[type=submit]");
      await waitForText(page, "#job-status", "queued");
      const claim = await claimJob(t.app, tenant);
      expect(claim.statusCode).toBe(200);
      expect(claim.json().data.claim.checkpoint.id).toBe(withImage.id);
      await waitForText(page, "#job-status", "processing");
      expect(consoleErrors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 90_000);
});
