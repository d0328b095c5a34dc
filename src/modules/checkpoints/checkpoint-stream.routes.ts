import { Type } from "@sinclair/typebox";
import createError from "@fastify/error";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { RequestValidationError } from "../../errors.ts";
import { startEventStream } from "../../lib/event-stream.ts";
import { errorResponses } from "../../schemas/common.ts";
import { streamExample } from "../../schemas/examples.ts";
import { ExpertJobParamsSchema } from "../expert-jobs/expert-jobs.schemas.ts";
import { ExcludeSchema, parseExclude } from "./checkpoints.schemas.ts";

const StreamQuerySchema = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: "Start after this event id (like Last-Event-ID)" })),
  exclude: ExcludeSchema,
  access_token: Type.Optional(Type.String({ description: "The API key, for EventSource (which cannot send headers)" })),
});

const EVENT_ID = /^\d{1,10}$/;
const MAX_EVENT_ID = 2_147_483_647;

export const TooManyStreamsError = createError<[number]>(
  "APP_TOO_MANY_STREAMS",
  "Too many open streams for this API key (at most %s); close one or retry later",
  429,
);

/** 429 before a stream starts: the key holds too many open streams of this kind, or made too many requests. */
export const TooManyStreamsResponse = Type.Object(
  { code: Type.Literal(429), error: Type.Literal("Too Many Requests"), reason: Type.String() },
  {
    description: "The API key holds too many open streams, or made too many requests",
    examples: [
      { code: 429, error: "Too Many Requests", reason: "Too many open streams for this API key (at most 100); close one or retry later" },
    ],
  },
);

export const checkpointStreamRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    "/expert_jobs/:expertJobId/checkpoints/stream",
    {
      config: { acceptsAccessTokenQuery: true },
      schema: {
        operationId: "getApiStudioV1Expert_jobsByExpertJobIdCheckpointsStream",
        summary: "Stream checkpoints (Server-Sent Events)",
        description:
          "Replays the job's checkpoints, then sends new ones live as `message` events (`id` = the checkpoint's sequence in the job), " +
          "each whole, whatever its size, written at the client's own pace. `complete {status, expertJobId}` ends the stream once the " +
          "job is stopped; `error {type, expertJobId, message?, checkpointId?}` reports a failure while streaming. Resume with " +
          "`Last-Event-ID` or `?after=`. `: ping` comments keep idle connections open. A client whose socket takes nothing for " +
          "SSE_STALL_TIMEOUT_MS, or that falls more than SSE_MAX_LAG_EVENTS behind, is cut off without an event and resumes with " +
          "`Last-Event-ID`. `exclude` leaves heavy parts out of every event, as on GET and the list.",
        tags: ["checkpoints"],
        params: ExpertJobParamsSchema,
        querystring: StreamQuerySchema,
        produces: ["text/event-stream"],
        response: {
          200: Type.String({ description: "text/event-stream of `message`, `error` and `complete` events", examples: [streamExample] }),
          ...errorResponses(401, 404, 422),
          429: TooManyStreamsResponse,
        },
      },
    },
    async (request, reply) => {
      const { expertJobId } = request.params;
      const lastEventId = request.headers["last-event-id"];
      if (
        lastEventId !== undefined &&
        !(typeof lastEventId === "string" && EVENT_ID.test(lastEventId) && Number(lastEventId) <= MAX_EVENT_ID)
      ) {
        throw new RequestValidationError([
          { path: "/headers/last-event-id", message: `must be a non-negative integer event id of at most ${MAX_EVENT_ID}` },
        ]);
      }
      await app.expertJobs.findRow(request.principal, expertJobId);
      const afterSeq = lastEventId !== undefined ? Number(lastEventId) : (request.query.after ?? 0);
      const { apiKeyId } = request.principal;
      if (app.streamHub.streamsOf(apiKeyId) >= app.streamHub.maxStreamsPerKey)
        throw new TooManyStreamsError(app.streamHub.maxStreamsPerKey);

      if (!startEventStream(request, reply)) return;
      app.streamHub.subscribe({ expertJobId, afterSeq, exclude: parseExclude(request.query.exclude), response: reply.raw, apiKeyId });
    },
  );
};
