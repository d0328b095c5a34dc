import { errorFromResponse, ExpertJobInterruptedError, ExpertJobsApiError } from "./errors.ts";
import { streamCheckpoints, streamJobChanges, type ReconnectOptions, type StreamOptions } from "./stream.ts";
import type {
  Checkpoint,
  CheckpointPage,
  Claim,
  ClaimBody,
  ContinueExpertJobBody,
  ExpertJob,
  ExpertJobPage,
  ExpertJobStatus,
  GetCheckpointQuery,
  JobChange,
  JobStatus,
  ListCheckpointsQuery,
  ListExpertJobsQuery,
  PostCheckpointBody,
  ResumeExpertJobBody,
  StartExpertJobBody,
  StreamEvent,
  WatchStatusQuery,
} from "./types.ts";

export interface ClientOptions {
  /** The server's origin (and path prefix, if a proxy adds one), e.g. `http://127.0.0.1:3000`. */
  baseUrl: string;
  /** A client key; runtime methods need a runtime key. */
  apiKey: string;
  /** Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Sent with every request (e.g. a tracing header). */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface RuntimeRequestOptions extends RequestOptions {
  /**
   * Sent as `Perstack-Lease-Token`: by default the `leaseToken` of this client's claim of the job (none if it
   * did not claim it); `null` sends none.
   */
  leaseToken?: string | null;
}

export interface WatchOptions {
  /** The claim's lease token, as for the other runtime calls. */
  leaseToken?: string | null;
  /** How long each long poll waits (default 25000, at most 30000). */
  waitMs?: number;
  /** After a network error or a 5xx, look again after this long (default 1000). */
  retryDelayMs?: number;
}

/** A watch of a job this runtime runs (`client.runtime.watch`). */
export interface JobWatch {
  /**
   * Aborts as soon as the job is no longer this runtime's to run: `canceling` (a client canceled it; finish
   * with `reportStatus(id, "canceled")`), any status other than `processing` and `requestDelegateResult`, or its
   * lease lost (409). `signal.reason` is an ExpertJobInterruptedError. Pass it to the model calls of the step.
   */
  readonly signal: AbortSignal;
  /** Ends the watch; call it when the run ends (the signal does not abort for it). */
  stop(): void;
}

const LEASE_TOKEN_HEADER = "perstack-lease-token";
/** Statuses in which a runtime goes on running a job it claimed. */
const runningStatuses: ReadonlySet<ExpertJobStatus> = new Set(["processing", "requestDelegateResult"]);

export interface StartOptions extends RequestOptions {
  /** Sent as `Idempotency-Key`; by default a fresh random UUID per `start` call, shared by its retries. */
  idempotencyKey?: string;
  /**
   * Retries after a network error or a 502/503/504 (the request may or may not have reached the server: the
   * key makes a retry return the job a first attempt started instead of starting another). Default 3; 0: none.
   */
  retries?: number;
}

/** A request that never got an answer (connection refused or reset, DNS): fetch rejects with a TypeError. */
const isNetworkError = (error: unknown): boolean => error instanceof TypeError;
const RETRY_STATUSES = new Set([502, 503, 504]);
const retryDelayMs = (attempt: number) => Math.min(4_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

const STUDIO = "/api/studio/v1";
const jobPath = (expertJobId: string) => `${STUDIO}/expert_jobs/${encodeURIComponent(expertJobId)}`;

function withQuery(path: string, query: Query = {}): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined) params.set(name, Array.isArray(value) ? value.join(",") : String(value));
  }
  const search = params.toString();
  return search ? `${path}?${search}` : path;
}

/** The fetch wrapper the API classes share: base URL, bearer key, error envelopes. */
export class Http {
  readonly #baseUrl: string;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;

  constructor(options: ClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.#headers = { ...options.headers, authorization: `Bearer ${options.apiKey}` };
  }

  /** The parsed JSON body of a 2xx answer; undefined for 204. Any other status throws ExpertJobsApiError. */
  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
    headers: Record<string, string> = {},
  ): Promise<T | undefined> {
    const response = await this.open(
      path,
      body === undefined ? headers : { ...headers, "content-type": "application/json" },
      options.signal,
      {
        method,
        ...(body !== undefined && { body: JSON.stringify(body) }),
      },
    );
    if (!response.ok) throw await errorFromResponse(response);
    if (response.status === 204) return undefined;
    return (await response.json()) as T;
  }

  open(path: string, headers: Record<string, string>, signal?: AbortSignal, init: RequestInit = {}): Promise<Response> {
    return this.#fetch(this.#baseUrl + path, { ...init, headers: { ...this.#headers, ...headers }, ...(signal && { signal }) });
  }
}

