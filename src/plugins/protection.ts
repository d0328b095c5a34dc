import fp from "fastify-plugin";
import createError from "@fastify/error";
import cors from "@fastify/cors";
import helmet from "@fastify/helmet";
import rateLimit from "@fastify/rate-limit";
import underPressure from "@fastify/under-pressure";
import type { FastifyReply, FastifyRequest } from "fastify";
import { RequestValidationError, type ValidationIssue } from "../errors.ts";
import { isStorableText } from "../lib/text.ts";
import { sendError } from "./error-handler.ts";

export interface RateLimitOptions {
  /** Requests one API key may make per window. */
  max: number;
  timeWindowMs: number;
}

export interface UnderPressureOptions {
  /** Mean event-loop delay over one sample above which requests are shed with 503 (a sample with no tick at all counts as infinite). */
  maxEventLoopDelayMs: number;
  sampleIntervalMs?: number;
}

export interface ProtectionOptions {
  rateLimit: RateLimitOptions | false;
  underPressure: UnderPressureOptions | false;
  /** Browser origins allowed by CORS (`*`: any); undefined or empty: CORS off. */
  corsOrigins?: string[];
  /** The docs page's route prefix: it runs inline scripts and styles, so its CSP is relaxed. */
  docsPrefix: string;
  /** BODY_LIMIT_BYTES, which Fastify enforces for JSON only: multipart bodies are read by busboy. */
  bodyLimitBytes: number;
}

export const RateLimitedError = createError<[string]>("APP_RATE_LIMITED", "%s", 429);
export const BodyTooLargeError = createError("APP_BODY_TOO_LARGE", "Request body is too large", 413);

const RETRY_AFTER_PRESSURE_S = 5;
// @fastify/under-pressure's default sample interval.
const DEFAULT_SAMPLE_INTERVAL_MS = 1000;
const INT32_MAX = 2_147_483_647;

/**
 * Top-level query or body fields holding a value no field of this API takes and Postgres cannot hold: a
 * number that is infinite or past 32 bits, or text with U+0000 or a lone surrogate (`text` columns cannot
 * hold either). Nested values (a checkpoint's messages, which may carry both) are stored as JSON exactly.
 */
function unstorableValues(input: unknown, schema: unknown): ValidationIssue[] {
  const declared = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
  if (!declared || input === null || typeof input !== "object" || Array.isArray(input)) return [];
  // Only the fields the route declares reach a handler; anything else is ignored, whatever it holds.
  return Object.entries(input).flatMap(([key, value]): ValidationIssue[] => {
    if (!Object.hasOwn(declared, key)) return [];
    const items: unknown[] = Array.isArray(value) ? value : [value];
    if (items.some((item) => typeof item === "number" && !(Math.abs(item) <= INT32_MAX))) {
      return [{ path: `/${key}`, message: `must be a finite number between -${INT32_MAX} and ${INT32_MAX}` }];
    }
    if (items.some((item) => typeof item === "string" && item.includes("\u0000")))
      return [{ path: `/${key}`, message: "must not contain U+0000" }];
    if (items.some((item) => typeof item === "string" && !isStorableText(item)))
      return [{ path: `/${key}`, message: "must not contain a lone UTF-16 surrogate (half of a character)" }];
    return [];
  });
}

// An API sends JSON, never documents to render: nothing may load, frame or run.
const apiContentSecurityPolicy = {
  useDefaults: false,
  directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] },
};

// The docs page (Swagger UI) loads its scripts, styles and the document from this server only; its
// React views set inline styles. Nothing may come from another origin, so it also works offline.
const docsContentSecurityPolicy = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    scriptSrc: ["'self'"],
    styleSrc: ["'self'", "'unsafe-inline'"],
    fontSrc: ["'self'", "data:"],
    imgSrc: ["'self'", "data:"],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    baseUri: ["'self'"],
    frameAncestors: ["'self'"],
    formAction: ["'self'"],
  },
};

/**
 * What keeps one client from hurting the others, and browsers from being abused: security headers
 * (helmet), opt-in CORS, load shedding when the event loop is saturated (under-pressure; /healthz stays
 * up so a busy process is not restarted) and a request rate limit per API key.
 */
