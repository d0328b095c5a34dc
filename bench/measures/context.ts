import type { HttpClient } from "../lib/http.ts";
import type { RunningServer } from "../lib/server.ts";

/** What a measure gets from the run: the server under test, a client for it, the bench database and the run's log. */
export interface BenchContext {
  server: RunningServer;
  http: HttpClient;
  /** The throwaway database the server runs on (for raw `pg` baselines). */
  url: string;
  adminToken: string;
  log: (...parts: unknown[]) => void;
}
