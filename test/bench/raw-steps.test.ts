import { describe, expect, it } from "vitest";
import { rawSteps } from "../../bench/lib/db.ts";

/** What the server stores as a checkpoint's conversation size: its messages' texts as a JSON array (checkpoints.service.ts). */
const arrayBytes = (texts: string[]) => Buffer.byteLength(`[${texts.join(",")}]`);

describe("bench raw steps", () => {
  it("give every checkpoint its whole conversation, stored once, with the sizes the server stores", () => {
    const steps = rawSteps(30, (n) => (n <= 10 ? 10_000 : 1_024));
    const stored: string[] = [];
    for (const [index, step] of steps.entries()) {
      expect(step.ordinals).toEqual(step.texts.map((_, offset) => stored.length + offset + 1));
      stored.push(...step.texts);
      expect(JSON.parse(step.messageRuns)).toEqual([[1, stored.length]]);
      expect(step.messagesBytes).toBe(arrayBytes(stored));
      expect(step.detailBytes).toBe(
        [step.action, step.newMessages, step.toolCall, step.toolResult].reduce((sum, text) => sum + Buffer.byteLength(text), 0),
      );
      expect(step.stepNumber).toBe(index + 1);
    }
    // Ten steps of ~10 KB, then twenty of ~1 KB (~0.9 KB of new messages each): the conversation grows by that much each step.
    expect(steps[9]!.messagesBytes).toBeGreaterThan(100_000);
    expect(steps[29]!.messagesBytes - steps[9]!.messagesBytes).toBeGreaterThan(15_000);
    expect(steps[29]!.messagesBytes - steps[9]!.messagesBytes).toBeLessThan(22_000);
    expect(new Set(steps.map((step) => step.checkpointId)).size).toBe(30);
  });

  it("start a conversation of its own, with its own opening messages, at every run", () => {
    const steps = rawSteps(6, 1_024, { runLength: 2 });
    expect(steps.map((step) => step.stepNumber)).toEqual([1, 2, 1, 2, 1, 2]);
    expect(new Set(steps.map((step) => step.runId)).size).toBe(3);
    let ordinal = 0;
    for (const step of steps) {
      const first = step.stepNumber === 1 ? ordinal + 1 : JSON.parse(step.messageRuns)[0][0];
      ordinal += step.texts.length;
      expect(JSON.parse(step.messageRuns)).toEqual([[first, ordinal]]);
    }
    // Each run's first step carries its instruction and query (new ids, so new texts) and its step's two messages.
    const openings = steps.filter((step) => step.stepNumber === 1).map((step) => step.texts[0]);
    expect(new Set(openings).size).toBe(3);
    expect(steps[2]!.texts).toHaveLength(4);
    expect(steps[2]!.messagesBytes).toBe(arrayBytes(steps[2]!.texts));
  });
});
