import type { ErrorReason, ExpertJobStatus } from "./types.ts";

/** The server answered with an error: `{code, error, reason}` as sent (synthesised when a proxy answered instead). */
export class ExpertJobsApiError extends Error {
  override readonly name = "ExpertJobsApiError";

  constructor(
    readonly code: number,
    readonly error: string,
    readonly reason: ErrorReason,
    readonly requestId?: string,
  ) {
    super(`${code} ${error}: ${typeof reason === "string" ? reason : reason.map((issue) => `${issue.path} ${issue.message}`).join("; ")}`);
  }

  /** Worth retrying later: rate limited, or the server (or a proxy in front of it) is unavailable. */
  get retryable(): boolean {
    return this.code === 408 || this.code === 429 || this.code >= 500;
  }
}

/**
 * A watched job is no longer the runtime's to run (`client.runtime.watch`): `status` is what it became
 * (`canceling` for a cancel), undefined when the server refused the watch (its lease lost: 409).
 */
export class ExpertJobInterruptedError extends Error {
  override readonly name = "ExpertJobInterruptedError";

  constructor(
    readonly status: ExpertJobStatus | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The stream gave up: `maxRetries` reconnects in a row failed; `cause` is the last failure. */
export class ExpertJobsStreamError extends Error {
  override readonly name = "ExpertJobsStreamError";
}

export async function errorFromResponse(response: Response): Promise<ExpertJobsApiError> {
  const requestId = response.headers.get("x-request-id") ?? undefined;
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { code?: unknown; error?: unknown; reason?: unknown };
    if (
      typeof body.code === "number" &&
      typeof body.error === "string" &&
      (typeof body.reason === "string" || Array.isArray(body.reason))
    ) {
      return new ExpertJobsApiError(body.code, body.error, body.reason as ErrorReason, requestId);
    }
  } catch {
    // not JSON: a proxy's or load balancer's page
  }
  return new ExpertJobsApiError(response.status, response.statusText || "Error", text.slice(0, 500), requestId);
}
