export { createClient, ExpertJobsClient, ExpertJobsApi, CheckpointsApi, RuntimeApi } from "./client.ts";
export type { ClientOptions, JobWatch, RequestOptions, RuntimeRequestOptions, StartOptions, WatchOptions } from "./client.ts";
export { ExpertJobInterruptedError, ExpertJobsApiError, ExpertJobsStreamError } from "./errors.ts";
export type { ReconnectOptions, RetryOptions, StreamOptions } from "./stream.ts";
export { parseEventStream, type SseItem } from "./sse.ts";
export type * from "./types.ts";
