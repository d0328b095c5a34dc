// The studio API as the page calls it: the key in the Authorization header, errors turned into words.
export const apiBase = new URL("../api/studio/v1/", location.href);

// A server that just started, or is busy, sheds load with 503 and Retry-After; the page waits and
// tries again instead of showing the refusal. Past these attempts the error is shown.
const BUSY_RETRIES = 6;
const MAX_BUSY_WAIT_MS = 5_000;

export class ApiError extends Error {
  constructor(status, body) {
    const reason = Array.isArray(body?.reason) ? body.reason.map((issue) => `${issue.path} ${issue.message}`).join("; ") : body?.reason;
    super(reason ? `${status} ${body.error}: ${reason}` : `HTTP ${status}`);
    this.status = status;
    this.reason = reason;
  }
  /** Nothing to retry: the key or the job id is wrong. */
  get final() {
    return this.status === 401 || this.status === 403 || this.status === 404 || this.status === 422;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `method path` against the API with the key; resolves to the parsed body, throws ApiError. */
export async function request(key, path, { method = "GET", body, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(new URL(path, apiBase), {
      method,
      signal,
      headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { "content-type": "application/json" }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const parsed = await response.json().catch(() => undefined);
    if (response.ok) return parsed;
    if ((response.status === 503 || response.status === 429) && attempt < BUSY_RETRIES) {
      const retryAfter = Number(response.headers.get("retry-after"));
      await sleep(Math.min(MAX_BUSY_WAIT_MS, retryAfter > 0 ? retryAfter * 1000 : 500 * 2 ** attempt));
      continue;
    }
    throw new ApiError(response.status, parsed);
  }
}

export const jobPath = (jobId, suffix = "") => `expert_jobs/${encodeURIComponent(jobId)}${suffix}`;

/** An EventSource URL: EventSource cannot send headers, so the key goes as access_token (masked in the server's logs). */
export function streamUrl(key, path, params = {}) {
  const url = new URL(path, apiBase);
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, String(value));
  url.searchParams.set("access_token", key);
  return url;
}
