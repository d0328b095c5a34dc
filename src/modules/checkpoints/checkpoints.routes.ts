import type { TSchema } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply, FastifySchemaCompiler, FastifySchemaValidationError } from "fastify";
import { errorResponses } from "../../schemas/common.ts";
import { checkpointSerializer } from "./checkpoint-json.ts";
import { ExpertJobParamsSchema } from "../expert-jobs/expert-jobs.schemas.ts";
import { LEASE_TOKEN_HEADER, LeaseTokenHeadersSchema } from "../runtime/runtime.schemas.ts";
import {
  CheckpointEnvelopeSchema,
  CheckpointListSchema,
  CheckpointParamsSchema,
  GetCheckpointQuerySchema,
  ListCheckpointsQuerySchema,
  PostCheckpointBodySchema,
  parseExclude,
} from "./checkpoints.schemas.ts";

/**
 * Checks values as sent. The app-wide validator coerces (form bodies need it), which would turn a
 * runtime's `messages: null` into `[null]` and `status: ["completed"]` into `"completed"`.
 */
const strictValidator: FastifySchemaCompiler<unknown> = ({ schema }) => {
  const check = TypeCompiler.Compile(schema as TSchema);
  return (value) => {
    if (check.Check(value)) return { value };
    const issues = new Map<string, FastifySchemaValidationError>();
    for (const { path, message } of check.Errors(value)) {
      if (!issues.has(path)) issues.set(path, { keyword: "type", instancePath: path, schemaPath: "#", params: {}, message });
    }
    return { error: [...issues.values()] };
  };
};

/**
 * Checkpoint answers are serialised here (checkpoint-json.ts) to splice in conversations that are already
 * JSON text. A string goes out as it is, no serialiser runs; the type provider only knows the object form.
 */
const sendJsonText = (reply: FastifyReply, json: string) => reply.type("application/json; charset=utf-8").send(json as never);

export const checkpointsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const checkpointJson = checkpointSerializer();

  app.get(
    "/expert_jobs/:expertJobId/checkpoints/:checkpointId",
    {
      schema: {
        operationId: "getApiStudioV1Expert_jobsByExpertJobIdCheckpointsByCheckpointId",
        summary: "Get a checkpoint",
        tags: ["checkpoints"],
        params: CheckpointParamsSchema,
        querystring: GetCheckpointQuerySchema,
        response: { 200: CheckpointEnvelopeSchema, ...errorResponses(401, 404, 422) },
      },
    },
    async (request, reply) => {
      const { expertJobId, checkpointId } = request.params;
      const exclude = parseExclude(request.query.exclude);
      const checkpoint = await app.checkpoints.get(request.principal, expertJobId, checkpointId, { exclude });
      return sendJsonText(reply, checkpointJson.envelope(checkpoint));
    },
  );

  app.get(
    "/expert_jobs/:expertJobId/checkpoints",
    {
      schema: {
        operationId: "getApiStudioV1Expert_jobsByExpertJobIdCheckpoints",
        summary: "List checkpoints",
        tags: ["checkpoints"],
        params: ExpertJobParamsSchema,
        querystring: ListCheckpointsQuerySchema,
        response: { 200: CheckpointListSchema, ...errorResponses(401, 404, 422) },
      },
    },
    async (request, reply) => {
      const { checkpoints, total } = await app.checkpoints.list(request.principal, request.params.expertJobId, request.query);
      return sendJsonText(reply, checkpointJson.page(checkpoints, { total, take: request.query.take, skip: request.query.skip }));
    },
  );

  app.post(
    "/expert_jobs/:expertJobId/checkpoints",
    {
      config: { scope: "runtime" },
      validatorCompiler: strictValidator,
      schema: {
        operationId: "postApiStudioV1Expert_jobsByExpertJobIdCheckpoints",
        summary: "Create a checkpoint (runtime scope)",
        tags: ["checkpoints"],
        description:
          "With `Perstack-Lease-Token` (the claim's `leaseToken`), a lease that is no longer the job's current one is a 409 " +
          "and nothing is stored.",
        params: ExpertJobParamsSchema,
        headers: LeaseTokenHeadersSchema,
        body: PostCheckpointBodySchema,
        response: { 200: CheckpointEnvelopeSchema, ...errorResponses(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const { expertJobId } = request.params;
      const checkpoint = await app.checkpoints.post(request.principal, expertJobId, request.body, request.headers[LEASE_TOKEN_HEADER]);
      return sendJsonText(reply, checkpointJson.envelope(checkpoint));
    },
  );
};
