import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/app.ts";
import { chromiumArgs } from "../helpers/chromium.ts";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium && process.env.REQUIRE_CHROMIUM) throw new Error(`REQUIRE_CHROMIUM is set but there is no Chromium at ${CHROMIUM}`);

// What the earlier docs page (Scalar) showed: third-party services, not this API.
const thirdPartyButtons = ["Ask AI", "Generate MCP", "Deploy"];
const studioTags = ["expert jobs", "checkpoints", "runtime"];

describe("the /docs page", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(async () => t.close());

  it("loads every script and style from this server, and none of them pulls a font or style from elsewhere", async () => {
    const page = await t.app.inject({ method: "GET", url: "/docs/" });
    expect(page.statusCode).toBe(200);
    const references = [...page.body.matchAll(/(?:href|src)="([^"]+)"/g)].map((match) => match[1]!);
    expect(references.length).toBeGreaterThanOrEqual(4);
    for (const reference of references) {
      expect(reference, "a relative URL").toMatch(/^\.\//);
      const asset = await t.app.inject({ method: "GET", url: new URL(reference, "http://server/docs/").pathname });
      expect(asset.statusCode, reference).toBe(200);
      if (reference.endsWith(".css")) {
        expect(asset.body, reference).not.toMatch(/@import|url\(\s*["']?(https?:)?\/\//);
      }
    }
  });

  it("lists the studio API first and operations last, every operation under a declared tag", async () => {
    const document = (await t.app.inject({ method: "GET", url: "/openapi.json" })).json() as {
      tags: Array<{ name: string }>;
      paths: Record<string, Record<string, { tags?: string[] }>>;
    };
    const declared = document.tags.map((tag) => tag.name);
    expect(declared.slice(0, 3)).toEqual(studioTags);
    expect(declared.at(-1)).toBe("operations");
    const used = new Set(Object.values(document.paths).flatMap((item) => Object.values(item).flatMap((operation) => operation.tags ?? [])));
    expect([...used].filter((tag) => !declared.includes(tag))).toEqual([]);
  });

  describe.skipIf(!hasChromium)(
    `in Chromium with every other origin blocked${hasChromium ? "" : ` (skipped: no Chromium at ${CHROMIUM})`}`,
    () => {
      it("renders the reference offline: studio API first, no third-party buttons, no request leaves the server", async () => {
        const { chromium } = await import("playwright-core");
        const base = await t.app.listen({ port: 0, host: "127.0.0.1" });
        const browser = await chromium.launch({ executablePath: CHROMIUM, args: chromiumArgs });
        try {
          const page = await browser.newPage();
          const elsewhere: string[] = [];
          const problems: string[] = [];
          // As if offline: anything not from this server fails, and is recorded.
          await page.route("**/*", (route) => {
            const url = route.request().url();
            if (url.startsWith(base) || url.startsWith("data:")) return route.continue();
            elsewhere.push(url);
            return route.abort("internetdisconnected");
          });
          page.on("console", (message) => {
            if (message.type() === "error" || /Content Security Policy|Refused to/i.test(message.text())) problems.push(message.text());
          });
          page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
          await page.goto(`${base}/docs/`, { waitUntil: "domcontentloaded" });
          // Generous: rendering on a loaded 2-core CI host can take many seconds.
          await page.getByText("The database is reachable").first().waitFor({ timeout: 60_000 });
          const sections = await page.$$eval(".opblock-tag", (headings) => headings.map((heading) => heading.getAttribute("data-tag")));
          expect(sections.slice(0, 3)).toEqual(studioTags);
          expect(sections.at(-1)).toBe("operations");
          const text = await page.evaluate(() => document.body.innerText);
          for (const button of thirdPartyButtons) expect(text).not.toContain(button);
          const fonts = await page.evaluate(() =>
            [...document.fonts].filter((font) => font.status !== "unloaded").map((font) => font.family),
          );
          expect(fonts).toEqual([]);
          expect(elsewhere).toEqual([]);
          expect(problems).toEqual([]);
        } finally {
          await browser.close();
        }
      }, 150_000);
    },
  );
});
