/**
 * What the remembered-conversation check costs (`ConversationCache.hash`): a post's conversation text,
 * fresh from `JSON.stringify`, compared with the text remembered from the post before, as the server does
 * (`json.slice(0, remembered.length) === remembered`), beside the `JSON.stringify` that produces it and a
 * `Buffer.equals` of the same number of bytes (memcmp: the least an exact comparison costs). Each run
 * builds fresh strings, as two posts do; median of the runs. One-byte (ASCII) and two-byte (any character
 * past U+00FF, e.g. an emoji) conversations, since V8 stores the two differently. And what the server does
 * now instead: `sameJson` of the posted messages, fresh from JSON.parse, with the remembered parsed ones.
 *
 *   node --import tsx bench/prefix-compare.ts [--runs 30]     writes bench/results/<date>-prefix-compare.json
 */
import { writeFile } from "node:fs/promises";
import os from "node:os";
import { parseArgs } from "node:util";
import { sameJson } from "../src/modules/checkpoints/message-store.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "30" } } });
const runs = Number(values.runs);

const median = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
const round = (ms: number) => Math.round(ms * 1000) / 1000;

function conversation(messages: number, text: string): unknown[] {
  return Array.from({ length: messages }, (_, index) => ({
    role: index % 2 === 0 ? "user" : "assistant",
    content: [{ type: "text", text: `${text.repeat(Math.ceil(950 / text.length))} ${index}` }],
  }));
}

function measure(messages: number, text: string) {
  const previous = conversation(messages, text);
  const posted = [...structuredClone(previous), { role: "assistant", content: text.repeat(2000 / text.length) }];
  const stringify: number[] = [];
  const compare: number[] = [];
  const memcmp: number[] = [];
  const parsedCompare: number[] = [];
  let equal = 0;
  for (let run = 0; run < runs; run++) {
    const remembered = JSON.stringify(previous).slice(0, -1);
    let started = performance.now();
    const json = JSON.stringify(posted);
    stringify.push(performance.now() - started);
    started = performance.now();
    if (json.slice(0, remembered.length) === remembered) equal++;
    compare.push(performance.now() - started);
    const left = Buffer.from(remembered, "utf16le");
    const right = Buffer.from(json.slice(0, remembered.length), "utf16le");
    started = performance.now();
    if (!left.equals(right)) throw new Error("texts differ");
    memcmp.push(performance.now() - started);
    const rememberedMessages = JSON.parse(JSON.stringify(previous)) as unknown[];
    const postedMessages = JSON.parse(json) as unknown[];
    started = performance.now();
    for (let index = 0; index < rememberedMessages.length; index++) {
      if (!sameJson(postedMessages[index], rememberedMessages[index])) throw new Error("messages differ");
    }
    parsedCompare.push(performance.now() - started);
  }
  if (equal !== runs) throw new Error("the remembered text is not a prefix");
  const json = JSON.stringify(posted);
  return {
    messages: messages + 1,
    chars: json.length,
    twoByte: /[^\u0000-\u00ff]/.test(text),
    stringifyMs: round(median(stringify)),
    sliceEqualsMs: round(median(compare)),
    bufferEqualsMs: round(median(memcmp)),
    sameJsonMs: round(median(parsedCompare)),
  };
}

const rows = [];
for (const text of ["lorem ipsum ", "lorem ipsum \u{1F600} "]) for (const messages of [200, 2000]) rows.push(measure(messages, text));
console.table(rows);

const at = new Date().toISOString();
const file = `bench/results/${at.slice(0, 16).replace(/:/g, "")}-prefix-compare.json`;
await writeFile(
  file,
  JSON.stringify(
    { at, node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, loadAverage: os.loadavg(), runs, rows },
    null,
    2,
  ) + "\n",
);
console.log(`results: ${file}`);
