import { Type, type Static } from "@sinclair/typebox";
import { IdSchema, TimestampSchema } from "../../schemas/common.ts";
import type { ExpertJobStatus } from "../expert-jobs/expert-jobs.schemas.ts";

/** The job statuses that send a webhook: the finished ones and the paused ones a client must answer. */
export const webhookStatuses = [
  "completed",
  "failed",
  "canceled",
  "expired",
  "requestInteractiveToolResult",
  "exceededMaxSteps",
] as const satisfies readonly ExpertJobStatus[];

export const webhookEventTypes = webhookStatuses.map((status) => `expert_job.${status}` as const);
export type WebhookEventType = (typeof webhookEventTypes)[number];

export const WebhookEventTypeSchema = Type.Union(
  webhookEventTypes.map((type) => Type.Literal(type)),
  { description: "`expert_job.<status>`: the job reached that status" },
);

const WebhookUrlSchema = Type.String({
  minLength: 1,
  maxLength: 2048,
  description:
    "http or https. Refused: credentials in the URL, cloud metadata names and addresses, link-local, multicast; loopback and " +
    "private ranges unless the server runs with WEBHOOK_ALLOW_PRIVATE=true. Checked again on every delivery.",
});

export const CreateWebhookEndpointBodySchema = Type.Object(
  {
    url: WebhookUrlSchema,
    eventTypes: Type.Optional(
      Type.Array(WebhookEventTypeSchema, { minItems: 1, uniqueItems: true, description: "Default: every event type" }),
    ),
  },
  { examples: [{ url: "https://hooks.example.com/expert-jobs", eventTypes: ["expert_job.completed", "expert_job.failed"] }] },
);
export type CreateWebhookEndpointBody = Static<typeof CreateWebhookEndpointBodySchema>;

const endpointFields = {
  id: IdSchema,
  applicationId: IdSchema,
  url: Type.String(),
  eventTypes: Type.Array(WebhookEventTypeSchema),
  createdAt: TimestampSchema,
};

export const WebhookEndpointSchema = Type.Object(endpointFields);
export type WebhookEndpointView = Static<typeof WebhookEndpointSchema>;

export const CreatedWebhookEndpointSchema = Type.Object({
  ...endpointFields,
  secret: Type.String({
    description: "The signing secret (`whsec_…`, Standard Webhooks), shown only in this response: give it to the receiver's verifier",
  }),
});
export type CreatedWebhookEndpoint = Static<typeof CreatedWebhookEndpointSchema>;

export const WebhookAttemptSchema = Type.Object({
  number: Type.Integer({ minimum: 1 }),
  startedAt: TimestampSchema,
  durationMs: Type.Integer(),
  responseStatus: Type.Optional(Type.Integer({ description: "The receiver's status code (2xx: delivered)" })),
  error: Type.Optional(Type.String({ description: "Why no answer came: refused address, connection error, timeout" })),
  responseBody: Type.Optional(Type.String({ description: "The first KiB of the receiver's answer" })),
});

export const WebhookDeliverySchema = Type.Object({
  id: IdSchema,
  endpointId: IdSchema,
  webhookId: Type.String({ description: "The `webhook-id` header: the same on every attempt and redelivery of the event" }),
  eventType: WebhookEventTypeSchema,
  expertJobId: IdSchema,
  status: Type.Union([Type.Literal("pending"), Type.Literal("succeeded"), Type.Literal("failed")]),
  attempts: Type.Integer({ description: "Attempts so far" }),
  nextAttemptAt: Type.Optional(Type.String({ format: "date-time", description: "While pending: when the next attempt is due" })),
  createdAt: TimestampSchema,
  attemptLog: Type.Array(WebhookAttemptSchema, { description: "Every attempt, oldest first" }),
});
export type WebhookDeliveryView = Static<typeof WebhookDeliverySchema>;

export const WebhookEndpointParamsSchema = Type.Object({ webhookEndpointId: IdSchema });
export const WebhookDeliveryParamsSchema = Type.Object({ webhookDeliveryId: IdSchema });
