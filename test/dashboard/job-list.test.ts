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
import { postCheckpoint, seedTenant, startJob } from "../helpers/fixtures.ts";

const JOB_ROWS = "#jobs tbody tr";

describe.skipIf(!hasChromium)(describeTitle("the dashboard's job list in Chromium"), () => {
  let browser: Browser;
  let t: TestApp;
  let base: string;

  beforeAll(async () => {
    browser = await launchChromium();
    t = await startTestApp();
    base = await t.app.listen({ port: 0, host: "127.0.0.1" });
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
  });

  it("lists the application's jobs newest first and updates them live as they start, move and finish", async () => {
    const tenant = await seedTenant(t.app);
    const other = await seedTenant(t.app);
    const { page, consoleErrors } = await newDashboardPage(browser);
    try {
      const first = await startJob(t.app, tenant, { maxSteps: 12 });
      await openDashboard(page, base, tenant.clientKey);
      expect(new URL(page.url()).hash).toBe("#jobs");
      await waitForText(page, "#connection", "live");
      await waitForRows(page, 1, JOB_ROWS);
      const [firstRow] = await rows(page, JOB_ROWS);
      expect([...firstRow!.slice(0, 6), firstRow![7]]).toEqual([
        tenant.expert.key,
        "queued",
        "claude-sonnet-4-5",
        "0 / 12",
        "0",
        "–",
        first.id,
      ]);
      expect(firstRow![6]).toMatch(/^(just now|\d+ s ago)$/);

      const second = await startJob(t.app, tenant, { model: "claude-haiku-4-5" });
      await startJob(t.app, other);
      await waitForRows(page, 2, JOB_ROWS);
      expect((await rows(page, JOB_ROWS)).map((row) => row[7])).toEqual([second.id, first.id]);

      await postCheckpoint(t.app, tenant, first.id, { stepNumber: 1, status: "init", totalTokens: 1200 });
      await waitForText(page, `${JOB_ROWS}[data-job-id="${first.id}"] td:nth-child(2)`, "processing");
      await waitForText(page, `${JOB_ROWS}[data-job-id="${first.id}"] td:nth-child(4)`, "1 / 12");
      await waitForText(page, `${JOB_ROWS}[data-job-id="${first.id}"] td:nth-child(5)`, "1,200");
      await postCheckpoint(t.app, tenant, first.id, { stepNumber: 2, status: "completed", totalTokens: 2000 });
      await waitForText(page, `${JOB_ROWS}[data-job-id="${first.id}"] td:nth-child(2)`, "completed");
      expect(await page.textContent("#jobs-range")).toBe("1–2 of 2");
      await screenshot(page, "dashboard-job-list");

      // Filters: by status, then by expert key.
      await page.selectOption("#jobs-status", "completed");
      await waitForRows(page, 1, JOB_ROWS);
      expect((await rows(page, JOB_ROWS))[0]![7]).toBe(first.id);
      const third = await startJob(t.app, tenant);
      await postCheckpoint(t.app, tenant, third.id, { stepNumber: 1, status: "completed" });
      // A job that comes to pass the filter joins the page.
      await waitForRows(page, 2, JOB_ROWS);
      expect((await rows(page, JOB_ROWS)).map((row) => row[7])).toEqual([third.id, first.id]);
      await page.selectOption("#jobs-status", "");
      await page.fill("#jobs-filter", "no-such-expert");
      await page.click("#jobs-filters button[type=submit]");
      await waitForRows(page, 0, JOB_ROWS);
      expect(await page.isVisible("#jobs-empty")).toBe(true);

      // A row opens its job; "All jobs" comes back to the list.
      await page.fill("#jobs-filter", "");
      await page.click("#jobs-filters button[type=submit]");
      await waitForRows(page, 3, JOB_ROWS);
      await page.click(`${JOB_ROWS}[data-job-id="${first.id}"] a`);
      await waitForText(page, "#job-status", "completed");
      expect(new URL(page.url()).hash).toBe(`#job=${first.id}`);
      await page.click(".back a");
      await waitForRows(page, 3, JOB_ROWS);
      expect(await page.isHidden("#job-view")).toBe(true);
      expect(await cspViolations(page)).toEqual([]);
      expect(consoleErrors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 90_000);

  it("pages through the jobs, 20 at a time", async () => {
    const tenant = await seedTenant(t.app);
    const { page, consoleErrors } = await newDashboardPage(browser, { width: 390, height: 844 });
    try {
      const jobs = [];
      for (let index = 0; index < 23; index++) jobs.push(await startJob(t.app, tenant));
      await openDashboard(page, base, tenant.clientKey);
      await waitForRows(page, 20, JOB_ROWS);
      expect(await page.textContent("#jobs-range")).toBe("1–20 of 23");
      expect(await page.isDisabled("#jobs-previous")).toBe(true);
      await screenshot(page, "dashboard-job-list-phone");
      await page.click("#jobs-next");
      await waitForRows(page, 3, JOB_ROWS);
      expect(await page.textContent("#jobs-range")).toBe("21–23 of 23");
      expect((await rows(page, JOB_ROWS)).map((row) => row[7])).toEqual(
        jobs
          .slice(0, 3)
          .reverse()
          .map((job) => job.id),
      );
      expect(await page.isDisabled("#jobs-next")).toBe(true);
      await page.click("#jobs-previous");
      await waitForRows(page, 20, JOB_ROWS);
      // Phone width: nothing wider than the screen but the tables' own scroll boxes.
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      expect(consoleErrors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 90_000);
});
