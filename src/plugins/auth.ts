import fp from "fastify-plugin";
import type { FastifyReply, FastifyRequest } from "fastify";
import { ForbiddenError, UnauthorizedError, reasons } from "../errors.ts";
import { FailureLimiter } from "../lib/failure-limiter.ts";
import { ErrorResponses } from "../schemas/common.ts";
import { RateLimitedError } from "./protection.ts";
import { apiKeySecretMatches, constantTimeEqual, parseApiKey } from "../lib/secrets.ts";
import type { Sql } from "../db/sql.ts";

export type ApiKeyScope = "client" | "runtime";

export interface Principal {
  apiKeyId: string;
  applicationId: string;
  organizationId: string;
  scope: ApiKeyScope;
}

declare module "fastify" {
  interface FastifyInstance {
    /** onRequest hook: resolves the bearer key to its application, or answers 401/403 (429 after too many failures). */
    authenticateApiKey(request: FastifyRequest, reply: FastifyReply): Promise<void>;
    /** onRequest hook for the admin API: `Authorization: Bearer <ADMIN_TOKEN>`. */
    authenticateAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void>;
  }
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** The key scope a route needs; `client` (the default) admits runtime keys too. */
    scope?: ApiKeyScope;
    /** EventSource cannot send headers, so the stream also takes `?access_token=`. */
    acceptsAccessTokenQuery?: boolean;
  }
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const match = /^Bearer +(\S+) *$/i.exec(header);
    return match?.[1];
  }
  if (request.routeOptions.config.acceptsAccessTokenQuery) {
    const token = (request.query as Record<string, unknown> | undefined)?.access_token;
    return typeof token === "string" ? token : undefined;
  }
  return undefined;
}

interface ActiveApiKey {
  id: string;
  scope: ApiKeyScope;
  secret_hash: string;
  application_id: string;
  organization_id: string;
}

/** Every API request reads its key: one statement with its application (Prisma's `include` takes two). */
async function findActiveApiKey(sql: Sql, id: string): Promise<ActiveApiKey | undefined> {
  const [row] = await sql.query<ActiveApiKey>(
    "active_api_key",
    `SELECT k.id, k.scope::text AS scope, encode(k.secret_hash, 'hex') AS secret_hash, a.id AS application_id, a.organization_id
    FROM api_key k JOIN application a ON a.id = k.application_id WHERE k.id = $1 AND k.revoked_at IS NULL`,
    [id],
  );
  return row;
}

export interface AuthFailureLimit {
  /** Failed authentications one client address may make per window; past them its requests get 429. */
  max: number;
  timeWindowMs: number;
}

export interface AuthOptions {
  adminToken?: string;
  failureLimit: AuthFailureLimit | false;
}

export const authPlugin = fp<AuthOptions>(
  async (app, { adminToken, failureLimit }) => {
    app.decorateRequest("principal", null as unknown as Principal);

    // Guessing keys costs a database lookup per guess: an address past its failures is answered before any lookup.
    const failures = failureLimit ? new FailureLimiter(failureLimit.max, failureLimit.timeWindowMs) : undefined;
    const guarded = (authenticate: (request: FastifyRequest) => Promise<void>) => async (request: FastifyRequest, reply: FastifyReply) => {
      if (!failures) return authenticate(request);
      const refuseFor = (ms: number) => {
        const seconds = Math.max(1, Math.ceil(ms / 1000));
        reply.header("retry-after", String(seconds));
        return new RateLimitedError(
          `Too many failed authentications from this address: at most ${failures.max} per ${failures.windowMs / 1000} s; retry in ${seconds} s`,
        );
      };
      const waitMs = failures.retryAfterMs(request.ip);
      if (waitMs > 0) throw refuseFor(waitMs);
      try {
        await authenticate(request);
      } catch (error) {
        if (!(error instanceof UnauthorizedError)) throw error;
        failures.fail(request.ip);
        const nowWaitMs = failures.retryAfterMs(request.ip);
        throw nowWaitMs > 0 ? refuseFor(nowWaitMs) : error;
      }
    };

    // Every route that authenticates can also answer 429 (too many failures here, or the per-key request limit).
    app.addHook("onRoute", (route) => {
      const responses = route.schema?.response as Record<string, unknown> | undefined;
      if (responses?.[401] && !responses[429]) responses[429] = ErrorResponses[429];
    });

    app.decorate(
      "authenticateApiKey",
      guarded(async (request: FastifyRequest) => {
        const parsed = parseApiKey(bearerToken(request) ?? "");
        if (!parsed) throw new UnauthorizedError();
        const apiKey = await findActiveApiKey(app.sql, parsed.id);
        if (!apiKey || !apiKeySecretMatches(parsed.secret, Buffer.from(apiKey.secret_hash, "hex"))) throw new UnauthorizedError();
        if (request.routeOptions.config.scope === "runtime" && apiKey.scope !== "runtime") {
          throw new ForbiddenError(reasons.runtimeScopeRequired);
        }
        request.principal = {
          apiKeyId: apiKey.id,
          applicationId: apiKey.application_id,
          organizationId: apiKey.organization_id,
          scope: apiKey.scope,
        };
      }),
    );

    app.decorate(
      "authenticateAdmin",
      guarded(async (request: FastifyRequest) => {
        const token = bearerToken(request);
        if (adminToken === undefined || token === undefined || !constantTimeEqual(token, adminToken)) throw new UnauthorizedError();
      }),
    );
  },
  { name: "auth", dependencies: ["database"], fastify: "5.x" },
);
