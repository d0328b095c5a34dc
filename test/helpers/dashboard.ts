import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { chromiumArgs } from "./chromium.ts";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const hasChromium = existsSync(CHROMIUM);
const ARTIFACTS = path.join(import.meta.dirname, "../../test-artifacts");

if (!hasChromium) {
  // CI installs Chromium and sets REQUIRE_CHROMIUM, so there a missing browser fails instead of skipping.
  if (process.env.REQUIRE_CHROMIUM) throw new Error(`REQUIRE_CHROMIUM is set but there is no Chromium at ${CHROMIUM}`);
  console.warn(`Skipping the dashboard browser tests: no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH).`);
}

export const describeTitle = (title: string) => `${title}${hasChromium ? "" : ` (skipped: no Chromium at ${CHROMIUM})`}`;

export const launchChromium = (): Promise<Browser> => chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs });

export const waitForText = (page: Page, selector: string, text: string, timeout = 20_000) =>
  page.waitForFunction(([selector, text]) => document.querySelector(selector!)?.textContent === text, [selector, text] as const, {
    timeout,
  });

export const waitForRows = (page: Page, count: number, selector = "#timeline tbody tr", timeout = 20_000) =>
  page.waitForFunction(([selector, count]) => document.querySelectorAll(selector as string).length === count, [selector, count] as const, {
    timeout,
  });

export const rows = (page: Page, selector = "#timeline tbody tr") =>
  page.$$eval(selector, (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));

/** A page that records console errors and failed requests, and CSP violations in `window.cspViolations`. */
export async function newDashboardPage(browser: Browser, viewport = { width: 1280, height: 860 }) {
  const page = await browser.newPage({ viewport });
  const consoleErrors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(`pageerror: ${error.message}`));
  await page.addInitScript(() => {
    const violations: string[] = [];
    (window as unknown as { cspViolations: string[] }).cspViolations = violations;
    document.addEventListener("securitypolicyviolation", (event) => violations.push(`${event.violatedDirective} ${event.blockedURI}`));
  });
  return { page, consoleErrors };
}

export const cspViolations = (page: Page) => page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations);

/** Opens the dashboard with the key given (and a job, when `jobId` is set), as a person would. */
export async function openDashboard(page: Page, base: string, key: string, jobId?: string) {
  await page.goto(`${base}/dashboard/${jobId ? `#job=${jobId}` : ""}`);
  await page.fill("#api-key", key);
  await page.click("#watch button[type=submit]");
}

export async function screenshot(page: Page, name: string, fullPage = true) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage });
}
