import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ACTION_CONTENT_FIELDS,
  lightActionText,
  withoutActionContent,
  type CheckpointAction,
} from "../../../src/modules/checkpoints/checkpoint-action.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";

/** Every action shape with each large field, plus the ones that keep theirs. */
const actions = [
  { type: "readTextFile", path: "notes.md", content: "x".repeat(3 * 1024 * 1024) },
  { type: "editTextFile", path: "a.ts", newText: "new é 東京", oldText: 'old \\ "quoted"' },
  { type: "attemptCompletion", result: "the answer\u2028with a line separator" },
  { type: "testUrl", results: [{ url: "https://example.com", status: 200 }] },
  { type: "listDirectory", path: ".", items: [{ name: "a", type: "file" }] },
  { type: "generalTool", skillName: "s", toolName: "t", args: { deep: { a: [1, 2] } }, result: [{ type: "textPart", text: "r" }] },
  { type: "interactiveTool", skillName: "s", toolName: "askUser", args: { question: "Which?" } },
  { type: "think", thought: "nothing large here" },
  { type: "init" },
  { type: "error", error: "No thought found" },
  // A tool's name becomes the action's type: U+0000 and lone surrogates, which Postgres text cannot hold.
  { type: "generalTool", skillName: "s\u0000", toolName: "t\ud83d", args: { q: "\u0000" }, result: [{ type: "textPart", text: "\udc00" }] },
  { type: "custom\u0000tool\ud83d", path: "p\u0000", content: "c\ud83d" },
  { type: "interactive\u0000Tool", args: { question: "not the interactive tool: its args go" } },
] as CheckpointAction[];

const hasContent = (action: CheckpointAction) =>
  action.type !== "interactiveTool" && ACTION_CONTENT_FIELDS.some((field) => field in action);
const storable = (action: CheckpointAction) => !/\\u(0000|[dD][89a-fA-F])/.test(JSON.stringify(action));

describe("the stored light action (exclude=actionContent)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it("is withoutActionContent's JSON text, or null when nothing would be left out", () => {
    for (const action of actions) {
      const text = lightActionText(action);
      expect(text === null, action.type).toBe(!hasContent(action));
      expect(JSON.parse(text ?? JSON.stringify(action)), action.type).toEqual(withoutActionContent(action));
    }
  });

  it("the migration's backfill makes the same text where Postgres can read the action, and skips the rest", async () => {
    const migration = await readFile(
      path.resolve(import.meta.dirname, "../../../prisma/migrations/20261202060500_checkpoint_action_light/migration.sql"),
      "utf8",
    );
    const update = migration.slice(migration.indexOf("UPDATE"));
    const backfill = update
      .replace(/^UPDATE "checkpoint" SET "action_light" = /, "SELECT ")
      .replace(/\n  WHERE /, ' AS light FROM (SELECT $1::json AS "action") AS checkpoint WHERE ')
      .replace(/;\s*$/, "");
    for (const action of actions) {
      const rows = await t.app.prisma.$queryRawUnsafe<Array<{ light: string | null }>>(
        backfill.replace("AS light", "::text AS light"),
        JSON.stringify(action),
      );
      if (!hasContent(action) || !storable(action)) {
        expect(rows, action.type).toEqual([]);
        continue;
      }
      expect(JSON.parse(rows[0]!.light!), action.type).toEqual(JSON.parse(lightActionText(action)!));
    }
  });
});
