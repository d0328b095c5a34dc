import { existsSync } from "node:fs";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";

type Results = Record<string, any>;

const fmt = (value: number | undefined, digits = 1) =>
  value === undefined || Number.isNaN(value)
    ? "–"
    : value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
const mib = (bytes: number) => `${fmt(bytes / 2 ** 20, 2)} MiB`;
const met = (ok: boolean | undefined) => (ok === undefined ? "–" : ok ? "✅ met" : "❌ not met");

/** The verdict of every target, shared by the summary table and the history. */
export function verdicts(r: Results) {
  const p1 = r.p1?.levels.find((level: any) => level.concurrency === 32);
  const p2one = r.p2?.levels.find((level: any) => level.subscribers === 1);
  const p2many = r.p2?.levels.find((level: any) => level.subscribers === 1_000);
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
  if (r.p2) {
    const max = Math.max(60, ...r.p2.levels.map((level: any) => level.latency.p99)) * 1.15;
    right = bars(
      r.p2.levels.map((level: any) => ({
        label: `${fmt(level.subscribers, 0)} subscriber${level.subscribers > 1 ? "s" : ""}`,
        values: [
          { value: level.latency.p50, color: "#38a169", text: fmt(level.latency.p50, 1) },
          { value: level.latency.p99, color: "#dd6b20", text: fmt(level.latency.p99, 1) },
        ],
      })),
      max,
      [
        { value: 50, color: "#c53030", text: "target p99 at 1,000: 50 ms" },
        { value: r.p2.raw.p99, color: "#4a5568", text: `raw NOTIFY p99 ${fmt(r.p2.raw.p99, 1)} ms` },
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
${panel(480, "P2 delivery: commit → SSE event (ms)", right)}
</svg>
`;
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
      `| ${file.replace(".json", "")} | ${r.mode} | ${(r.machine.commit ?? "").slice(0, 8)} | ${mark(v.p1, `${fmt(v.p1?.ratio, 2)}×`)} | ${mark(v.p2one, fmt(v.p2one?.p99))} | ${mark(v.p2many, fmt(v.p2many?.p99))} | ${mark(v.p3rss, fmt(v.p3rss?.value))} | ${mark(v.p3p99, fmt(v.p3p99?.value, 0))} | ${mark(v.p4bytes, v.p4bytes ? mib(v.p4bytes.value) : "")} | ${mark(v.p4last, fmt(v.p4last?.value))} | ${loads.length ? `${fmt(Math.min(...loads))}–${fmt(Math.max(...loads))}` : "–"} |`,
    );
  }
  return [
    "| run | mode | commit | P1 ratio at 32 | P2 p99 at 1 (ms) | P2 p99 at 1,000 (ms) | P3 KiB/stream | P3 p99 (ms) | P4 stored | P4 last page p50 (ms) | load average (1 min) during the run |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
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
  if (r.p2) {
    const one = r.p2.levels.find((l: any) => l.subscribers === 1);
    const many = r.p2.levels.find((l: any) => l.subscribers === 1_000);
    if (one)
      out.push(
        `| P2 delivery p99, 1 subscriber | ≤ raw p99 + 5 ms (${fmt(v.p2one!.bound)} ms) | ${fmt(one.latency.p99)} ms (p50 ${fmt(one.latency.p50)}) | LISTEN/NOTIFY p99 ${fmt(r.p2.raw.p99)} ms (p50 ${fmt(r.p2.raw.p50)}) | ${met(v.p2one?.ok)} |`,
      );
    if (many)
      out.push(
        `| P2 delivery p99, 1,000 subscribers | ≤ 50 ms | ${fmt(many.latency.p99)} ms (p50 ${fmt(many.latency.p50)}) | LISTEN/NOTIFY p99 ${fmt(r.p2.raw.p99)} ms (1 listener) | ${met(v.p2many?.ok)} |`,
      );
  }
  if (r.p3) {
    out.push(
      `| P3 memory, ${fmt(r.p3.open, 0)} open streams | ≤ 30 KB per stream | ${r.p3.perStreamKiB > 0 ? `${fmt(r.p3.perStreamKiB)} KiB per stream` : "not measured: RSS fell while the streams opened (a garbage collection)"} | – (Postgres holds one LISTEN connection per instance) | ${met(v.p3rss?.ok)} |`,
    );
    out.push(
      `| P3 fan-out, ${fmt(r.p3.open, 0)} streams get one event | p99 ≤ 1 s | p99 ${fmt(r.p3.latency.p99, 0)} ms (p50 ${fmt(r.p3.latency.p50, 0)}, max ${fmt(r.p3.latency.max, 0)}) | LISTEN/NOTIFY p99 ${r.p2 ? fmt(r.p2.raw.p99) : "–"} ms (1 listener) | ${met(v.p3p99?.ok)} |`,
    );
  }
  if (r.p4) {
    const long = r.p4.longJob;
    out.push(
      `| P4 stored bytes, ${fmt(long.steps, 0)}-step job, ~${fmt(long.stepBytes / 1024, 0)} KB new per step | ≤ 10 MB | ${mib(long.storedBytes)} | naive copy per checkpoint: ${mib(long.naiveBytes)} | ${met(v.p4bytes?.ok)} |`,
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
  if (r.p2) {
    out.push("## P2 delivery", "");
    out.push(
      "One job, N subscribers on `GET …/checkpoints/stream` (real HTTP, spread over client processes of ≤ 500 streams). The bench commits each checkpoint " +
        "with the server's own transaction (as in P1 raw) and starts the clock right before COMMIT; a subscriber's latency ends when its socket reads the event's " +
        "`id:` line (CLOCK_MONOTONIC, shared by all processes). **Raw**: the same transaction on another job, watched by one plain `LISTEN` connection, " +
        "interleaved event by event with the 1-subscriber run. Events are ~3 KB checkpoints (the full checkpoint as GET returns it).",
      "",
    );
    out.push("| subscribers | events | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | last subscriber p50 / p99 (ms) | missed |");
    out.push("|---|---|---|---|---|---|---|---|");
    out.push(
      `| raw LISTEN/NOTIFY (1) | ${r.p2.raw.n} | ${fmt(r.p2.raw.p50, 2)} | ${fmt(r.p2.raw.p90, 2)} | ${fmt(r.p2.raw.p99, 2)} | ${fmt(r.p2.raw.max, 2)} | – | – |`,
    );
    for (const level of r.p2.levels) {
      out.push(
        `| ${fmt(level.subscribers, 0)} | ${level.events} | ${fmt(level.latency.p50, 2)} | ${fmt(level.latency.p90, 2)} | ${fmt(level.latency.p99, 2)} | ${fmt(level.latency.max, 2)} | ${fmt(level.lastSubscriber.p50)} / ${fmt(level.lastSubscriber.p99)} | ${level.missing} |`,
      );
    }
    out.push("");
  }
  if (r.p3) {
    const p3 = r.p3;
    out.push("## P3 connections", "");
    out.push(
      `${fmt(p3.streams, 0)} streams on one job from client processes of ≤ 2,500 streams, opened in ${p3.openSeconds} s (${p3.failed} failed). The server's ` +
        `open-files limit is raised where needed in the shell that spawns it (\`ulimit -n\`), never in its defaults; it had ${fmt(p3.serverOpenFilesLimit, 0)}. ` +
        `The server is a fresh process (warmed with 100 streams opened and closed). Its RSS (VmRSS): ${fmt(p3.rssBeforeKiB / 1024)} MiB before, ` +
        `${fmt(p3.rssOpenedKiB / 1024)} MiB just after opening (${fmt(p3.perStreamJustOpenedKiB)} KiB per stream, garbage of the burst of requests included), ` +
        `${fmt(p3.rssAfterKiB / 1024)} MiB ${p3.settleSeconds} s later with the streams still open (**${fmt(p3.perStreamKiB)} KiB per stream**), ` +
        `${fmt(p3.rssAfterEventsKiB / 1024)} MiB after ${p3.perEvent.length} events. ` +
        `Then ${p3.perEvent.length} checkpoint(s) committed as in P2:`,
      "",
    );
    out.push("| event | p50 (ms) | p99 (ms) | max (ms) |", "|---|---|---|---|");
    p3.perEvent.forEach((event: any, index: number) =>
      out.push(`| ${index + 1} | ${fmt(event.p50, 0)} | ${fmt(event.p99, 0)} | ${fmt(event.max, 0)} |`),
    );
    out.push(
      `| all (${fmt(p3.latency.n, 0)} deliveries, ${p3.missing} missed) | ${fmt(p3.latency.p50, 0)} | ${fmt(p3.latency.p99, 0)} | ${fmt(p3.latency.max, 0)} |`,
      "",
    );
  }
  if (r.p4) {
    const long = r.p4.longJob;
    out.push("## P4 history", "");
    out.push(
      `**Stored bytes.** One job of ${fmt(long.steps, 0)} steps posted through the API, each step adding ~${fmt(long.stepBytes / 1024, 0)} KB of new messages and carrying ` +
        `the whole conversation (the last one ${mib(long.lastConversationBytes)}; ${mib(long.postedBytes)} posted in all). Growth of \`job_message\` + \`checkpoint\` ` +
        `(heap, TOAST and indexes): **${mib(long.storedBytes)}**. Storing each checkpoint's conversation as posted would take ${mib(long.naiveBytes)}. ` +
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
      "p99 of its own run (the P2 table), and the P1 ratio together with its CPU columns.",
    "",
    await history(resultsDir),
    "",
  );
  const notes = path.resolve("bench/NOTES.md");
  if (existsSync(notes)) out.push((await readFile(notes, "utf8")).trim(), "");
  await writeFile("BENCHMARKS.md", out.join("\n"));
}
