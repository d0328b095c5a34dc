import { nowMs, summarize, type Summary } from "./stats.ts";

/** Runs `workers` loops over their own jobs, `perWorker` posts each (whole jobs of `steps` posts, then a fresh job). */
export async function drive(
  workers: number,
  posts: number,
  steps: number,
  jobs: string[],
  post: (jobId: string, stepIndex: number, worker: number) => Promise<void>,
): Promise<{ posts: number; ms: number; perSecond: number; latency: Summary }> {
  const latencies: number[] = [];
  const perWorker = Math.ceil(posts / workers);
  const started = nowMs();
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      for (let index = 0; index < perWorker; index++) {
        const job = jobs[worker * Math.ceil(perWorker / steps) + Math.floor(index / steps)]!;
        const before = nowMs();
        await post(job, index % steps, worker);
        latencies.push(nowMs() - before);
      }
    }),
  );
  const ms = nowMs() - started;
  return {
    posts: latencies.length,
    ms: Math.round(ms),
    perSecond: Math.round((latencies.length / ms) * 10_000) / 10,
    latency: summarize(latencies),
  };
}

/** Jobs `drive` needs: each worker's posts, in whole jobs of `steps`. */
export const jobsFor = (workers: number, posts: number, steps: number) => workers * Math.ceil(Math.ceil(posts / workers) / steps);
