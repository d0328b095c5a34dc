/**
 * The typed client's SSE parser (packages/client/src/sse.ts) on multi-MB events: time to parse each
 * scenario's bytes, fed in chunks as a socket delivers them. Prints the median of several runs.
 *
 *   node --import tsx bench/sse-parser.ts [--runs 15]
 *
 * Written to decide whether `eventsource-parser` may replace the hand-written parser (issue 12: only if
 * it is not measurably slower on multi-MB events); see bench/NOTES.md for the figures.
 */
import { parseArgs } from "node:util";
import { parseEventStream } from "../packages/client/src/sse.ts";
import { median } from "./lib/stats.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "15" } } });
const runs = Number(values.runs);

/** JSON-like text of `bytes` characters: what a checkpoint's data line looks like. */
function jsonText(bytes: number, seed: number): string {
  const words = ['"type":"textPart"', '"text":"', "lorem ipsum dolor sit amet", "\\n", '\\"quoted\\"', "résumé ✓", "0123456789"];
  let text = `{"seed":${seed},"parts":[`;
  for (let index = 0; text.length < bytes; index++) text += words[(index * 7 + seed) % words.length];
  return `${text.slice(0, bytes - 3)}"]}`;
}

function eventStream(events: number, eventBytes: number): Uint8Array {
  let text = "";
  for (let index = 1; index <= events; index++) text += `id: ${index}\nevent: message\ndata: ${jsonText(eventBytes, index)}\n\n`;
  return new TextEncoder().encode(text + ': ping\n\nevent: complete\ndata: {"status":"completed"}\n\n');
}

function chunked(bytes: Uint8Array, chunkBytes: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) chunks.push(bytes.subarray(offset, offset + chunkBytes));
  return chunks;
}

const scenarios = [
  { name: "one 8 MiB event, 64 KiB chunks", bytes: eventStream(1, 8 * 1024 * 1024), chunk: 64 * 1024 },
  { name: "one 8 MiB event, 1 KiB chunks", bytes: eventStream(1, 8 * 1024 * 1024), chunk: 1024 },
  { name: "20 events of 2 MiB, 16 KiB chunks", bytes: eventStream(20, 2 * 1024 * 1024), chunk: 16 * 1024 },
  { name: "10,000 events of 1 KiB, 64 KiB chunks", bytes: eventStream(10_000, 1024), chunk: 64 * 1024 },
];

async function parseOnce(chunks: Uint8Array[]): Promise<{ ms: number; events: number; dataChars: number }> {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  const started = performance.now();
  let events = 0;
  let dataChars = 0;
  for await (const item of parseEventStream(body)) {
    if (item.kind === "event") {
      events++;
      dataChars += item.data.length;
    }
  }
  return { ms: performance.now() - started, events, dataChars };
}

for (const scenario of scenarios) {
  const chunks = chunked(scenario.bytes, scenario.chunk);
  await parseOnce(chunks); // warm-up
  const times: number[] = [];
  let last = { events: 0, dataChars: 0 };
  for (let run = 0; run < runs; run++) {
    const result = await parseOnce(chunks);
    times.push(result.ms);
    last = result;
  }
  const ms = median(times);
  const mib = scenario.bytes.length / 1024 / 1024;
  console.log(
    `${scenario.name.padEnd(40)} ${ms.toFixed(1).padStart(8)} ms  ${(mib / (ms / 1000)).toFixed(0).padStart(5)} MiB/s  (${last.events} events, ${mib.toFixed(1)} MiB)`,
  );
}
