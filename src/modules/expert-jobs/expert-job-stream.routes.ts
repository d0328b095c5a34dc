import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { startEventStream } from "../../lib/event-stream.ts";
import { errorResponses } from "../../schemas/common.ts";
import { TooManyStreamsError, TooManyStreamsResponse } from "../checkpoints/checkpoint-stream.routes.ts";
import { ExpertJobStreamQuerySchema, expertJobStreamExample } from "./expert-jobs.schemas.ts";

export const expertJobStreamRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    "/expert_jobs/stream",
    {
      config: { acceptsAccessTokenQuery: true },
      schema: {
        operationId: "getApiStudioV1Expert_jobsStream",
        summary: "Stream the application's job changes (Server-Sent Events)",
        description:
          "Sends a `message` event whenever a job of the key's application changes: it starts, changes status, or a checkpoint " +
          "moves its step, usage and duration. The data is the job exactly as `GET /expert_jobs/{expertJobId}` answers it " +
          "(changes close together are sent once, as the job stands then). Nothing is replayed and events carry no id: read " +
          "the list when the stream opens, and again after a reconnect (the server also ends streams that may have missed " +
          "changes, so that their clients do). `: ping` comments keep idle connections open.",
        tags: ["expert jobs"],
        querystring: ExpertJobStreamQuerySchema,
        produces: ["text/event-stream"],
        response: {
          200: Type.String({ description: "text/event-stream of `message` events, each an expertJob", examples: [expertJobStreamExample] }),
          ...errorResponses(401, 422),
          429: TooManyStreamsResponse,
        },
      },
    },
    async (request, reply) => {
      const { apiKeyId, applicationId } = request.principal;
      const hub = app.jobChanges;
      if (hub.streamsOf(apiKeyId) >= hub.options.maxStreamsPerKey) throw new TooManyStreamsError(hub.options.maxStreamsPerKey);
      if (!startEventStream(request, reply)) return;
      await hub.subscribe(applicationId, apiKeyId, reply.raw);
      // A comment first: the client's EventSource opens (and reads the list) at once.
      if (!reply.raw.writableEnded && !reply.raw.destroyed) reply.raw.write(": changes of this application's jobs follow\n\n");
    },
  );
};
