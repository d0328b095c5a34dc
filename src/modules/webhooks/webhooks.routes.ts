import { Type, type Static, type TArray, type TSchema } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { PageMetaSchema, errorResponses } from "../../schemas/common.ts";
import { pageMetaExample } from "../../schemas/examples.ts";
import { AdminListQuerySchema, ApplicationParamsSchema } from "../admin/admin.schemas.ts";
import {
  CreateWebhookEndpointBodySchema,
  CreatedWebhookEndpointSchema,
  WebhookDeliveryParamsSchema,
  WebhookDeliverySchema,
  WebhookEndpointParamsSchema,
  WebhookEndpointSchema,
  type WebhookDeliveryView,
  type WebhookEndpointView,
} from "./webhooks.schemas.ts";

const tags = ["webhooks"];
const NoContent = Type.Null({ description: "No content" });

const endpointExample: WebhookEndpointView = {
  id: "wh0k1e2n3d4p5o6i7n8t9a0b",
  applicationId: "a1p2p3l4i5c6a7t8i9o0n1i2",
  url: "https://hooks.example.com/expert-jobs",
  eventTypes: ["expert_job.completed", "expert_job.failed"],
  createdAt: "2026-12-01T09:00:00.000Z",
};
const deliveryExample: WebhookDeliveryView = {
  id: "d1e2l3i4v5e6r7y8a9b0c1d2",
  endpointId: endpointExample.id,
  webhookId: "msg_4f1c2a9e0b7d4c3a8e6f5d2c1b0a9e8f",
  eventType: "expert_job.completed",
  expertJobId: "j1o2b3i4d5e6x7a8m9p0l1e2",
  status: "succeeded",
  attempts: 2,
  createdAt: "2026-12-01T09:30:00.000Z",
  attemptLog: [
    { number: 1, startedAt: "2026-12-01T09:30:00.012Z", durationMs: 10_003, error: "no answer within 10000 ms" },
    { number: 2, startedAt: "2026-12-01T09:30:13.514Z", durationMs: 48, responseStatus: 200, responseBody: "ok" },
  ],
};

const listOf = <Name extends string, Item extends TSchema>(name: Name, item: Item, example: Static<Item>) =>
  Type.Object(
    { data: Type.Object({ [name]: Type.Array(item) } as Record<Name, TArray<Item>>), meta: PageMetaSchema },
    { examples: [{ data: { [name]: [example] }, meta: pageMetaExample }] },
  );

/**
 * Webhook endpoints per application. Events: a job reaching completed, failed, canceled, expired,
 * requestInteractiveToolResult or exceededMaxSteps, signed the Standard Webhooks way (README, Webhooks).
 */
export const webhookAdminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    "/applications/:applicationId/webhook_endpoints",
    {
      schema: {
        summary: "Register a webhook endpoint (its signing secret is shown only in this response)",
        description:
          "Each event is a POST of `{type, timestamp, data: {expertJob}}` (the job as GET returns it) with the Standard Webhooks " +
          "headers `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` HMAC-SHA256 keyed with the secret). A 2xx " +
          "answer delivers it; anything else is retried with exponential backoff within WEBHOOK_RETRY_WINDOW_MS. At least " +
          "once: receivers de-duplicate by `webhook-id`.",
        tags,
        params: ApplicationParamsSchema,
        body: CreateWebhookEndpointBodySchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ webhookEndpoint: CreatedWebhookEndpointSchema }) },
            {
              examples: [
                { data: { webhookEndpoint: { ...endpointExample, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw+Qj5Y3kAuNU=" } } },
              ],
            },
          ),
          ...errorResponses(401, 404, 422),
        },
      },
    },
    async (request) => ({ data: { webhookEndpoint: await app.webhooks.create(request.params.applicationId, request.body) } }),
  );

  app.get(
    "/applications/:applicationId/webhook_endpoints",
    {
      schema: {
        summary: "List an application's webhook endpoints (never their secrets)",
        tags,
        params: ApplicationParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("webhookEndpoints", WebhookEndpointSchema, endpointExample), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.webhooks.list(request.params.applicationId, request.query);
      return { data: { webhookEndpoints: items }, meta };
    },
  );

  app.delete(
    "/webhook_endpoints/:webhookEndpointId",
    {
      schema: {
        summary: "Delete a webhook endpoint with its pending deliveries and log",
        tags,
        params: WebhookEndpointParamsSchema,
        response: { 204: NoContent, ...errorResponses(401, 404, 422) },
      },
    },
    async (request, reply) => {
      await app.webhooks.delete(request.params.webhookEndpointId);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/webhook_endpoints/:webhookEndpointId/deliveries",
    {
      schema: {
        summary: "The delivery log of a webhook endpoint: each event's status and every attempt",
        tags,
        params: WebhookEndpointParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("webhookDeliveries", WebhookDeliverySchema, deliveryExample), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.webhooks.deliveries(request.params.webhookEndpointId, request.query);
      return { data: { webhookDeliveries: items }, meta };
    },
  );

  app.post(
    "/webhook_deliveries/:webhookDeliveryId/redeliver",
    {
      schema: {
        summary: "Send an event again (same webhook-id and body), whatever became of it, with a fresh retry window",
        tags,
        params: WebhookDeliveryParamsSchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ webhookDelivery: WebhookDeliverySchema }) },
            {
              examples: [
                { data: { webhookDelivery: { ...deliveryExample, status: "pending", nextAttemptAt: "2026-12-01T10:00:00.000Z" } } },
              ],
            },
          ),
          ...errorResponses(401, 404, 422),
        },
      },
    },
    async (request) => ({ data: { webhookDelivery: await app.webhooks.redeliver(request.params.webhookDeliveryId) } }),
  );
};