/** `{data: {<name>: value}}` → value. */
async function unwrap<T>(answer: Promise<{ data: Record<string, T> } | undefined>, name: string): Promise<T> {
  return (await answer)!.data[name]!;
}

export class CheckpointsApi {
  readonly #http: Http;

  constructor(http: Http) {
    this.#http = http;
  }

  get(expertJobId: string, checkpointId: string, query: GetCheckpointQuery = {}, options?: RequestOptions): Promise<Checkpoint> {
    const path = withQuery(`${jobPath(expertJobId)}/checkpoints/${encodeURIComponent(checkpointId)}`, query);
    return unwrap(this.#http.request("GET", path, undefined, options), "checkpoint");
  }

  async list(expertJobId: string, query: ListCheckpointsQuery = {}, options?: RequestOptions): Promise<CheckpointPage> {
    const answer = await this.#http.request<{ data: { checkpoints: Checkpoint[] }; meta: CheckpointPage["meta"] }>(
      "GET",
      withQuery(`${jobPath(expertJobId)}/checkpoints/`, query),
      undefined,
      options,
    );
    return { checkpoints: answer!.data.checkpoints, meta: answer!.meta };
  }

  /**
   * The job's checkpoints, stored ones first, then live, each exactly once; ends after `complete`.
   * Survives network errors and server restarts by resuming with Last-Event-ID:
   * `for await (const event of client.expertJobs.checkpoints.stream(jobId, { signal })) …`
   */
  stream(expertJobId: string, options: StreamOptions = {}): AsyncGenerator<StreamEvent, void, undefined> {
    return streamCheckpoints({ open: (path, headers, signal) => this.#http.open(path, headers, signal) }, expertJobId, options);
  }
}

export class ExpertJobsApi {
  readonly checkpoints: CheckpointsApi;
  readonly #http: Http;

  constructor(http: Http) {
    this.#http = http;
    this.checkpoints = new CheckpointsApi(http);
  }

  /**
   * The application's job changes, live, for as long as you iterate: `connected` on every (re)connection
   * (nothing is replayed: read `list()` then), then `job` events, each a changed job as `get()` answers it.
   * `for await (const change of client.expertJobs.changes({ signal })) …`
   */
  changes(options: ReconnectOptions = {}): AsyncGenerator<JobChange, never, undefined> {
    return streamJobChanges({ open: (path, headers, signal) => this.#http.open(path, headers, signal) }, options);
  }

  /** Starts a job; retried on network errors under one `Idempotency-Key`, so a retry never starts a second job. */
  async start(body: StartExpertJobBody, options: StartOptions = {}): Promise<ExpertJob> {
    const headers = { "idempotency-key": options.idempotencyKey ?? globalThis.crypto.randomUUID() };
    const retries = options.retries ?? 3;
    for (let attempt = 0; ; attempt++) {
      try {
        return await unwrap(this.#http.request("POST", `${STUDIO}/expert_jobs`, body, options, headers), "expertJob");
      } catch (error) {
        const retryable = isNetworkError(error) || (error instanceof ExpertJobsApiError && RETRY_STATUSES.has(error.code));
        if (!retryable || attempt >= retries || options.signal?.aborted) throw error;
        await sleep(retryDelayMs(attempt), options.signal);
      }
    }
  }

  get(expertJobId: string, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("GET", jobPath(expertJobId), undefined, options), "expertJob");
  }

  async list(query: ListExpertJobsQuery = {}, options?: RequestOptions): Promise<ExpertJobPage> {
    const answer = await this.#http.request<{ data: { expertJobs: ExpertJob[] }; meta: ExpertJobPage["meta"] }>(
      "GET",
      withQuery(`${STUDIO}/expert_jobs`, query),
      undefined,
      options,
    );
    return { expertJobs: answer!.data.expertJobs, meta: answer!.meta };
  }

  continue(expertJobId: string, body: ContinueExpertJobBody, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("POST", `${jobPath(expertJobId)}/continue`, body, options), "expertJob");
  }

  resumeFrom(expertJobId: string, body: ResumeExpertJobBody, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("POST", `${jobPath(expertJobId)}/resume_from`, body, options), "expertJob");
  }

  cancel(expertJobId: string, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("POST", `${jobPath(expertJobId)}/cancel`, undefined, options), "expertJob");
  }
}

/**
 * The runtime's endpoints (a runtime-scope key). The client remembers the lease token of each job it
 * claims and sends it with that job's requests (`Perstack-Lease-Token`), until the job is not its own
 * any more (a 409, or a report answered with a status it no longer runs).
 */
