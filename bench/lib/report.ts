import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

type Results = Record<string, any>;

const fmt = (value: number | undefined | null, digits = 1) =>
  value === undefined || value === null || Number.isNaN(value)
    ? "–"
    : value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
const mib = (bytes: number) => `${fmt(bytes / 2 ** 20, 2)} MiB`;
const met = (ok: boolean | undefined) => (ok === undefined ? "–" : ok ? "✅ met" : "❌ not met");

/** Bytes in KB, or MB from 1 MB on (decimal units). */
const bytesText = (bytes: number | undefined) =>
  bytes === undefined ? "–" : bytes >= 1e6 ? `${fmt(bytes / 1e6, 2)} MB` : `${fmt(bytes / 1000, bytes < 10_000 ? 1 : 0)} KB`;
const kb = (bytes: number | undefined) => (bytes === undefined ? "–" : `${fmt(bytes / 1000, bytes < 10_000 ? 1 : 0)} KB`);

/**
 * P2 and P3 at every event size measured. Runs before issue 10 measured one size (events of one-step
 * conversations, called ~3 KB then; measured, they are ~5.5 KB) and kept its figures at the top level.
 */
export const p2Sizes = (r: Results): any[] => (r.p2 ? (r.p2.sizes ?? [{ name: "~5 KB", ...r.p2 }]) : []);
export const p3Sizes = (r: Results): any[] => (r.p3 ? (r.p3.sizes ?? [{ name: "~5 KB", ...r.p3 }]) : []);
const TIMELINE = "messages,newMessages,toolCall,toolResult,actionContent";
/** An event size as the clients measured it (p50), where the run recorded it; else its name. */
const measuredSize = (size: any) =>
  size.eventBytes?.p50 ? `${size.name} (measured ${kb(size.eventBytes.p50)})` : `${size.name} (size not recorded)`;

/** The verdict of every target, shared by the summary table and the history. */
export function verdicts(results: Results) {
  // The targets of P2 and P3 are set on the smallest events, as they were first measured.
  const r: Results = { ...results, p2: p2Sizes(results)[0], p3: p3Sizes(results)[0] };
  const p1 = r.p1?.levels.find((level: any) => level.concurrency === 32);
  const p2one = r.p2?.levels.find((level: any) => level.subscribers === 1);
  const p2many = r.p2?.levels.find((level: any) => level.subscribers === 1_000);
  const replayOne = r.replay?.levels.find((level: any) => level.subscribers === 1);
  const replayMost = r.replay?.levels.at(-1);
  const timeline = r.corpus?.reads.find((read: any) => read.target);
  const lastPage = r.p4?.list.cases.find((c: any) => c.name.includes("last page") && c.name.includes("exclude"));
  const firstPage = r.p4?.list.cases[0];
  return {
    p1: p1 && { ratio: p1.ratio, ok: p1.ratio >= 0.6 },
    p2one: p2one && { p99: p2one.latency.p99, bound: r.p2.raw.p99 + 5, ok: p2one.latency.p99 <= r.p2.raw.p99 + 5 },
    p2many: p2many && { p99: p2many.latency.p99, ok: p2many.latency.p99 <= 50 },
    // RSS can fall while streams open (a collection of earlier garbage): then the run measured nothing.
    p3rss: r.p3 && r.p3.perStreamKiB > 0 ? { value: r.p3.perStreamKiB, ok: r.p3.perStreamKiB <= 30 } : undefined,
    p3p99: r.p3 && { value: r.p3.latency.p99, ok: r.p3.latency.p99 <= 1_000 && r.p3.missing === 0 },
    p4bytes: r.p4 && { value: r.p4.longJob.storedBytes, ok: r.p4.longJob.storedBytes <= 10_000_000 },
    p4first: firstPage && { value: firstPage.latency.p50, ok: firstPage.latency.p50 <= 30 },
    p4last: lastPage && { value: lastPage.latency.p50, ok: lastPage.latency.p50 <= 30 },
    replayOne: replayOne && { ratio: r.replay.oneVsRaw, ok: r.replay.oneVsRaw >= 0.5 && replayOne.incomplete === 0 },
    replayMost: replayMost &&
      replayOne && {
        subscribers: replayMost.subscribers,
        ratio: r.replay.slowestVsOne,
        ok: r.replay.slowestVsOne <= 3 && replayMost.incomplete === 0,
      },
    // P5: every shipped server design with notifications on, at every level, against the same server with them
    // off; designs the bench runs for the report only (`target: false`) are listed apart.
    p5: (() => {
      const levels: any[] = r.p5?.levels ?? [];
      const on = levels.flatMap((level) =>
        level.variants
          .filter((variant: any) => variant.vsOff !== undefined && variant.target !== false)
          .map((variant: any) => ({ ...variant, concurrency: level.concurrency })),
      );
      if (on.length === 0) return undefined;
      const worst = on.reduce((a: any, b: any) => (b.vsOff < a.vsOff ? b : a));
      const reported = levels.flatMap((level) =>
        level.variants
          .filter((variant: any) => variant.target === false)
          .map((variant: any) => ({ design: variant.design, concurrency: level.concurrency, vsOff: variant.vsOff })),
      );
      return { ratio: worst.vsOff, concurrency: worst.concurrency, design: worst.design, ok: worst.vsOff >= 0.9, reported };
    })(),
    floor: r.floor && { ratio: r.floor.serverVsFloor, ok: r.floor.serverVsFloor >= 0.8 },
    length: r.length && { growth: r.length.beyondFloorGrowth, ok: r.length.beyondFloorGrowth <= 1.5 },
    timeline: timeline && {
      bytes: timeline.responseBytes,
      p50: timeline.latency.p50,
      ok: timeline.responseBytes <= timeline.target.bytes && timeline.latency.p50 <= timeline.target.p50Ms,
    },
  };
}

