import { createHmac, randomBytes } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { isIP } from "node:net";
import { guardedLookup, parseWebhookUrl, type AddressPolicy } from "./webhook-address.ts";

/** A Standard Webhooks signing secret: `whsec_` and base64 of 32 random bytes. */
export const generateWebhookSecret = (): string => `whsec_${randomBytes(32).toString("base64")}`;

/**
 * The Standard Webhooks signature (https://www.standardwebhooks.com): HMAC-SHA256, keyed with the
 * secret's bytes, over `{webhook-id}.{webhook-timestamp}.{body}`, as `v1,<base64>`.
 */
export function signWebhook(secret: string, id: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestampSeconds}.${body}`).digest("base64")}`;
}

export interface WebhookRequest {
  url: string;
  id: string;
  secret: string;
  body: string;
}

export interface SendOptions {
  timeoutMs: number;
  policy: AddressPolicy;
  /** Aborts the request (shutdown). */
  signal?: AbortSignal;
}

export interface SendResult {
  /** The receiver's status code; undefined when no answer came (refused address, connection error, timeout). */
  statusCode?: number;
  /** The first KiB of the answer's body. */
  responseBody?: string;
  error?: string;
  durationMs: number;
}

const RESPONSE_BODY_BYTES = 1024;

/** The error of an attempt the server's shutdown cut short. */
export const SHUTTING_DOWN = "server shutting down";

/** One POST of a signed webhook. Redirects are not followed (a 3xx is a failed attempt). Never throws. */
export function sendWebhook(request: WebhookRequest, options: SendOptions): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  return new Promise((resolve) => {
    let url: URL;
    try {
      // Again at delivery: the operator may have turned WEBHOOK_ALLOW_PRIVATE off since registration.
      url = parseWebhookUrl(request.url, options.policy);
    } catch (error) {
      return resolve({ error: `refused: ${(error as Error).message}`, durationMs: elapsed() });
    }
    if (options.signal?.aborted) return resolve({ error: SHUTTING_DOWN, durationMs: elapsed() });
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(request.body)),
      "user-agent": "expert-jobs-webhooks/1",
      "webhook-id": request.id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": signWebhook(request.secret, request.id, timestamp, request.body),
    };
    const transport = url.protocol === "https:" ? https : http;
    let settled = false;
    const finish = (result: Omit<SendResult, "durationMs">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      resolve({ ...result, durationMs: elapsed() });
    };
    const outgoing = transport.request(url, {
      method: "POST",
      headers,
      agent: false,
      // IP literals are not looked up; parseWebhookUrl checked them above.
      ...(isIP(url.hostname.replace(/^\[(.*)\]$/, "$1")) === 0 && { lookup: guardedLookup(options.policy) }),
    });
    const timer = setTimeout(() => outgoing.destroy(new Error(`no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    const onAbort = () => outgoing.destroy(new Error(SHUTTING_DOWN));
    options.signal?.addEventListener("abort", onAbort, { once: true });
    outgoing.on("error", (error) => finish({ error: error.message }));
    outgoing.on("response", (response) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      const done = () =>
        finish({ statusCode: response.statusCode, responseBody: Buffer.concat(chunks).subarray(0, RESPONSE_BODY_BYTES).toString("utf8") });
      response.on("data", (chunk: Buffer) => {
        if (bytes < RESPONSE_BODY_BYTES) chunks.push(chunk);
        bytes += chunk.length;
        // The status is what counts; the rest of a long body is not waited for.
        if (bytes >= RESPONSE_BODY_BYTES) {
          done();
          response.destroy();
        }
      });
      response.on("end", done);
      response.on("error", done);
    });
    outgoing.end(request.body);
  });
}
