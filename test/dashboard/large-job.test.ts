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
  screenshot,
  waitForRows,
  waitForText,
} from "../helpers/dashboard.ts";
import { postGrownJob } from "../helpers/corpus.ts";
import { api, checkpointBody, seedTenant, startJob, toolResultFor, type Tenant } from "../helpers/fixtures.ts";

const STEPS = 1000;

/** Step `stepNumber` of a long job: a search, every 10th a think, each of its own length. */
function stepBody(tenant: Tenant, stepNumber: number) {
  const toolCall =
    stepNumber % 10 === 0
      ? { id: `call_${stepNumber}`, skillName: "@perstack/base", toolName: "think", args: { thought: `Thought ${stepNumber}` } }
      : { id: `call_${stepNumber}`, skillName: "search", toolName: "webSearch", args: { q: `query ${stepNumber}` } };
  const startedAt = 1_766_570_400_000 + stepNumber * 10_000;
  return checkpointBody(tenant, {
    stepNumber,
    status: stepNumber === 1 ? "init" : "proceeding",
    toolCall,
    toolResult: toolResultFor(toolCall, `result ${stepNumber}`),
    totalTokens: stepNumber * 150,
    startedAt,
    finishedAt: startedAt + 300 + ((stepNumber * 373) % 4000),
  });
}

