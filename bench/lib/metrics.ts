import { setTimeout as sleep } from "node:timers/promises";
import type { HttpClient } from "./http.ts";

/**
 * The server's own metrics (GET /metrics, Prometheus text), as `name{labels}` → value and, for every
 * name, the sum of its series under the bare name. A server whose event loop is saturated sheds requests
 * (503, under-pressure) for a few seconds: retried for up to `patienceMs`, then empty (and noted).
 */
export async function scrapeMetrics(http: HttpClient, patienceMs = 30_000): Promise<Map<string, number>> {
  const deadline = Date.now() + patienceMs;
  let response = await http.request("GET", "/metrics", undefined);
  while (response.status !== 200 && Date.now() < deadline) {
    await sleep(500);
    response = await http.request("GET", "/metrics", undefined);
  }
  const values = new Map<string, number>();
  if (response.status !== 200) {
    values.set("bench_metrics_unavailable", response.status);
    return values;
  }
  const text = response.body.toString();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? ([0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!match) continue;
    const [, name, labels, value] = match;
    const number = Number(value);
    if (labels) values.set(`${name}${labels}`, number);
    values.set(name!, (labels ? (values.get(name!) ?? 0) : 0) + number);
  }
  return values;
}

export interface StreamWork {
  reads: number;
  frameBytesBuilt: number;
  eventsSent: number;
  cutOffs: { stalled: number; lagging: number };
  /** Set when a scrape failed: the counters are then NaN. */
  unavailable?: string;
}

/** What the stream hub did between two scrapes: database reads, bytes of frames built, cut-offs (by reason), events sent. */
export function streamWork(before: Map<string, number>, after: Map<string, number>): StreamWork {
  const failed = before.get("bench_metrics_unavailable") ?? after.get("bench_metrics_unavailable");
  if (failed !== undefined)
    return { reads: NaN, frameBytesBuilt: NaN, eventsSent: NaN, cutOffs: { stalled: NaN, lagging: NaN }, unavailable: `GET /metrics answered ${failed}` };
  const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
  return {
    reads: delta("expert_jobs_stream_reads_total"),
    frameBytesBuilt: delta("expert_jobs_stream_frame_bytes_total"),
    eventsSent: delta("expert_jobs_stream_events_sent_total"),
    cutOffs: {
      stalled: delta('expert_jobs_stream_cutoffs_total{reason="stalled"}'),
      lagging: delta('expert_jobs_stream_cutoffs_total{reason="lagging"}'),
    },
  };
}

/** Mean durations (ms) of the server's stream-read and notification-lag histograms between two scrapes. */
export function streamTimings(before: Map<string, number>, after: Map<string, number>) {
  const mean = (name: string) => {
    const count = (after.get(`${name}_count`) ?? 0) - (before.get(`${name}_count`) ?? 0);
    const sum = (after.get(`${name}_sum`) ?? 0) - (before.get(`${name}_sum`) ?? 0);
    return count > 0 ? Math.round((sum / count) * 1e5) / 100 : undefined;
  };
  return {
    readMsMean: mean("expert_jobs_stream_read_duration_seconds"),
    notificationLagMsMean: mean("expert_jobs_notification_lag_seconds"),
  };
}