export class RuntimeApi {
  readonly #http: Http;
  readonly #leases = new Map<string, string>();

  constructor(http: Http) {
    this.#http = http;
  }

  /** The oldest queued job, waiting up to `waitMs` (≤ 30000) for one; undefined when none came. */
  async claim(body: ClaimBody = {}, options?: RequestOptions): Promise<Claim | undefined> {
    const answer = await this.#http.request<{ data: { claim: Claim } }>("POST", `${STUDIO}/expert_jobs/claim`, body, options);
    const claim = answer?.data.claim;
    if (claim) this.#leases.set(claim.expertJob.id, claim.leaseToken);
    return claim;
  }

  postCheckpoint(expertJobId: string, body: PostCheckpointBody, options?: RuntimeRequestOptions): Promise<Checkpoint> {
    return unwrap(this.#leased<Checkpoint>(expertJobId, "POST", `${jobPath(expertJobId)}/checkpoints/`, body, options), "checkpoint");
  }

  /** `processing` doubles as the heartbeat that renews the lease; the answer is the job now (`canceling` once canceled). */
  async reportStatus(expertJobId: string, status: ExpertJobStatus, options?: RuntimeRequestOptions): Promise<ExpertJob> {
    const job = await unwrap(this.#leased<ExpertJob>(expertJobId, "POST", jobPath(expertJobId), { status }, options), "expertJob");
    if (!runningStatuses.has(job.status) && job.status !== "canceling") this.#leases.delete(expertJobId);
    return job;
  }

  /** The job's status as soon as it is not `while` (at once without it), or after `waitMs` (≤ 30000) the status then. */
  waitForStatus(expertJobId: string, query: Partial<WatchStatusQuery> = {}, options?: RuntimeRequestOptions): Promise<JobStatus> {
    const path = withQuery(`${jobPath(expertJobId)}/status`, query);
    return unwrap(this.#leased<JobStatus>(expertJobId, "GET", path, undefined, options), "jobStatus");
  }

  /**
   * Long polls the job's status while this runtime runs it; `signal` aborts on a cancel (within the time
   * the server's change notification takes) or when the job is otherwise no longer this runtime's.
   */
  watch(expertJobId: string, options: WatchOptions = {}): JobWatch {
    const interrupted = new AbortController();
    const stopped = new AbortController();
    const { waitMs = 25_000, retryDelayMs = 1_000 } = options;
    const leaseToken = options.leaseToken === undefined ? {} : { leaseToken: options.leaseToken };
    const poll = async () => {
      let status: ExpertJobStatus = "processing";
      while (!stopped.signal.aborted) {
        try {
          ({ status } = await this.waitForStatus(expertJobId, { while: status, waitMs }, { ...leaseToken, signal: stopped.signal }));
          if (!runningStatuses.has(status)) {
            interrupted.abort(new ExpertJobInterruptedError(status, `Expert job is ${status}`));
            return;
          }
        } catch (error) {
          if (stopped.signal.aborted) return;
          if (error instanceof ExpertJobsApiError && !error.retryable) {
            interrupted.abort(new ExpertJobInterruptedError(undefined, error.message, { cause: error }));
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, retryDelayMs));
        }
      }
    };
    void poll();
    return { signal: interrupted.signal, stop: () => stopped.abort() };
  }

  /** A request about a job with its lease token; a 409 means the job is not this runtime's any more. */
  async #leased<T>(
    expertJobId: string,
    method: string,
    path: string,
    body: unknown,
    options: RuntimeRequestOptions = {},
  ): Promise<{ data: Record<string, T> } | undefined> {
    const { leaseToken = this.#leases.get(expertJobId), ...rest } = options;
    try {
      const headers: Record<string, string> = leaseToken ? { [LEASE_TOKEN_HEADER]: leaseToken } : {};
      return await this.#http.request<{ data: Record<string, T> }>(method, path, body, rest, headers);
    } catch (error) {
      if (error instanceof ExpertJobsApiError && error.code === 409) this.#leases.delete(expertJobId);
      throw error;
    }
  }
}

export class ExpertJobsClient {
  readonly expertJobs: ExpertJobsApi;
  readonly runtime: RuntimeApi;

  constructor(options: ClientOptions) {
    const http = new Http(options);
    this.expertJobs = new ExpertJobsApi(http);
    this.runtime = new RuntimeApi(http);
  }
}

export const createClient = (options: ClientOptions): ExpertJobsClient => new ExpertJobsClient(options);
