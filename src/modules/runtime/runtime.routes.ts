import { Type } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { emptyBodyAsObject } from "../../lib/empty-body.ts";
import { errorResponses } from "../../schemas/common.ts";
import { ExpertJobEnvelopeSchema, ExpertJobParamsSchema } from "../expert-jobs/expert-jobs.schemas.ts";
import {
  ClaimBodySchema,
  ClaimEnvelopeSchema,
  JobStatusEnvelopeSchema,
  LEASE_TOKEN_HEADER,
  LeaseTokenHeadersSchema,
  ReportStatusBodySchema,
  WatchStatusQuerySchema,
} from "./runtime.schemas.ts";

export const runtimeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    "/expert_jobs/claim",
    {
      config: { scope: "runtime" },
      preValidation: emptyBodyAsObject,
      schema: {
        operationId: "postApiStudioV1Expert_jobsClaim",
        summary: "Claim the oldest queued job (runtime scope)",
        description:
          "Takes the oldest queued job of the key's application and makes it `processing` under a lease of LEASE_MS, " +
          "renewed by every checkpoint post and every `processing` status report. With `waitMs`, waits that long for a job " +
          "to be queued (a start or continue wakes it at once). 204 when no job came.",
        tags: ["runtime"],
        body: ClaimBodySchema,
        response: {
          200: ClaimEnvelopeSchema,
          204: Type.Null({ description: "No job was queued within waitMs" }),
          ...errorResponses(401, 403, 422),
        },
      },
    },
    async (request, reply) => {
      // The response closes before it is sent only when the client went away: stop waiting for it.
      const clientGone = new AbortController();
      reply.raw.once("close", () => clientGone.abort());
      const claim = await app.runtime.claim(request.principal, request.body.waitMs, clientGone.signal);
      if (!claim) return reply.code(204).send(null);
      return { data: { claim } };
    },
  );

  app.post(
    "/expert_jobs/:expertJobId",
    {
      config: { scope: "runtime" },
      schema: {
        operationId: "postApiStudioV1Expert_jobsByExpertJobId",
        summary: "Report an expert job's status (runtime scope)",
        description:
          "`processing` is also the heartbeat that renews the lease. Reporting the current status again is a no-op. " +
          "A transition outside the job state machine is a 409. The answer is the job as it is now: a heartbeat answered " +
          "`canceling` means a client canceled it (stop, then report `canceled`). With `Perstack-Lease-Token`, a lease " +
          "that is no longer the job's current one is a 409 and nothing changes.",
        tags: ["runtime"],
        params: ExpertJobParamsSchema,
        headers: LeaseTokenHeadersSchema,
        body: ReportStatusBodySchema,
        response: { 200: ExpertJobEnvelopeSchema, ...errorResponses(401, 403, 404, 409, 422) },
      },
    },
    async (request) => ({
      data: {
        expertJob: await app.runtime.reportStatus(
          request.principal,
          request.params.expertJobId,
          request.body.status,
          request.headers[LEASE_TOKEN_HEADER],
        ),
      },
    }),
  );

  app.get(
    "/expert_jobs/:expertJobId/status",
    {
      config: { scope: "runtime" },
      schema: {
        operationId: "getApiStudioV1Expert_jobsByExpertJobIdStatus",
        summary: "Wait for an expert job's status to change (runtime scope)",
        description:
          "Long poll: answers the job's status as soon as it is not `while`, or after `waitMs` with the status then. A runtime " +
          "keeps one open while it runs a job (`while=processing&waitMs=25000`, again after each answer) and stops as soon as " +
          "the answer is `canceling` (then reports `canceled`): a client's cancel reaches it within the time a database " +
          "notification takes, instead of at its next checkpoint post. With `Perstack-Lease-Token`, a lease that is no " +
          "longer the job's current one is a 409 (at once, or when it happens during the wait).",
        tags: ["runtime"],
        params: ExpertJobParamsSchema,
        headers: LeaseTokenHeadersSchema,
        querystring: WatchStatusQuerySchema,
        response: { 200: JobStatusEnvelopeSchema, ...errorResponses(401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { expertJobId } = request.params;
      const clientGone = new AbortController();
      reply.raw.once("close", () => clientGone.abort());
      const leaseToken = request.headers[LEASE_TOKEN_HEADER];
      const status = await app.runtime.watchStatus(
        { principal: request.principal, expertJobId, query: request.query, leaseToken },
        clientGone.signal,
      );
      return { data: { jobStatus: { expertJobId, status } } };
    },
  );
};