export const protectionPlugin = fp<ProtectionOptions>(
  async (app, options) => {
    app.addHook("onRoute", (route) => {
      if (route.url === options.docsPrefix || route.url.startsWith(`${options.docsPrefix}/`)) {
        route.config = { ...route.config, helmet: { contentSecurityPolicy: docsContentSecurityPolicy } } as typeof route.config;
      }
    });
    await app.register(helmet, { contentSecurityPolicy: apiContentSecurityPolicy });

    // Ajv coerces "Infinity" (or 400 digits) to a number and then skips its range keywords for it, `skip`
    // has no upper bound, and no schema forbids U+0000: such values would fail in Postgres as a 500.
    app.addHook("preHandler", async (request) => {
      const schema = request.routeOptions.schema;
      const issues = [...unstorableValues(request.query, schema?.querystring), ...unstorableValues(request.body, schema?.body)];
      if (issues.length > 0) throw new RequestValidationError(issues);
    });

    // @fastify/multipart pipes the raw request into busboy, past Fastify's body limit, and busboy only
    // bounds each field (silently truncating it). Count the bytes here; past the limit, the parser is
    // failed with a 413 (an error on the request stream is how it learns the upload broke off).
    app.addHook("preParsing", async (request) => {
      if (!request.headers["content-type"]?.toLowerCase().startsWith("multipart/")) return;
      if (Number(request.headers["content-length"]) > options.bodyLimitBytes) throw new BodyTooLargeError();
      const raw = request.raw;
      let received = 0;
      const count = (chunk: Buffer) => {
        received += chunk.length;
        if (received <= options.bodyLimitBytes) return;
        raw.off("data", count);
        raw.emit("error", new BodyTooLargeError());
      };
      raw.on("data", count);
      // Listening must not start the flow: the parser attaches later and resumes the stream itself.
      raw.pause();
    });

    if (options.corsOrigins && options.corsOrigins.length > 0) {
      await app.register(cors, {
        origin: options.corsOrigins.includes("*") ? "*" : options.corsOrigins,
        methods: ["GET", "HEAD", "POST", "PUT", "DELETE"],
        allowedHeaders: ["authorization", "content-type", "last-event-id", "perstack-lease-token", "x-request-id"],
        exposedHeaders: ["x-request-id", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"],
        credentials: false,
        maxAge: 600,
        // A bare OPTIONS gets 204 like any preflight instead of a text/plain 400 outside the error envelope.
        strictPreflight: false,
      });
    }

    if (options.underPressure) {
      // The samples taken until the server is ready, and the first one after, measure its own start-up
      // (loading and compiling modules, registering routes), not load: nothing is shed for them.
      const settleMs = options.underPressure.sampleIntervalMs ?? DEFAULT_SAMPLE_INTERVAL_MS;
      let sheddingFrom = Number.POSITIVE_INFINITY;
      app.addHook("onReady", async () => {
        sheddingFrom = performance.now() + settleMs;
      });
      await app.register(underPressure, {
        maxEventLoopDelay: options.underPressure.maxEventLoopDelayMs,
        sampleInterval: options.underPressure.sampleIntervalMs,
        // Sending here ends the request (as under-pressure documents); returning without sending lets it through.
        pressureHandler: (request: FastifyRequest, reply: FastifyReply) => {
          if (performance.now() < sheddingFrom) return;
          // Health checks, and the dashboard's own static files (the page then retries its API calls itself).
          const url = request.routeOptions.url ?? "";
          if (url === "/healthz" || url === "/favicon.ico" || url === "/dashboard" || url.startsWith("/dashboard/")) return;
          reply.header("retry-after", String(RETRY_AFTER_PRESSURE_S));
          sendError(reply, 503, "The server is overloaded; retry later");
        },
      });
    }

    if (options.rateLimit) {
      const { max, timeWindowMs } = options.rateLimit;
      await app.register(rateLimit, {
        max,
        timeWindow: timeWindowMs,
        // Route-level hooks run after the scope's authentication, so the principal is known here.
        hook: "onRequest",
        keyGenerator: (request) => request.principal?.apiKeyId ?? "",
        // Unauthenticated routes (health, docs, admin behind its token) are not limited per key.
        allowList: (request) => !request.principal,
        errorResponseBuilder: (_request, context) =>
          new RateLimitedError(
            `Rate limit exceeded: at most ${max} requests per ${timeWindowMs / 1000} s per API key; retry in ${context.after}`,
          ),
      });
    }
  },
  { name: "protection", fastify: "5.x" },
);
