import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ACTION_CONTENT_FIELDS, withoutActionContent, type CheckpointAction } from "../../../src/modules/checkpoints/checkpoint-action.ts";
import { startTestApp, type TestApp } from "../../helpers/app.ts";

/** Every action shape with each large field, plus the ones that keep theirs. */
const actions: CheckpointAction[] = [
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
] as CheckpointAction[];

describe("the stored light action (exclude=actionContent) matches withoutActionContent", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it("for every action shape: the trigger's function leaves out exactly ACTION_CONTENT_FIELDS, NULL when nothing would be left out", async () => {
    for (const action of actions) {
      const [row] = await t.app.prisma.$queryRaw<Array<{ light: string | null }>>`
        SELECT checkpoint_action_light(${JSON.stringify(action)}::json)::text AS light`;
      const expected = withoutActionContent(action);
      const hasContent = action.type !== "interactiveTool" && ACTION_CONTENT_FIELDS.some((field) => field in action);
      expect(row!.light === null, action.type).toBe(!hasContent);
      expect(JSON.parse(row!.light ?? JSON.stringify(action)), action.type).toEqual(expected);
    }
  });
});