function chart(r: Results): string {
  const width = 960;
  const height = 360;
  const panel = (x: number, title: string, body: string) =>
    `<g transform="translate(${x},0)"><text x="230" y="24" text-anchor="middle" font-size="15" font-weight="bold">${title}</text>${body}</g>`;
  const bars = (
    groups: Array<{ label: string; values: Array<{ value: number; color: string; text: string }> }>,
    max: number,
    lines: Array<{ value: number; color: string; text: string }> = [],
  ) => {
    const top = 50;
    const bottom = 300;
    const left = 50;
    const plotWidth = 400;
    const scale = (value: number) => bottom - (Math.min(value, max) / max) * (bottom - top);
    const groupWidth = plotWidth / groups.length;
    let svg = `<line x1="${left}" y1="${bottom}" x2="${left + plotWidth}" y2="${bottom}" stroke="#333"/>`;
    for (let tick = 0; tick <= 4; tick++) {
      const value = (max / 4) * tick;
      svg += `<text x="${left - 6}" y="${scale(value) + 4}" text-anchor="end" font-size="11" fill="#555">${fmt(value, 0)}</text>`;
      svg += `<line x1="${left}" y1="${scale(value)}" x2="${left + plotWidth}" y2="${scale(value)}" stroke="#eee"/>`;
    }
    groups.forEach((group, index) => {
      const barWidth = (groupWidth - 24) / group.values.length;
      group.values.forEach((bar, barIndex) => {
        const x = left + index * groupWidth + 12 + barIndex * barWidth;
        const y = scale(bar.value);
        svg += `<rect x="${x}" y="${y}" width="${barWidth - 4}" height="${bottom - y}" fill="${bar.color}"/>`;
        svg += `<text x="${x + (barWidth - 4) / 2}" y="${y - 4}" text-anchor="middle" font-size="10">${bar.text}</text>`;
      });
      svg += `<text x="${left + index * groupWidth + groupWidth / 2}" y="${bottom + 18}" text-anchor="middle" font-size="12">${group.label}</text>`;
    });
    for (const line of lines) {
      svg += `<line x1="${left}" y1="${scale(line.value)}" x2="${left + plotWidth}" y2="${scale(line.value)}" stroke="${line.color}" stroke-dasharray="6,4"/>`;
      svg += `<text x="${left + plotWidth}" y="${scale(line.value) - 4}" text-anchor="end" font-size="11" fill="${line.color}">${line.text}</text>`;
    }
    return svg;
  };
  const legend = (x: number, items: Array<[string, string]>) =>
    items
      .map(
        ([color, label], index) =>
          `<rect x="${x + index * 150}" y="330" width="12" height="12" fill="${color}"/><text x="${x + index * 150 + 16}" y="340" font-size="12">${label}</text>`,
      )
      .join("");

  let left = "";
  if (r.p1) {
    const max = Math.max(...r.p1.levels.flatMap((level: any) => [level.server.perSecond, level.raw.perSecond])) * 1.15;
    left = bars(
      r.p1.levels.map((level: any) => ({
        label: `${level.concurrency} runtime${level.concurrency > 1 ? "s" : ""} (${fmt(level.ratio, 2)}×)`,
        values: [
          { value: level.server.perSecond, color: "#2b6cb0", text: fmt(level.server.perSecond, 0) },
          { value: level.raw.perSecond, color: "#a0aec0", text: fmt(level.raw.perSecond, 0) },
        ],
      })),
      max,
    );
    left += legend(60, [
      ["#2b6cb0", "server (HTTP)"],
      ["#a0aec0", "raw pg, same tx"],
    ]);
  }
  let right = "";
  const p2 = p2Sizes(r)[0];
  if (p2) {
    const max = Math.max(60, ...p2.levels.map((level: any) => level.latency.p99)) * 1.15;
    right = bars(
      p2.levels.map((level: any) => ({
        label: `${fmt(level.subscribers, 0)} subscriber${level.subscribers > 1 ? "s" : ""}`,
        values: [
          { value: level.latency.p50, color: "#38a169", text: fmt(level.latency.p50, 1) },
          { value: level.latency.p99, color: "#dd6b20", text: fmt(level.latency.p99, 1) },
        ],
      })),
      max,
      [
        { value: 50, color: "#c53030", text: "target p99 at 1,000: 50 ms" },
        { value: p2.raw.p99, color: "#4a5568", text: `raw NOTIFY p99 ${fmt(p2.raw.p99, 1)} ms` },
      ],
    );
    right += legend(60, [
      ["#38a169", "p50 (ms)"],
      ["#dd6b20", "p99 (ms)"],
    ]);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${panel(0, "P1 ingest: checkpoints/s", left)}
${panel(480, `P2 delivery, ${p2?.name ?? ""} events: commit → SSE event (ms)`, right)}
</svg>
`;
}

/** A commit a results file names, marked when this repository's history does not have it (work squashed before it was merged). */
function commitText(commit: string | undefined): string {
  if (!commit) return "";
  try {
    execFileSync("git", ["cat-file", "-e", `${commit}^{commit}`], { stdio: "ignore" });
    return commit.slice(0, 8);
  } catch {
    return `${commit.slice(0, 8)} (not in history)`;
  }
}

async function history(resultsDir: string): Promise<string> {
  const files = (await readdir(resultsDir)).filter((file) => /^\d{4}-\d\d-\d\dT\d{4}(-quick)?\.json$/.test(file)).sort();
  const rows: string[] = [];
  for (const file of files) {
    const r = JSON.parse(await readFile(path.join(resultsDir, file), "utf8"));
    const v = verdicts(r);
    const mark = (verdict: { ok: boolean } | undefined, text: string) => (verdict ? `${text} ${verdict.ok ? "✅" : "❌"}` : "–");
    const loads = (r.conditions ?? []).map((c: any) => c.loadavg[0] as number);
    rows.push(
      `| ${file.replace(".json", "")} | ${r.mode} | ${commitText(r.machine.commit)} | ${mark(v.p1, `${fmt(v.p1?.ratio, 2)}×`)} | ${mark(v.p2one, fmt(v.p2one?.p99))} | ${mark(v.p2many, fmt(v.p2many?.p99))} | ${mark(v.p3rss, fmt(v.p3rss?.value))} | ${mark(v.p3p99, fmt(v.p3p99?.value, 0))} | ${mark(v.p4bytes, v.p4bytes ? mib(v.p4bytes.value) : "")} | ${mark(v.p4last, fmt(v.p4last?.value))} | ${mark(v.replayOne, `${fmt(v.replayOne?.ratio, 2)}×`)} | ${mark(v.replayMost, `${fmt(v.replayMost?.ratio, 2)}×`)} | ${mark(v.timeline, v.timeline ? `${kb(v.timeline.bytes)}, ${fmt(v.timeline.p50)} ms` : "")} | ${loads.length ? `${fmt(Math.min(...loads))}–${fmt(Math.max(...loads))}` : "–"} |`,
    );
  }
  return [
    "| run | mode | commit | P1 ratio at 32 | P2 p99 at 1 (ms) | P2 p99 at 1,000 (ms) | P3 KiB/stream | P3 p99 (ms) | P4 stored | P4 last page p50 (ms) | replay, 1 subscriber / raw | replay, slowest of 100 / one | timeline list | load average (1 min) during the run |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

export async function writeReport(r: Results, jsonFile: string, svgFile: string): Promise<void> {
  await writeFile(svgFile, chart(r));
  const v = verdicts(r);
  const rel = (file: string) => path.relative(process.cwd(), file);
  const out: string[] = [];
  out.push("# Benchmarks", "");
  out.push(
    `Generated by \`npm run bench${r.mode === "quick" ? " -- --quick" : ""}\` on ${r.date} (${r.mode} run, ${r.durationSeconds} s). ` +
      `Raw numbers: [\`${rel(jsonFile)}\`](${rel(jsonFile)}). This file is rewritten by every run; the notes at the end come from ` +
      "[`bench/NOTES.md`](bench/NOTES.md).",
    "",
  );
  out.push(
    "The server runs as its own process (`node --import tsx src/server.ts`, what `npm start` runs) on a throwaway PostgreSQL database, " +
      "set up through the admin API and driven over real HTTP by the bench process. Every measure has a raw-Postgres baseline " +
      "taken in the same run, interleaved with the server's runs, because this machine is shared and absolute times drift: " +
      "compare ratios, not milliseconds, across runs.",
    "",
  );
  const m = r.machine;
  out.push("## Machine and conditions", "");
  out.push(`- ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.os}; Node ${m.node}; PostgreSQL ${m.postgres} (local, default settings)`);
  out.push(`- Commit \`${m.commit ?? "unknown"}\` (plus the working tree at the time of the run)`);
  out.push(
    `- Load average (1/5/15 min) during the run: ${r.conditions.map((c: any) => c.loadavg.join("/")).join(" → ")}. ` +
      "The bench itself, the server, Postgres and the SSE client processes share these cores.",
  );
  const busy = [...new Set<string>(r.conditions.flatMap((c: any) => c.busy as string[]))].filter(
    (line) => !/bench\/run\.ts|run bench|src\/server\.ts|sse-worker/.test(line),
  );
  if (busy.length > 0)
    out.push(
      `- Other busy processes seen (CPU %, command): ${busy
        .slice(0, 8)
        .map((line) => `\`${line}\``)
        .join(", ")}`,
    );
  out.push("");

  out.push("## Summary", "");
  out.push("| Measure | Target | Result | Raw Postgres, same run | |", "|---|---|---|---|---|");
  if (r.p1) {
    const level = r.p1.levels.find((l: any) => l.concurrency === 32);
    out.push(
      `| P1 ingest, 32 concurrent runtimes | ≥ 0.6× raw | ${fmt(level.server.perSecond)} checkpoints/s (**${fmt(level.ratio, 2)}×**) | ${fmt(level.raw.perSecond)} tx/s | ${met(v.p1?.ok)} |`,
    );
  }
  if (v.p5) {
    const levels = r.p5.levels.map((level: any) => level.concurrency).join(" / ");
    out.push(
      `| P5 commit scaling, ${levels} runtimes over ${r.p5.instances} instances | notifications on ≥ 0.9× off, at every level | worst: **${fmt(v.p5.ratio, 2)}×** the server with notifications off (${v.p5.design}, ${v.p5.concurrency} runtimes) | see the P5 table | ${met(v.p5.ok)} |`,
    );
    for (const design of new Set(v.p5.reported.map((entry: any) => entry.design))) {
      const entries = v.p5.reported.filter((entry: any) => entry.design === design);
      out.push(
        `| P5, server ${design} | (report) | ${entries.map((entry: any) => `${fmt(entry.vsOff, 2)}×`).join(" / ")} the server with notifications off at ${entries.map((entry: any) => entry.concurrency).join(" / ")} runtimes | – | – |`,
      );
    }
  }
  if (r.floor) {
    out.push(
      `| Floor of an HTTP ingest path, ${r.floor.concurrency} runtimes | ≥ 0.8× the floor server | ${fmt(r.floor.server.perSecond)} checkpoints/s (**${fmt(r.floor.serverVsFloor, 2)}×** the floor's ${fmt(r.floor.floor.perSecond)}/s; ${fmt(r.floor.serverVsRaw, 2)}× raw) | ${fmt(r.floor.raw.perSecond)} tx/s (the floor server: ${fmt(r.floor.floorVsRaw, 2)}×) | ${met(v.floor?.ok)} |`,
    );
  }
  if (r.length) {
    const [first, last] = [r.length.rows[0], r.length.rows.at(-1)];
    out.push(
      `| Cost against length: server CPU per post beyond the floor's, step ${first.step} → ${last.step} | within 1.5× | ${fmt(first.beyondFloorMs, 2)} → ${fmt(last.beyondFloorMs, 2)} ms (**${fmt(r.length.beyondFloorGrowth, 2)}×**) | floor server: ${fmt(first.floorCpuMs, 2)} → ${fmt(last.floorCpuMs, 2)} ms | ${met(v.length?.ok)} |`,
    );
  }
  const p2s = p2Sizes(r);
  const p3s = p3Sizes(r);
  if (p2s.length > 0) {
    const p2 = p2s[0];
    const one = p2.levels.find((l: any) => l.subscribers === 1);
    const many = p2.levels.find((l: any) => l.subscribers === 1_000);
    if (one)
      out.push(
        `| P2 delivery p99, ${measuredSize(p2)} events, 1 subscriber | ≤ raw p99 + 5 ms (${fmt(v.p2one!.bound)} ms) | ${fmt(one.latency.p99)} ms (p50 ${fmt(one.latency.p50)}) | LISTEN/NOTIFY p99 ${fmt(p2.raw.p99)} ms (p50 ${fmt(p2.raw.p50)}) | ${met(v.p2one?.ok)} |`,
      );
    if (many)
      out.push(
        `| P2 delivery p99, ${measuredSize(p2)} events, 1,000 subscribers | ≤ 50 ms | ${fmt(many.latency.p99)} ms (p50 ${fmt(many.latency.p50)}) | LISTEN/NOTIFY p99 ${fmt(p2.raw.p99)} ms (1 listener) | ${met(v.p2many?.ok)} |`,
      );
    for (const size of p2s.slice(1)) {
      const at = (subscribers: number) => size.levels.find((l: any) => l.subscribers === subscribers);
      out.push(
        `| P2 delivery p99, ${size.name} events (measured ${kb(size.eventBytes.p50)}), 1 / 100 / 1,000 subscribers | (report) | ${[1, 100, 1_000].map((n) => fmt(at(n)?.latency.p99)).join(" / ")} ms | NOTIFY p99 ${fmt(size.raw.p99)} ms; NOTIFY + read of the event's row and conversation p99 ${fmt(size.rawRead.p99)} ms | – |`,
      );
    }
  }
  if (p3s.length > 0) {
    const p3 = p3s[0];
    out.push(
      `| P3 memory, ${fmt(p3.open, 0)} open streams | ≤ 30 KB per stream | ${p3.perStreamKiB > 0 ? `${fmt(p3.perStreamKiB)} KiB per stream` : "not measured: RSS fell while the streams opened (a garbage collection)"} | – (Postgres holds one LISTEN connection per instance) | ${met(v.p3rss?.ok)} |`,
    );
    out.push(
      `| P3 fan-out, ${fmt(p3.open, 0)} streams get one ${measuredSize(p3)} event | p99 ≤ 1 s | p99 ${fmt(p3.latency.p99, 0)} ms (p50 ${fmt(p3.latency.p50, 0)}, max ${fmt(p3.latency.max, 0)}) | LISTEN/NOTIFY p99 ${p2s[0] ? fmt(p2s[0].raw.p99) : "–"} ms (1 listener) | ${met(v.p3p99?.ok)} |`,
    );
    for (const size of p3s.slice(1)) {
      out.push(
        `| P3 fan-out, ${fmt(size.open, 0)} streams get one ${size.name} event (measured ${kb(size.eventBytes.p50)}) | (report) | p99 ${fmt(size.latency.p99, 0)} ms (p50 ${fmt(size.latency.p50, 0)}), ${size.missing} missed; server RSS at most ${fmt(size.rssMaxDuringEventsKiB / 1024, 0)} MiB | – | – |`,
      );
    }
  }
  if (r.replay) {
    const one = r.replay.levels.find((l: any) => l.subscribers === 1);
    const most = r.replay.levels.at(-1);
    if (one)
      out.push(
        `| Replay, 1 fresh subscriber, ${r.replay.steps}-step job (${fmt(r.replay.historyBytes / 1e6, 0)} MB of events) | ≥ 0.5× raw read rate | ${fmt(one.perSubscriber.MBps.p50)} MB/s (**${fmt(r.replay.oneVsRaw, 2)}×**) | raw read ${fmt(r.replay.raw.MBps)} MB/s | ${met(v.replayOne?.ok)} |`,
      );
    if (most && one)
      out.push(
        `| Replay, ${fmt(most.subscribers, 0)} fresh subscribers at once | each within 3× of one | slowest ${fmt(most.perSubscriber.seconds.max, 2)} s against ${fmt(one.perSubscriber.seconds.p50, 2)} s (**${fmt(r.replay.slowestVsOne, 2)}×**); ${fmt(most.totalMBps, 0)} MB/s in all | – | ${met(v.replayMost?.ok)} |`,
      );
  }
  if (r.corpus) {
    const timeline = r.corpus.reads.find((read: any) => read.target);
    if (timeline)
      out.push(
        `| Corpus: timeline list of the long-research job (take=100, \`exclude=${TIMELINE}\`) | < 100 KB and p50 ≤ 30 ms | ${kb(timeline.responseBytes)}, p50 ${fmt(timeline.latency.p50)} ms (p99 ${fmt(timeline.latency.p99)}) | same rows by \`pg\`: p50 ${fmt(timeline.raw.p50)} ms | ${met(v.timeline?.ok)} |`,
      );
    const ingest = r.corpus.ingest;
    out.push(
      `| Corpus: ingest of the long-research trace (${r.corpus.lines} posts, ${kb(ingest.first.bytes)} to ${fmt(Math.max(...ingest.perLine.map((line: any) => line.bytes)) / 1e6, 1)} MB) | (report) | p50 ${fmt(ingest.latency.p50)} ms, p99 ${fmt(ingest.latency.p99)} ms per post; server CPU ${fmt(ingest.first.serverCpuMs)} ms (line 1) to ${fmt(ingest.last.serverCpuMs)} ms (line ${ingest.last.line}) | – | – |`,
    );
  }
  if (r.p4) {
    const long = r.p4.longJob;
    out.push(
      `| P4 stored bytes, ${fmt(long.steps, 0)}-step job, ~${fmt(long.stepBytes / 1024, 0)} KB new per step | ≤ 10 MB | ${mib(long.storedBytes)} (table growth: heap, TOAST, indexes) | naive copy per checkpoint: ${mib(long.naiveBytes)} of conversation text (counted, not stored: no compression, rows or indexes) | ${met(v.p4bytes?.ok)} |`,
    );
    for (const c of r.p4.list.cases) {
      out.push(
        `| P4 list, ${fmt(r.p4.list.checkpoints, 0)} checkpoints, take=100, ${c.name} | ${c.target ? `p50 ≤ ${c.target} ms` : "(report)"} | p50 ${fmt(c.latency.p50)} ms (p99 ${fmt(c.latency.p99)}), ${fmt(c.responseBytes / 1024, 0)} KiB | the server's SQL: p50 ${fmt(c.raw.p50)} ms${c.naive ? `; OFFSET + count(*): ${fmt(c.naive.p50)} ms` : ""} | ${c.target ? met(c.latency.p50 <= c.target) : "–"} |`,
      );
    }
  }
  if (r.startup?.pgliteFreshMs !== undefined) {
    out.push(
      `| Startup to /readyz, PGlite | (report) | fresh data dir ${fmt(r.startup.pgliteFreshMs, 0)} ms, existing ${fmt(r.startup.pgliteExistingMs, 0)} ms | on Postgres: ${fmt(r.startup.postgresExistingMs, 0)} ms (migrated), ${fmt(r.startup.postgresFreshMs, 0)} ms (empty) | – |`,
    );
  }
  out.push("", `![P1 and P2](${rel(svgFile)})`, "");

  if (r.p1) {
    const p1 = r.p1;
    out.push("## P1 ingest", "");
    out.push(
      `\`POST …/checkpoints/\` as the runtime sends it: the whole conversation so far plus a step of ~${fmt(p1.stepBytes / 1024, 0)} KB of new messages ` +
        `(an expert message with a tool call and the tool's result), ${p1.stepsPerJob} steps per job, so bodies run from ${fmt(p1.bodyBytes.min / 1024, 0)} KiB ` +
        `to ${fmt(p1.bodyBytes.max / 1024, 0)} KiB (mean ${fmt(p1.bodyBytes.mean / 1024, 0)} KiB). Each concurrent runtime posts to its own jobs, one step after another. ` +
        `**Raw**: the same concurrency doing the same transaction with \`pg\` (lock the job row, insert the step's new messages, insert the checkpoint, ` +
        `update the job, \`pg_notify\`, commit) over a pool of ${p1.rawPoolSize} connections, the server's pool size, with every value precomputed: the floor for this write. ` +
        `${p1.levels[0].rounds.server.length > 1 ? `Median of ${p1.levels[0].rounds.server.length} alternating rounds.` : ""}`,
      "",
    );
    out.push(
      "| concurrency | server checkpoints/s | server latency p50 / p99 (ms) | raw tx/s | raw latency p50 / p99 (ms) | ratio | CPU ms per checkpoint, server run: server + Postgres + bench | raw run: Postgres + bench | machine busy (server / raw run) | rounds (server / raw) |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|");
    for (const level of p1.levels) {
      out.push(
        `| ${level.concurrency} | ${fmt(level.server.perSecond)} | ${fmt(level.server.latency.p50)} / ${fmt(level.server.latency.p99)} | ${fmt(level.raw.perSecond)} | ${fmt(level.raw.latency.p50)} / ${fmt(level.raw.latency.p99)} | **${fmt(level.ratio, 2)}×** | ${fmt(level.server.cpu.serverMs, 2)} + ${fmt(level.server.cpu.postgresMs, 2)} + ${fmt(level.server.cpu.benchMs, 2)} | ${fmt(level.raw.cpu.postgresMs, 2)} + ${fmt(level.raw.cpu.benchMs, 2)} | ${fmt(level.server.cpu.machineBusyShare * 100, 0)}% / ${fmt(level.raw.cpu.machineBusyShare * 100, 0)}% | ${level.rounds.server.join(", ")} / ${level.rounds.raw.join(", ")} |`,
      );
    }
    out.push("");
  }
  if (r.p5) {
    const p5 = r.p5;
    out.push("## P5 commit scaling", "");
    out.push(
      `${p5.instances} server instances on one Postgres; runtime i posts to instance i mod ${p5.instances}, each to its own jobs of ${p5.steps} steps ` +
        `(~${fmt(p5.stepBytes / 1024, 0)} KB new per step; bodies ${kb(p5.bodyBytes.min)} to ${kb(p5.bodyBytes.max)}), ${p5.postsPerRuntime} posts per runtime and level. ` +
        `**Raw**: the same write with \`pg\` (as in P1) over a pool of ${p5.rawPoolSize} connections (the instances' pools together), with \`pg_notify\` in the ` +
        "transaction, as a statement of its own right after the commit, and with none. Every variant runs once per round at every level, in turn. CPU ms per " +
        "checkpoint: the server instances together (server variants), their Postgres backends, and the bench process. Server designs:",
      "",
      ...Object.entries(p5.designs).map(([name, text]) => `- **${name}**: ${text}`),
      "",
      "| runtimes | variant | checkpoints/s | p50 / p99 (ms) | vs notifications off | CPU ms: server + Postgres + bench | machine busy | rounds |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const level of p5.levels) {
      for (const variant of level.variants) {
        out.push(
          `| ${level.concurrency} | ${variant.name} | ${fmt(variant.perSecond)} | ${fmt(variant.latency.p50)} / ${fmt(variant.latency.p99)} | ${variant.vsOff === undefined ? "–" : `**${fmt(variant.vsOff, 2)}×**`} | ${fmt(variant.cpu.serverMs, 2)} + ${fmt(variant.cpu.postgresMs, 2)} + ${fmt(variant.cpu.benchMs, 2)} | ${fmt(variant.cpu.machineBusyShare * 100, 0)}% | ${variant.rounds.join(", ")} |`,
        );
      }
    }
    out.push("");
  }
  if (r.floor) {
    const f = r.floor;
    out.push("## The floor of an HTTP ingest path", "");
    out.push(
      "`bench/floor-server.ts`: a plain `node:http` server (no framework) that reads the same POST, `JSON.parse`s it, runs the raw transaction " +
        "(P1's, with the message texts, hashes and ordinals computed from the body, `pg_notify` in the transaction) and answers the posted checkpoint " +
        "serialised once (the contract answers the whole checkpoint). No authentication, validation, expert lookup, deduplication or logging. " +
        `${f.concurrency} concurrent runtimes, P1's bodies (${kb(f.bodyBytes.min)} to ${kb(f.bodyBytes.max)}), server, floor and raw \`pg\` in alternating rounds.`,
      "",
      "| variant | checkpoints/s | p50 / p99 (ms) | CPU ms: server process + Postgres + bench | rounds |",
      "|---|---|---|---|---|",
    );
    for (const [name, run] of [
      ["server", f.server],
      ["floor server", f.floor],
      ["raw pg", f.raw],
    ] as const) {
      out.push(
        `| ${name} | ${fmt(run.perSecond)} | ${fmt(run.latency.p50)} / ${fmt(run.latency.p99)} | ${fmt(run.cpu.serverMs, 2)} + ${fmt(run.cpu.postgresMs, 2)} + ${fmt(run.cpu.benchMs, 2)} | ${run.rounds.join(", ")} |`,
      );
    }
    out.push(
      "",
      `Server against the floor: **${fmt(f.serverVsFloor, 2)}×** (target ≥ 0.8×); against raw \`pg\`: ${fmt(f.serverVsRaw, 2)}×; the floor against raw: ${fmt(f.floorVsRaw, 2)}×.`,
      "",
    );
  }
  if (r.length) {
    const l = r.length;
    out.push("## Cost against length", "");
    out.push(
      `One job of ${fmt(l.steps, 0)} steps, each adding ~${fmt(l.stepBytes / 1024, 0)} KB of new messages and carrying the whole conversation, posted one ` +
        "step at a time to the server and, step by step in turn, to the floor server (a job of its own). Server CPU per post: the process's threads' run " +
        `time from just before the request to 25 ms after the answer; each figure is the median of the ${l.window} posts ending at that step.`,
      "",
      "| step | body | server CPU (ms) | floor server CPU (ms) | server beyond the floor (ms) | server p50 (ms) | floor p50 (ms) |",
      "|---|---|---|---|---|---|---|",
    );
    for (const row of l.rows) {
      out.push(
        `| ${fmt(row.step, 0)} | ${bytesText(row.bodyBytes)} | ${fmt(row.serverCpuMs, 2)} | ${fmt(row.floorCpuMs, 2)} | **${fmt(row.beyondFloorMs, 2)}** | ${fmt(row.serverLatency.p50)} | ${fmt(row.floorLatency.p50)} |`,
      );
    }
    out.push(
      "",
      `Beyond the floor, step ${l.rows[0].step} → ${l.rows.at(-1).step}: **${fmt(l.beyondFloorGrowth, 2)}×** (target ≤ 1.5×).` +
        (l.rows.at(-1).beyondFloorMs < 0
          ? ` Below zero: at step ${l.rows.at(-1).step} the server spends less CPU per post than the floor server, which serialises the whole checkpoint for its answer, while the server writes the conversation's remembered text.`
          : ""),
      "",
    );
  }
  if (p2s.length > 0) {
    out.push("## P2 delivery", "");
    out.push(
      "One job, N subscribers on `GET …/checkpoints/stream` (real HTTP, spread over client processes of ≤ 500 streams). The bench commits each checkpoint " +
        "with the server's own transaction (as in P1 raw) and starts the clock right before COMMIT; a subscriber's latency ends when its socket has read the " +
        "whole event (its last byte; CLOCK_MONOTONIC, shared by all processes). **Raw**: the same transaction on another job, watched by one plain `LISTEN` " +
        "connection, interleaved event by event with the 1-subscriber run; from issue 10 on, that listener then also reads the event's row and its whole " +
        "conversation with `pg` (the floor for having the event's bytes in hand, with no cache).",
      "",
    );
    if (r.p2.sizes)
      out.push(
        "Every event carries its whole conversation, as the runtime's do. **~5 KB**: a job of one-step runs, each event a run of its own (its instruction, " +
          "query and one step of ~1 KB; the events earlier runs called ~3 KB). **~100 KB** and **~1 MB**: one long run, with a history of ~10 KB steps committed before the subscribers connect " +
          "(`?after=` the history, so they start at its end), then steps of ~1 KB; the history stops half the events' growth short of the size, so the " +
          "events sit around it. The event size column is what the client measured (p50, and the range). Each level first sends one event that is not " +
          "timed (it warms the feed: its first read brings the whole conversation).",
        "",
      );
    out.push(
      "| events | subscribers | events timed | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | last subscriber p50 / p99 (ms) | missed | server RSS, at most (MiB) |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|");
    for (const size of p2s) {
      const label = size.eventBytes
        ? `${size.name}: ${kb(size.eventBytes.p50)} (${kb(size.eventBytes.min)}–${kb(size.eventBytes.max)})`
        : size.name;
      out.push(
        `| ${label} | raw LISTEN/NOTIFY (1) | ${size.raw.n} | ${fmt(size.raw.p50, 2)} | ${fmt(size.raw.p90, 2)} | ${fmt(size.raw.p99, 2)} | ${fmt(size.raw.max, 2)} | – | – | – |`,
      );
      if (size.rawRead)
        out.push(
          `| ${label} | raw NOTIFY + read (1) | ${size.rawRead.n} | ${fmt(size.rawRead.p50, 2)} | ${fmt(size.rawRead.p90, 2)} | ${fmt(size.rawRead.p99, 2)} | ${fmt(size.rawRead.max, 2)} | – | – | – |`,
        );
      for (const level of size.levels) {
        out.push(
          `| ${label} | ${fmt(level.subscribers, 0)} | ${level.events} | ${fmt(level.latency.p50, 2)} | ${fmt(level.latency.p90, 2)} | ${fmt(level.latency.p99, 2)} | ${fmt(level.latency.max, 2)} | ${fmt(level.lastSubscriber.p50)} / ${fmt(level.lastSubscriber.p99)} | ${level.missing} | ${level.server?.rssMaxKiB ? fmt(level.server.rssMaxKiB / 1024, 0) : "–"} |`,
        );
      }
    }
    out.push("");
  }
  if (p3s.length > 0) {
    out.push("## P3 connections", "");
    out.push(
      `Streams on one job from client processes of ≤ 2,500 streams. The server's open-files limit is raised where needed in the shell that spawns it ` +
        `(\`ulimit -n\`), never in its defaults; it had ${fmt(p3s[0].serverOpenFilesLimit, 0)}. Each event size runs on a fresh server process (warmed with ` +
        `100 streams opened and closed), whose RSS (VmRSS) is taken before the streams open, just after (garbage of the burst of requests included), ` +
        `after ${p3s[0].settleSeconds} s with the streams still open (**per stream**: that growth divided by the streams), at its highest while the events ` +
        "are delivered, and after them. Events as in P2, committed 0.5 s apart.",
      "",
    );
    out.push(
      "| events | streams open (failed) | opened in (s) | RSS before / just opened / settled (MiB) | KiB per stream | RSS during events, at most / after (MiB) | p50 (ms) | p99 (ms) | max (ms) | missed |",
      "|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const size of p3s) {
      out.push(
        `| ${size.name}${size.eventBytes ? `: ${kb(size.eventBytes.p50)}` : ""} | ${fmt(size.open, 0)} (${size.failed}) | ${size.openSeconds} | ${fmt(size.rssBeforeKiB / 1024, 0)} / ${fmt(size.rssOpenedKiB / 1024, 0)} / ${fmt(size.rssAfterKiB / 1024, 0)} | ${size.perStreamKiB > 0 ? `**${fmt(size.perStreamKiB)}**` : "– (RSS fell: a collection)"} | ${size.rssMaxDuringEventsKiB ? fmt(size.rssMaxDuringEventsKiB / 1024, 0) : "–"} / ${fmt(size.rssAfterEventsKiB / 1024, 0)} | ${fmt(size.latency.p50, 0)} | ${fmt(size.latency.p99, 0)} | ${fmt(size.latency.max, 0)} | ${size.missing} |`,
      );
    }
    out.push("", "Each event:", "", "| events | event | size | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|---|---|");
    for (const size of p3s) {
      size.perEvent.forEach((event: any, index: number) =>
        out.push(
          `| ${size.name} | ${index + 1} | ${kb(event.eventBytes)} | ${fmt(event.p50, 0)} | ${fmt(event.p99, 0)} | ${fmt(event.max, 0)} |`,
        ),
      );
    }
    out.push("");
  }
  if (r.p2?.sizes || r.p3?.sizes) {
    out.push("### p99 and server memory against event size", "");
    out.push(
      "From the two tables above: P2's p99 at each subscriber count and the server's highest RSS at 1,000 subscribers, P3's p99 and highest RSS while its streams got the events.",
      "",
      "| events (measured p50) | P2 p99, 1 / 100 / 1,000 subscribers (ms) | P2 raw p99, NOTIFY / with read (ms) | P2 RSS at most, 1,000 subscribers (MiB) | P3 p99 (ms) | P3 RSS settled → at most during events (MiB) |",
      "|---|---|---|---|---|---|",
    );
    const names = [...new Set([...p2s.map((size) => size.name), ...p3s.map((size) => size.name)])];
    for (const name of names) {
      const p2 = p2s.find((size) => size.name === name);
      const p3 = p3s.find((size) => size.name === name);
      const at = (subscribers: number) => p2?.levels.find((l: any) => l.subscribers === subscribers);
      out.push(
        `| ${name} (${kb(p2?.eventBytes?.p50 ?? p3?.eventBytes?.p50)}) | ${p2 ? [1, 100, 1_000].map((n) => fmt(at(n)?.latency.p99)).join(" / ") : "–"} | ${p2 ? `${fmt(p2.raw.p99)} / ${fmt(p2.rawRead?.p99)}` : "–"} | ${at(1_000)?.server?.rssMaxKiB ? fmt(at(1_000).server.rssMaxKiB / 1024, 0) : "–"} | ${p3 ? fmt(p3.latency.p99, 0) : "–"} | ${p3?.rssMaxDuringEventsKiB ? `${fmt(p3.rssAfterKiB / 1024, 0)} → ${fmt(p3.rssMaxDuringEventsKiB / 1024, 0)}` : "–"} |`,
      );
    }
    out.push("");
  }
  if (r.p4) {
    const long = r.p4.longJob;
    out.push("## P4 history", "");
    out.push(
      `**Stored bytes.** One job of ${fmt(long.steps, 0)} steps posted through the API, each step adding ~${fmt(long.stepBytes / 1024, 0)} KB of new messages and carrying ` +
        `the whole conversation (the last one ${mib(long.lastConversationBytes)}; ${mib(long.postedBytes)} posted in all). Growth of \`job_message\` + \`checkpoint\` ` +
        `(heap, TOAST and indexes): **${mib(long.storedBytes)}**. Storing each checkpoint's conversation as posted would be ${mib(long.naiveBytes)} of JSON text. ` +
        "The two are counted differently: the stored figure is what Postgres' relations grew by (TOAST compresses large values; rows and " +
        "indexes add their overhead), the naive one the sum of the conversations' UTF-8 bytes, computed, never written (a table of them " +
        "would TOAST-compress them too). " +
        `Posting took p50 ${fmt(long.post.p50)} ms per step, ${fmt(long.lastPostMs)} ms for the last (${mib(long.lastConversationBytes)} body).`,
      "",
    );
    out.push(
      `**Listing.** A job of ${fmt(r.p4.list.checkpoints, 0)} checkpoints written by SQL (\`generate_series\`, ${r.p4.list.seedSeconds} s, then \`VACUUM ANALYZE\`), shaped as the server ` +
        "writes them: one ~300-byte message per step, conversations in runs of 100 steps (so a checkpoint refers to 1–100 messages). Sequential requests. " +
        "Raw, straight from Postgres with `pg`: the statements the server runs for the page (the job's `last_seq` as the total; the page's keys from the index, " +
        "then its rows), and the obvious ones (`OFFSET` over the rows, `count(*)`).",
      "",
    );
    out.push(
      "| request (take=100) | target | p50 (ms) | p99 (ms) | response | raw, the server's SQL: p50 (ms) | raw, OFFSET + count(*): p50 (ms) |",
      "|---|---|---|---|---|---|---|",
    );
    for (const c of r.p4.list.cases) {
      out.push(
        `| ${c.name} | ${c.target ? `≤ ${c.target} ms` : "–"} | ${fmt(c.latency.p50)} | ${fmt(c.latency.p99)} | ${fmt(c.responseBytes / 1024, 0)} KiB | ${fmt(c.raw.p50, 2)} | ${c.naive ? fmt(c.naive.p50, 2) : "–"} |`,
      );
    }
    out.push("");
  }
  if (r.replay) {
    const replay = r.replay;
    out.push("## Replay throughput", "");
    out.push(
      `Fresh subscribers (no \`Last-Event-ID\`) of a finished job receive its whole history with full messages, then \`complete\`. The job was posted ` +
        `through the API: ${replay.steps} steps, each adding ~${fmt(replay.stepBytes / 1000, 0)} KB of new messages (a file read) and carrying the whole ` +
        `conversation so far, the last one completing the job: ${fmt(replay.historyBytes / 1e6, 0)} MB of events per subscriber (${fmt(replay.postedBytes / 1e6, 0)} MB posted). ` +
        "N subscribers open at once (client processes of ≤ 50 streams, reading as fast as they can); a subscriber's time runs from its request to its " +
        "`complete`, and its rate is the bytes it got (events and framing) over that time. MB = 10⁶ bytes. CPU is each process's own time over the level " +
        "(server; its Postgres connections; the client processes). The server's own counters (`/metrics`): database reads of the job's feed, bytes of " +
        "frames built (one stream's worth = every frame built once and shared by all), the most its streams held in memory (frames and message texts, " +
        "`expert_jobs_stream_held_bytes`, sampled every 0.5 s), and cut-offs.",
      "",
      `**Raw**, in the same run before each level and after the last: one \`pg\` connection reads every checkpoint row of the job (its JSON columns as ` +
        "stored text) and the stored text of every message the rows refer to, once each (two statements), then joins each row's conversation as a JSON " +
        "array and makes one Buffer per row of its columns and conversation: the same bytes, with no experts, validation, HTTP or socket. Rate: those " +
        `bytes over the whole time. Its rounds: ${replay.raw.rounds.map((round: any) => `${fmt(round.MBps, 0)} MB/s (${fmt(round.queryMs, 0)} ms in Postgres, ${fmt(round.assembleMs, 0)} ms joining)`).join("; ")}; ` +
        `the median, **${fmt(replay.raw.MBps, 0)} MB/s**, is the baseline. For reference, with each row's conversation built by Postgres instead ` +
        `(\`string_agg\` over its messages, 10 rows a statement, as the stream read before issue 10): ${fmt(replay.raw.inPostgres.MBps, 0)} MB/s.`,
      "",
    );
    out.push(
      "| subscribers | each: MB/s p50 (slowest) | each: time p50 / max (s) | first event p50 / max (ms) | all: MB/s (wall s) | CPU ms: server (per MB sent) / Postgres / clients | machine busy | reads | frames built (× one stream) | held at most (MB) | server RSS at most (MiB) | incomplete / cut off |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const level of replay.levels) {
      out.push(
        `| ${fmt(level.subscribers, 0)} | **${fmt(level.perSubscriber.MBps.p50)}** (${fmt(level.perSubscriber.MBps.min)}) | ${fmt(level.perSubscriber.seconds.p50, 2)} / ${fmt(level.perSubscriber.seconds.max, 2)} | ${fmt(level.perSubscriber.firstEventMs.p50, 0)} / ${fmt(level.perSubscriber.firstEventMs.max, 0)} | ${fmt(level.totalMBps, 0)} (${fmt(level.wallSeconds, 2)}) | ${fmt(level.cpu.serverMs, 0)} (${fmt(level.cpu.serverMsPerMB, 2)}) / ${fmt(level.cpu.postgresMs, 0)} / ${fmt(level.cpu.clientsMs, 0)} | ${fmt(level.cpu.machineBusyShare * 100, 0)}% | ${level.server.reads} | ${fmt(level.server.frameBytesBuilt / 1e6, 0)} MB (${fmt(level.server.buildsPerEvent, 2)}×) | ${fmt((level.server.heldMaxBytes ?? 0) / 1e6, 1)} | ${fmt(level.server.rssMaxKiB / 1024, 0)} | ${level.incomplete} / ${level.server.cutOffs.stalled + level.server.cutOffs.lagging} |`,
      );
    }
    out.push(
      "",
      `One subscriber against the raw read: **${fmt(replay.oneVsRaw, 2)}×** (target ≥ 0.5×). The slowest of ${fmt(replay.levels.at(-1).subscribers, 0)} against one alone: **${fmt(replay.slowestVsOne, 2)}×** its time (target ≤ 3×).`,
      "",
    );
  }
  if (r.corpus) {
    const corpus = r.corpus;
    out.push("## Corpus: reads", "");
    out.push(
      `The ${corpus.trace} trace (\`../shared/fixtures/perstack-runtime-traces\`: ${corpus.lines} checkpoint bodies as the Perstack runtime posted them, ` +
        `${fmt(corpus.totalBytes / 1e6, 1)} MB in all) replayed as its README says: a tenant of its own with the trace's expert, a job started and claimed, ` +
        "every line POSTed unchanged, in order. Then sequential reads of that job with each `exclude` variant: the list (`take=100`: all of it), and GET of " +
        "its last checkpoint and of its largest (the step that reads a 1 MB log). " +
        `${corpus.reads[0].latency.n} timed requests each, after 2 untimed. **Raw**, interleaved request by request: the same rows with \`pg\` as in the ` +
        "replay measure (`rawReadCheckpoints`): the columns the variant keeps (the action's large fields dropped in SQL with the server's own expression), " +
        "the messages' texts once each, conversations joined, one Buffer per row. Sizes are the response bodies (raw: the bytes assembled). KB = 1,000 bytes.",
      "",
    );
    out.push(
      "| read | exclude | response | p50 (ms) | p99 (ms) | raw: bytes | raw p50 (ms) | raw p99 (ms) | target |",
      "|---|---|---|---|---|---|---|---|---|",
    );
    for (const read of corpus.reads) {
      out.push(
        `| ${read.read} | \`${read.exclude}\` | ${kb(read.responseBytes)} | ${fmt(read.latency.p50)} | ${fmt(read.latency.p99)} | ${kb(read.rawBytes)} | ${fmt(read.raw.p50, 2)} | ${fmt(read.raw.p99, 2)} | ${read.target ? `< ${kb(read.target.bytes)}, p50 ≤ ${read.target.p50Ms} ms: ${met(read.responseBytes <= read.target.bytes && read.latency.p50 <= read.target.p50Ms)}` : "–"} |`,
      );
    }
    out.push("");
    const ingest = corpus.ingest;
    out.push("## Corpus: ingest", "");
    out.push(
      `Every line of the ${corpus.trace} trace POSTed in order, as the runtime did, one at a time (${ingest.rounds} replay${ingest.rounds > 1 ? "s, each into a job of its own; per-line figures are medians over them" : ""}). ` +
        "CPU per post is each process's run time (the sum of its threads' `/proc/<pid>/task/*/schedstat`, in ns) from just before the request to 25 ms " +
        "after its answer, so the post's own after-work (logging, collecting its garbage) is counted with it: the server, and its Postgres connections.",
      "",
      "| body size | lines | mean body | p50 (ms) | p99 (ms) | server CPU p50 / max (ms) | Postgres CPU p50 (ms) |",
      "|---|---|---|---|---|---|---|",
    );
    for (const bucket of ingest.buckets) {
      out.push(
        `| ${bucket.fromBytes === 0 ? `≤ ${bytesText(bucket.toBytes)}` : bucket.toBytes ? `${bytesText(bucket.fromBytes)}–${bytesText(bucket.toBytes)}` : `> ${bytesText(bucket.fromBytes)}`} | ${bucket.lines} | ${bytesText(bucket.meanBytes)} | ${fmt(bucket.latency.p50)} | ${fmt(bucket.latency.p99)} | ${fmt(bucket.serverCpuMs.p50)} / ${fmt(bucket.serverCpuMs.max)} | ${fmt(bucket.postgresCpuMs.p50)} |`,
      );
    }
    out.push(
      `| all | ${corpus.lines} | ${bytesText(corpus.totalBytes / corpus.lines)} | ${fmt(ingest.latency.p50)} | ${fmt(ingest.latency.p99)} | – | – |`,
      "",
      `First and last step: line 1 (${bytesText(ingest.first.bytes)}) took ${fmt(ingest.first.ms)} ms and ${fmt(ingest.first.serverCpuMs)} ms of server CPU ` +
        `(${fmt(ingest.first.postgresCpuMs)} ms in Postgres); line ${ingest.last.line} (${bytesText(ingest.last.bytes)}, the whole conversation) took ${fmt(ingest.last.ms)} ms and ` +
        `${fmt(ingest.last.serverCpuMs)} ms of server CPU (${fmt(ingest.last.postgresCpuMs)} ms in Postgres). Every line is in the results file (\`corpus.ingest.perLine\`).`,
      "",
    );
  }
  if (r.startup?.pgliteFreshMs !== undefined) {
    const s = r.startup;
    out.push("## Startup", "");
    out.push(
      "Spawn of `node --import tsx src/server.ts` to the first 200 from `/readyz` (median of " +
        `${s.samples.fresh.length}). Fresh PGlite includes creating the data dir and running the migrations.`,
      "",
      "| database | ms | samples |",
      "|---|---|---|",
      `| PGlite, fresh data dir | ${fmt(s.pgliteFreshMs, 0)} | ${s.samples.fresh.join(", ")} |`,
      `| PGlite, existing data dir | ${fmt(s.pgliteExistingMs, 0)} | ${s.samples.existing.join(", ")} |`,
      `| PostgreSQL, migrated database | ${fmt(s.postgresExistingMs, 0)} | ${s.samples.postgres.join(", ")} |`,
      `| PostgreSQL, empty database (migrations run) | ${fmt(s.postgresFreshMs, 0)} | 1 |`,
      "",
    );
  }
  const resultsDir = path.dirname(jsonFile);
  out.push(
    "## History",
    "",
    "Every whole run in `bench/results/` with its verdicts (quick runs use smaller sizes: compare like with like). The first row is the code " +
      "before the optimisations. On this shared machine, tails move with the load from run to run: read a delivery p99 together with the raw " +
      "p99 of its own run (the P2 table), and the P1 ratio together with its CPU columns. The P2 and P3 columns are the smallest events; from " +
      "issue 10 on, those carry whole conversations (one-step runs, ~5.5 KB) and a delivery ends with the event's last byte, not its `id:` line.",
    "",
    await history(resultsDir),
    "",
  );
  const notes = path.resolve("bench/NOTES.md");
  if (existsSync(notes)) out.push((await readFile(notes, "utf8")).trim(), "");
  await writeFile("BENCHMARKS.md", out.join("\n"));
}