describe.skipIf(!hasChromium)(describeTitle("the dashboard with a 1,000-step job in Chromium"), () => {
  let browser: Browser;
  let t: TestApp;
  let address: string | undefined;
  const listen = async () => (address ??= await t.app.listen({ port: 0, host: "127.0.0.1" }));

  beforeAll(async () => {
    browser = await launchChromium();
    t = await startTestApp();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("opens a 1,000-step job from light events, scrolls it, moves through it by keyboard, and keeps taking live steps", async () => {
    const tenant = await seedTenant(t.app);
    const job = await startJob(t.app, tenant, { maxSteps: 2000 });
    const runtime = api(t.app, tenant.runtimeKey);
    const post = async (stepNumber: number) => {
      const response = await runtime.post(`/expert_jobs/${job.id}/checkpoints/`, stepBody(tenant, stepNumber));
      expect(response.statusCode).toBe(200);
    };
    for (let stepNumber = 1; stepNumber <= STEPS; stepNumber++) await post(stepNumber);
    const base = await listen();

    const { page, consoleErrors } = await newDashboardPage(browser);
    const requests: string[] = [];
    page.on("request", (request) => requests.push(request.url()));
    try {
      const cdp = await page.context().newCDPSession(page);
      await cdp.send("Performance.enable");
      const openedAt = performance.now();
      await openDashboard(page, base, tenant.clientKey, job.id);
      await waitForRows(page, STEPS, undefined, 60_000);
      // Figures for the report, not assertions: speed is measured in bench/, not judged by tests.
      const { metrics } = await cdp.send("Performance.getMetrics");
      const seconds = (name: string) => Math.round((metrics.find((metric) => metric.name === name)?.value ?? 0) * 1000);
      console.info(
        `1,000-step job: all rows shown ${Math.round(performance.now() - openedAt)} ms after opening the page; the page's own work: ` +
          `script ${seconds("ScriptDuration")} ms, style ${seconds("RecalcStyleDuration")} ms, layout ${seconds("LayoutDuration")} ms, ` +
          `tasks ${seconds("TaskDuration")} ms`,
      );
      expect(await page.textContent("#checkpoint-count")).toBe(`(${STEPS})`);
      const streams = requests.filter((url) => url.includes("/checkpoints/stream"));
      expect(streams[0]).toContain("exclude=messages%2CnewMessages%2CtoolCall%2CtoolResult%2CactionContent");
      // Step details are read only when a step is opened.
      expect(requests.filter((url) => /\/checkpoints\/[a-z0-9]{24}/.test(url))).toEqual([]);

      const scroller = "#timeline-section .scroll";
      await page.$eval(scroller, (element) => element.scrollTo({ top: element.scrollHeight }));
      const lastRow = page.locator("#timeline tbody tr").last();
      await lastRow.waitFor({ state: "visible" });
      expect(await lastRow.locator("td").first().textContent()).toBe(String(STEPS));
      const box = await page.$eval(scroller, (element) => element.getBoundingClientRect().bottom);
      const lastBox = await lastRow.boundingBox();
      expect(lastBox!.y + lastBox!.height).toBeLessThanOrEqual(box + 1);

      await page.$eval(scroller, (element) => element.scrollTo({ top: 0 }));
      await page.focus("#timeline tbody tr:first-child");
      await page.keyboard.press("End");
      await waitForText(page, "#inspector-title", `Step ${STEPS} · think`);
      await page.keyboard.press("ArrowUp");
      await waitForText(page, "#inspector-title", `Step ${STEPS - 1} · generalTool`);
      await page.waitForSelector("#inspector-content .block");
      expect(await page.getAttribute(`#timeline tbody tr[data-seq="${STEPS - 1}"]`, "aria-selected")).toBe("true");
      expect(await page.evaluate(() => document.activeElement?.getAttribute("data-seq"))).toBe(String(STEPS - 1));

      for (let stepNumber = STEPS + 1; stepNumber <= STEPS + 5; stepNumber++) await post(stepNumber);
      await waitForRows(page, STEPS + 5);
      await waitForText(page, "#job-step", `${STEPS + 5} of at most 2000 (${STEPS + 5} steps run)`);
      await screenshot(page, "dashboard-large-job", false);

      await page.setViewportSize({ width: 390, height: 844 });
      await page.$eval(scroller, (element) => element.scrollTo({ top: 0 }));
      await screenshot(page, "dashboard-large-job-phone", false);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      expect(await cspViolations(page)).toEqual([]);
      expect(consoleErrors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 300_000);

  it("opens a 200-step job of ~10 KB per step (a 2 MB conversation at its end) from light events, and reads a step's file on demand", async () => {
    const tenant = await seedTenant(t.app);
    const steps = 200;
    const job = await postGrownJob(t.app, tenant, { steps, bytesPerStep: 10_000 });
    expect(job.bodyBytes.at(-1)).toBeGreaterThan(2_000_000);
    const base = await listen();

    const { page, consoleErrors } = await newDashboardPage(browser);
    const responses: Array<{ url: string; bytes: Promise<number> }> = [];
    page.on("response", (response) => {
      if (response.url().includes("/checkpoints/"))
        responses.push({
          url: response.url(),
          bytes: response.body().then(
            (body) => body.length,
            () => 0,
          ),
        });
    });
    try {
      const openedAt = performance.now();
      await openDashboard(page, base, tenant.clientKey, job.expertJobId);
      await waitForRows(page, steps, undefined, 60_000);
      await waitForText(page, "#job-status", "completed");
      // A figure for the report, not an assertion.
      console.info(`200 steps × 10 KB: all rows shown ${Math.round(performance.now() - openedAt)} ms after opening the page`);
      const stream = responses.find((response) => response.url.includes("/checkpoints/stream"))!;
      expect(stream.url).toContain("exclude=messages%2CnewMessages%2CtoolCall%2CtoolResult%2CactionContent");
      expect(responses.filter((response) => /\/checkpoints\/[a-z0-9]{24}/.test(response.url))).toEqual([]);

      await page.focus("#timeline tbody tr:first-child");
      await page.keyboard.press("End");
      await waitForText(page, "#inspector-title", `Step ${steps} · attemptCompletion`);
      await page.keyboard.press("ArrowUp");
      await waitForText(page, "#inspector-title", `Step ${steps - 1} · readTextFile`);
      await page.waitForSelector("#inspector-content .block");
      expect(await page.textContent("#inspector-content")).toContain("lorem ipsum");
      // The step was read without the whole conversation: its new messages, not 2 MB of history.
      const detail = responses.find((response) => response.url.includes(`/checkpoints/${job.checkpoints[steps - 2]!.id}`))!;
      expect(detail.url).toContain("exclude=messages");
      expect(await detail.bytes).toBeLessThan(200_000);
      await screenshot(page, "dashboard-grown-job", false);
      expect(await cspViolations(page)).toEqual([]);
      expect(consoleErrors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 600_000);
});
