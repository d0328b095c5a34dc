import { errorFromResponse, ExpertJobsApiError } from "./errors.ts";
import { streamCheckpoints, type StreamOptions } from "./stream.ts";
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
  ListCheckpointsQuery,
  ListExpertJobsQuery,
  PostCheckpointBody,
  ResumeExpertJobBody,
  StartExpertJobBody,
  StreamEvent,
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
      { ...headers, ...(body !== undefined && { "content-type": "application/json" }) },
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

/** The runtime's endpoints (a runtime-scope key). */
export class RuntimeApi {
  readonly #http: Http;

  constructor(http: Http) {
    this.#http = http;
  }

  /** The oldest queued job, waiting up to `waitMs` (≤ 30000) for one; undefined when none came. */
  async claim(body: ClaimBody = {}, options?: RequestOptions): Promise<Claim | undefined> {
    const answer = await this.#http.request<{ data: { claim: Claim } }>("POST", `${STUDIO}/expert_jobs/claim`, body, options);
    return answer?.data.claim;
  }

  postCheckpoint(expertJobId: string, body: PostCheckpointBody, options?: RequestOptions): Promise<Checkpoint> {
    return unwrap(this.#http.request("POST", `${jobPath(expertJobId)}/checkpoints/`, body, options), "checkpoint");
  }

  /** `processing` doubles as the heartbeat that renews the lease. */
  reportStatus(expertJobId: string, status: ExpertJobStatus, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("POST", jobPath(expertJobId), { status }, options), "expertJob");
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
