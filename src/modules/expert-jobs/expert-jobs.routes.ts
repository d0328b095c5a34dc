import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { emptyBodyAsObject } from "../../lib/empty-body.ts";
import { errorResponses } from "../../schemas/common.ts";
import {
  ContinueExpertJobBodySchema,
  ExpertJobEnvelopeSchema,
  ExpertJobListSchema,
  ExpertJobParamsSchema,
  ListExpertJobsQuerySchema,
  ResumeExpertJobBodySchema,
  StartExpertJobBodySchema,
  StartExpertJobHeadersSchema,
  StartExpertJobReplyHeaders,
} from "./expert-jobs.schemas.ts";

export const expertJobsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    "/expert_jobs",
    {
      schema: {
        operationId: "postApiStudioV1Expert_jobs",
        summary: "Start an expert job",
        tags: ["expert jobs"],
        description:
          "Queues a job. Send an `Idempotency-Key` to retry safely: a retry with the same key and body within 24 hours " +
          "answers with the job the first request started (header `Idempotent-Replayed: true`) instead of starting another; " +
          "the same key with another body is a 409. Without the header every request starts a job.",
        consumes: ["application/json", "multipart/form-data"],
        headers: StartExpertJobHeadersSchema,
        body: StartExpertJobBodySchema,
        response: { 200: { ...ExpertJobEnvelopeSchema, headers: StartExpertJobReplyHeaders }, ...errorResponses(400, 401, 409, 422) },
      },
    },
    async (request, reply) => {
      const { expertJob, replayed } = await app.expertJobs.start(request.principal, request.body, request.headers["idempotency-key"]);
      if (replayed) reply.header("idempotent-replayed", "true");
      return { data: { expertJob } };
    },
  );

  app.get(
    "/expert_jobs",
    {
      schema: {
        operationId: "getApiStudioV1Expert_jobs",
        summary: "List expert jobs",
        tags: ["expert jobs"],
        querystring: ListExpertJobsQuerySchema,
        response: { 200: ExpertJobListSchema, ...errorResponses(401, 422) },
      },
    },
    async (request) => {
      const { expertJobs, total } = await app.expertJobs.list(request.principal, request.query);
      return { data: { expertJobs }, meta: { total, take: request.query.take, skip: request.query.skip } };
    },
  );

  app.get(
    "/expert_jobs/:expertJobId",
    {
      schema: {
        operationId: "getApiStudioV1Expert_jobsByExpertJobId",
        summary: "Get an expert job",
        tags: ["expert jobs"],
        params: ExpertJobParamsSchema,
        response: { 200: ExpertJobEnvelopeSchema, ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => ({ data: { expertJob: await app.expertJobs.get(request.principal, request.params.expertJobId) } }),
  );

  app.post(
    "/expert_jobs/:expertJobId/continue",
    {
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: "postApiStudioV1Expert_jobsByExpertJobIdContinue",
        summary: "Continue an expert job",
        description:
          "Continue a paused expert job from its last checkpoint. Used for interactive tool responses, additional queries, " +
          "or resuming after max steps exceeded. Accepts JSON or multipart/form-data (numbers as strings, `files` repeated).",
        tags: ["expert jobs"],
        consumes: ["application/json", "multipart/form-data"],
        params: ExpertJobParamsSchema,
        body: ContinueExpertJobBodySchema,
        response: { 200: ExpertJobEnvelopeSchema, ...errorResponses(400, 401, 404, 422) },
      },
    },
    async (request) => ({
      data: { expertJob: await app.expertJobs.continue(request.principal, request.params.expertJobId, request.body) },
    }),
  );

  app.post(
    "/expert_jobs/:expertJobId/resume_from",
    {
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: "postApiStudioV1Expert_jobsByExpertJobIdResume_from",
        summary: "Resume an expert job from a checkpoint",
        description: "Like continue, but the runtime resumes from `checkpointId` (a checkpoint of this job) instead of the latest.",
        tags: ["expert jobs"],
        consumes: ["application/json", "multipart/form-data"],
        params: ExpertJobParamsSchema,
        body: ResumeExpertJobBodySchema,
        response: { 200: ExpertJobEnvelopeSchema, ...errorResponses(400, 401, 404, 422) },
      },
    },
    async (request) => ({
      data: { expertJob: await app.expertJobs.resumeFrom(request.principal, request.params.expertJobId, request.body) },
    }),
  );

  app.post(
    "/expert_jobs/:expertJobId/cancel",
    {
      schema: {
        operationId: "postApiStudioV1Expert_jobsByExpertJobIdCancel",
        summary: "Cancel an expert job",
        description:
          "queued or paused → `canceled`; processing or requestDelegateResult → `canceling` (the runtime finishes it); " +
          "canceling or canceled → unchanged.",
        tags: ["expert jobs"],
        params: ExpertJobParamsSchema,
        response: { 200: ExpertJobEnvelopeSchema, ...errorResponses(400, 401, 404, 422) },
      },
    },
    async (request) => ({ data: { expertJob: await app.expertJobs.cancel(request.principal, request.params.expertJobId) } }),
  );
};
