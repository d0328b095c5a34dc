import { Type, type Static } from "@sinclair/typebox";
import {
  ExpertDigestSchema,
  ExpertKeySchema,
  IdSchema,
  ModelSchema,
  numericString,
  PageMetaSchema,
  PagingQuerySchema,
  TimestampSchema,
  UsageSchema,
} from "./common.ts";
import { exampleIds, expertJobExample, pageMetaExample } from "./examples.ts";

export const expertJobStatuses = [
  "queued",
  "processing",
  "completed",
  "requestInteractiveToolResult",
  "requestDelegateResult",
  "exceededMaxSteps",
  "failed",
  "canceling",
  "canceled",
  "expired",
] as const;
export type ExpertJobStatus = (typeof expertJobStatuses)[number];

export const ExpertJobStatusSchema = Type.Union(expertJobStatuses.map((status) => Type.Literal(status)));

export const ExpertJobSchema = Type.Object({
  type: Type.Literal("expertJob"),
  id: IdSchema,
  organizationId: IdSchema,
  createdAt: TimestampSchema,
  updatedAt: TimestampSchema,
  status: ExpertJobStatusSchema,
  runtimeVersion: Type.Literal("v1.0"),
  expertKey: Type.String({ description: "Unique identifier for an expert version (name@version or name@tag)" }),
  query: Type.Optional(Type.String()),
  files: Type.Array(Type.String()),
  interactiveToolCallResult: Type.Optional(Type.Boolean()),
  expert: ExpertDigestSchema,
  model: ModelSchema,
  temperature: Type.Number(),
  maxSteps: Type.Number(),
  maxRetries: Type.Number(),
  currentStep: Type.Number(),
  totalSteps: Type.Number(),
  totalDuration: Type.Number(),
  usage: UsageSchema,
  applicationId: IdSchema,
});
export type ExpertJob = Static<typeof ExpertJobSchema>;

export const ExpertJobEnvelopeSchema = Type.Object(
  { data: Type.Object({ expertJob: ExpertJobSchema }) },
  { examples: [{ data: { expertJob: expertJobExample } }] },
);

export const ExpertJobParamsSchema = Type.Object({ expertJobId: IdSchema });

// The contract types these as strings and its clients send numbers too: a JSON body may send either (a
// numeric string in JSON's own number syntax); multipart/form-data sends every field as text anyway.
export const RunSettingsSchema = {
  temperature: Type.Optional(numericString(Type.Number({ minimum: 0, maximum: 1, description: "0..1; a number or a numeric string" }))),
  maxSteps: Type.Optional(
    numericString(Type.Integer({ minimum: 1, maximum: 1_000_000, description: "≥ 1; a number or a numeric string" })),
  ),
  maxRetries: Type.Optional(numericString(Type.Integer({ minimum: 0, maximum: 1000, description: "≥ 0; a number or a numeric string" }))),
  model: Type.Optional(ModelSchema),
};

export const QuerySchema = Type.String({ maxLength: 20480 });
const FileSchema = Type.String({ minLength: 1, maxLength: 10240 });
export const FilesSchema = Type.Union([FileSchema, Type.Array(FileSchema, { maxItems: 1000 })], {
  description: "A string or an array of strings; a single string becomes a one-element array",
});

export const StartExpertJobBodySchema = Type.Object(
  {
    expertKey: ExpertKeySchema,
    query: Type.Optional(QuerySchema),
    files: Type.Optional(FilesSchema),
    ...RunSettingsSchema,
  },
  { examples: [{ expertKey: "@acme/researcher@1.2.0", query: expertJobExample.query, model: "claude-sonnet-4-5", maxSteps: 50 }] },
);
export type StartExpertJobBody = Static<typeof StartExpertJobBodySchema>;

/** How long a start's `Idempotency-Key` is remembered. */
export const IDEMPOTENCY_WINDOW_MS = 24 * 60 * 60 * 1000;

export const IdempotencyKeySchema = Type.String({
  minLength: 1,
  maxLength: 255,
  pattern: "^[!-~]+$",
  description:
    "1–255 printable ASCII characters, no spaces (a UUID is a good key). A retry with the same key and the same body within " +
    "24 hours gets the job the first request started, as it is now (and `Idempotent-Replayed: true`); the same key with " +
    "another body gets 409. Keys are per application; only starts that succeeded are remembered.",
  examples: ["9f2c4b1e-7d3a-4e5f-8a6b-0c1d2e3f4a5b"],
});

export const StartExpertJobHeadersSchema = Type.Object({ "idempotency-key": Type.Optional(IdempotencyKeySchema) });

/** Response headers of a start, by name (documented in OpenAPI; the body is the job either way). */
export const StartExpertJobReplyHeaders = {
  "idempotent-replayed": Type.Literal("true", {
    description: "Sent when an `Idempotency-Key` retry got the job the first request started",
  }),
};

const ContinueFieldsSchema = {
  query: Type.Optional(QuerySchema),
  interactiveToolCallResult: Type.Optional(
    Type.Boolean({ description: 'The query is the result of the interactive tool call the job stopped at; `"true"` in form data' }),
  ),
  files: Type.Optional(FilesSchema),
  ...RunSettingsSchema,
};

export const ContinueExpertJobBodySchema = Type.Object(ContinueFieldsSchema, {
  examples: [{ query: "Yes, include preprints too.", interactiveToolCallResult: true }],
});
export type ContinueExpertJobBody = Static<typeof ContinueExpertJobBodySchema>;

export const ResumeExpertJobBodySchema = Type.Object(
  {
    checkpointId: IdSchema,
    ...ContinueFieldsSchema,
  },
  { examples: [{ checkpointId: exampleIds.previousCheckpoint, query: "Focus on papers with code." }] },
);
export type ResumeExpertJobBody = Static<typeof ResumeExpertJobBodySchema>;

export const ListExpertJobsQuerySchema = Type.Object({
  ...PagingQuerySchema,
  status: Type.Optional(ExpertJobStatusSchema),
});
export type ListExpertJobsQuery = Static<typeof ListExpertJobsQuerySchema>;

export const ExpertJobListSchema = Type.Object(
  {
    data: Type.Object({ expertJobs: Type.Array(ExpertJobSchema) }),
    meta: PageMetaSchema,
  },
  { examples: [{ data: { expertJobs: [expertJobExample] }, meta: pageMetaExample }] },
);

export const ExpertJobStreamQuerySchema = Type.Object({
  access_token: Type.Optional(Type.String({ description: "The API key, for EventSource (which cannot send headers)" })),
});
export type ExpertJobStreamQuery = Static<typeof ExpertJobStreamQuerySchema>;

/** The data of each `message` event of `GET /expert_jobs/stream`: the changed job, exactly as GET answers it. */
export const ExpertJobChangeEventSchema = ExpertJobSchema;

export const expertJobStreamExample =
  `event: message\ndata: {"type":"expertJob","id":"${exampleIds.expertJob}","status":"processing","currentStep":3,…}\n\n` +
  ": ping\n\n" +
  `event: message\ndata: {"type":"expertJob","id":"${exampleIds.expertJob}","status":"completed","currentStep":4,…}\n\n`;
