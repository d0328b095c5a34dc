import fp from "fastify-plugin";
import type { FastifyRequest } from "fastify";
import { ForbiddenError, UnauthorizedError, reasons } from "../errors.ts";
import { apiKeySecretMatches, constantTimeEqual, parseApiKey } from "../lib/secrets.ts";

export type ApiKeyScope = "client" | "runtime";

export interface Principal {
  apiKeyId: string;
  applicationId: string;
  organizationId: string;
  scope: ApiKeyScope;
}

declare module "fastify" {
  interface FastifyInstance {
    /** onRequest hook: resolves the bearer key to its application, or answers 401/403. */
    authenticateApiKey(request: FastifyRequest): Promise<void>;
    /** onRequest hook for the admin API: `Authorization: Bearer <ADMIN_TOKEN>`. */
    authenticateAdmin(request: FastifyRequest): Promise<void>;
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

export const authPlugin = fp<{ adminToken?: string }>(
  async (app, { adminToken }) => {
    app.decorateRequest("principal", null as unknown as Principal);

    app.decorate("authenticateApiKey", async (request: FastifyRequest) => {
      const parsed = parseApiKey(bearerToken(request) ?? "");
      if (!parsed) throw new UnauthorizedError();
      const apiKey = await app.prisma.apiKey.findUnique({
        where: { id: parsed.id },
        select: { id: true, scope: true, revokedAt: true, secretHash: true, application: { select: { id: true, organizationId: true } } },
      });
      if (!apiKey || apiKey.revokedAt !== null || !apiKeySecretMatches(parsed.secret, apiKey.secretHash)) {
        throw new UnauthorizedError();
      }
      if (request.routeOptions.config.scope === "runtime" && apiKey.scope !== "runtime") {
        throw new ForbiddenError(reasons.runtimeScopeRequired);
      }
      request.principal = {
        apiKeyId: apiKey.id,
        applicationId: apiKey.application.id,
        organizationId: apiKey.application.organizationId,
        scope: apiKey.scope,
      };
    });

    app.decorate("authenticateAdmin", async (request: FastifyRequest) => {
      const token = bearerToken(request);
      if (adminToken === undefined || token === undefined || !constantTimeEqual(token, adminToken)) throw new UnauthorizedError();
    });
  },
  { name: "auth", dependencies: ["database"], fastify: "5.x" },
);
