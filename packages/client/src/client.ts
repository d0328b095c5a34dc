import { errorFromResponse } from "./errors.ts";
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
  async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T | undefined> {
    const response = await this.open(path, body === undefined ? {} : { "content-type": "application/json" }, options.signal, {
      method,
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
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

  start(body: StartExpertJobBody, options?: RequestOptions): Promise<ExpertJob> {
    return unwrap(this.#http.request("POST", `${STUDIO}/expert_jobs`, body, options), "expertJob");
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
