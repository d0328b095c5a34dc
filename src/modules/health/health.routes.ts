import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { sendError } from "../../plugins/error-handler.ts";

const StatusSchema = Type.Object({ status: Type.Literal("ok") }, { examples: [{ status: "ok" }] });

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get("/healthz", { schema: { summary: "The process is up", tags: ["operations"], response: { 200: StatusSchema } } }, async () => ({
    status: "ok" as const,
  }));

  app.get(
    "/readyz",
    {
      schema: {
        summary: "The database is reachable",
        tags: ["operations"],
        response: {
          200: StatusSchema,
          503: Type.Object(
            { code: Type.Literal(503), error: Type.String(), reason: Type.String() },
            { examples: [{ code: 503, error: "Service Unavailable", reason: "Database unreachable" }] },
          ),
        },
      },
    },
    async (request, reply) => {
      try {
        await app.prisma.$queryRaw`SELECT 1`;
        return { status: "ok" as const };
      } catch (error) {
        request.log.warn({ err: error }, "readiness check failed");
        return sendError(reply, 503, "Database unreachable");
      }
    },
  );
};
