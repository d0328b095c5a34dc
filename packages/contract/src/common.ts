import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { errorReasonExamples } from "./examples.ts";

/**
 * How deep a JSON body may nest arrays and objects (the body itself is level 1). A Perstack checkpoint
 * needs about 8 levels for its messages plus whatever a tool's arguments and results nest; serialising
 * (JSON.stringify, Postgres' JSON functions) recurses, so thousands of levels would overflow the stack.
 */
export const MAX_JSON_DEPTH = 128;

export const IdSchema = Type.String({
  pattern: "^[a-z0-9]+$",
  minLength: 24,
  maxLength: 24,
  description: "A unique identifier for a resource",
  examples: ["test12345678901234567890"],
});

/**
 * Marks a number field a JSON body may also send as a numeric string (the server's input-types plugin): the
 * contract types continue's `temperature`, `maxSteps` and `maxRetries` as strings, and clients send either.
 */
export const acceptsNumericString = Symbol("acceptsNumericString");

export function numericString<T extends object>(schema: T): T {
  return Object.assign(schema, { [acceptsNumericString]: true });
}

export const TimestampSchema = Type.String({ format: "date-time" });

export const UsageSchema = Type.Object({
  inputTokens: Type.Number(),
  outputTokens: Type.Number(),
  reasoningTokens: Type.Number(),
  totalTokens: Type.Number(),
  cachedInputTokens: Type.Number(),
});
export type Usage = Static<typeof UsageSchema>;

export const ExpertKeySchema = Type.String({
  pattern:
    "^((?:@[a-z0-9][a-z0-9_.-]*\\/)?[a-z0-9][a-z0-9_.-]*)(?:@((?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)\\.(?:0|[1-9]\\d*)(?:-[\\w.-]+)?(?:\\+[\\w.-]+)?)|@([a-z0-9][a-z0-9_.-]*))?$",
  minLength: 1,
  maxLength: 511,
  description: "Unique identifier for an expert version (name@version or name@tag)",
});

export const ExpertDigestSchema = Type.Object({
  type: Type.Literal("expertDigest"),
  id: IdSchema,
  key: Type.String({ description: "Unique identifier for an expert version (name@version or name@tag)" }),
  name: Type.String({ description: "Expert name. Scoped names (@org/name) are required for team organizations" }),
  minRuntimeVersion: Type.Literal("v1.0"),
  description: Type.String({ description: "Brief description of what the expert does" }),
  owner: Type.Object(
    {
      name: Type.Optional(Type.String()),
      organizationId: IdSchema,
      createdAt: TimestampSchema,
    },
    { description: "Organization that owns this expert" },
  ),
  createdAt: TimestampSchema,
  updatedAt: TimestampSchema,
  version: Type.Optional(Type.String({ description: "Semantic version of the expert" })),
  tags: Type.Array(Type.String(), { description: "Version tags (e.g., latest, stable)" }),
});
export type ExpertDigest = Static<typeof ExpertDigestSchema>;

export const ModelSchema = Type.Union(
  [
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-opus-4-20250514",
    "claude-sonnet-4-5",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-20250219",
    "claude-haiku-4-5",
    "claude-3-5-haiku-latest",
    "gemini-3-pro-preview",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-5-chat-latest",
    "o4-mini",
    "o3",
    "o3-mini",
    "gpt-4.1",
    "deepseek-chat",
    "deepseek-reasoner",
  ].map((model) => Type.Literal(model)),
);
export type Model = Static<typeof ModelSchema>;

export const providers = ["anthropic", "google", "openai", "deepseek"] as const;
export type Provider = (typeof providers)[number];

const errorEnvelope = <Code extends keyof typeof errorReasonExamples, Reason extends TSchema>(
  code: Code,
  error: string,
  reason: Reason,
  description: string,
) =>
  Type.Object(
    { code: Type.Literal(code), error: Type.Literal(error), reason },
    { description, examples: [{ code, error, reason: errorReasonExamples[code] }] },
  );

export const ErrorResponses = {
  400: errorEnvelope(400, "Bad Request", Type.String(), "Bad Request"),
  401: errorEnvelope(401, "Unauthorized", Type.Literal("Failed to authenticate"), "Authentication failed"),
  403: errorEnvelope(403, "Forbidden", Type.String(), "The API key's scope does not allow this endpoint"),
  404: errorEnvelope(404, "Not Found", Type.String(), "Not found"),
  409: errorEnvelope(409, "Conflict", Type.String(), "Conflicts with the resource's current state"),
  429: errorEnvelope(
    429,
    "Too Many Requests",
    Type.String(),
    "Too many requests for this API key, or too many failed authentications from this address (see Retry-After)",
  ),
  422: errorEnvelope(
    422,
    "Validation Failed",
    Type.Array(Type.Object({ path: Type.String(), message: Type.String() })),
    "Request body, query or path parameter schema validation failed; also a JSON body nesting deeper than " +
      `${MAX_JSON_DEPTH} levels of arrays and objects, a number past a double's range (1e400), or U+0000 or a lone ` +
      "surrogate in a field stored as text. `reason` lists `{path, message}`",
  ),
} as const;

export const PagingQuerySchema = {
  take: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  skip: Type.Integer({ minimum: 0, default: 0 }),
  sort: Type.Union([Type.Literal("createdAt"), Type.Literal("updatedAt")], { default: "createdAt" }),
  order: Type.Union([Type.Literal("asc"), Type.Literal("desc")], { default: "asc" }),
  filter: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
};

export const PageMetaSchema = Type.Object({ total: Type.Integer(), take: Type.Integer(), skip: Type.Integer() });
