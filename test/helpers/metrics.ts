import type { FastifyInstance } from "fastify";

/** The value of one sample line of a Prometheus text, e.g. `name{a="b"} 3`; undefined when absent. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key, value]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) return Number(match[3]);
  }
  return undefined;
}

/** One metric's value as GET /metrics answers it now. */
export async function metric(app: FastifyInstance, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return sample((await app.inject({ method: "GET", url: "/metrics" })).body, name, labels);
}
