import { Type, type Static } from "@sinclair/typebox";
import { IdSchema, PagingQuerySchema, TimestampSchema } from "../../schemas/common.ts";
import { providers } from "../../lib/models.ts";

const ResourceName = Type.String({ minLength: 1, maxLength: 255, pattern: "^[a-z0-9][a-z0-9_.-]*$" });

export const OrganizationSchema = Type.Object({ id: IdSchema, name: Type.String(), createdAt: TimestampSchema });
export const ApplicationSchema = Type.Object({ id: IdSchema, organizationId: IdSchema, name: Type.String(), createdAt: TimestampSchema });
export const ApiKeyScopeSchema = Type.Union([Type.Literal("client"), Type.Literal("runtime")]);
export const ApiKeySchema = Type.Object({
  id: IdSchema,
  applicationId: IdSchema,
  scope: ApiKeyScopeSchema,
  name: Type.Optional(Type.String()),
  key: Type.String({ description: "Shown only in this response; only its hash is stored" }),
  createdAt: TimestampSchema,
});
/** An API key as listed: never its secret (only a hash of it is stored). */
export const ApiKeySummarySchema = Type.Object({
  id: IdSchema,
  applicationId: IdSchema,
  scope: ApiKeyScopeSchema,
  name: Type.Optional(Type.String()),
  createdAt: TimestampSchema,
  revokedAt: Type.Optional(TimestampSchema),
});
export const ProviderSchema = Type.Union(providers.map((provider) => Type.Literal(provider)));
export const ProviderKeySchema = Type.Object({ provider: ProviderSchema, createdAt: TimestampSchema, updatedAt: TimestampSchema });

export const CreateOrganizationBodySchema = Type.Object({ name: ResourceName }, { examples: [{ name: "acme" }] });
export const CreateApplicationBodySchema = Type.Object({ name: ResourceName }, { examples: [{ name: "web" }] });
export const CreateApiKeyBodySchema = Type.Object(
  {
    scope: ApiKeyScopeSchema,
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  },
  { examples: [{ scope: "runtime", name: "worker-1" }] },
);
export const RegisterExpertBodySchema = Type.Object(
  {
    name: Type.String({ pattern: "^(@[a-z0-9][a-z0-9_-]*\\/)?[a-z0-9][a-z0-9_-]*$", minLength: 1, maxLength: 255 }),
    version: Type.String({
      pattern: "^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-[0-9A-Za-z.-]+)?(?:\\+[0-9A-Za-z.-]+)?$",
      maxLength: 255,
    }),
    description: Type.String({ minLength: 1, maxLength: 2048 }),
    tags: Type.Optional(Type.Array(Type.String({ pattern: "^[a-z][a-z0-9_.-]*$", maxLength: 255 }), { maxItems: 100 })),
  },
  { examples: [{ name: "@acme/researcher", version: "1.2.0", description: "Researches a topic on the web and writes a short report" }] },
);
export type RegisterExpertBody = Static<typeof RegisterExpertBodySchema>;
export const PutProviderKeyBodySchema = Type.Object(
  { key: Type.String({ minLength: 1, maxLength: 4096 }) },
  { examples: [{ key: "sk-ant-api03-…" }] },
);

/** Admin lists: oldest first by default, paged like the studio API's lists. */
export const AdminListQuerySchema = Type.Object({
  take: PagingQuerySchema.take,
  skip: PagingQuerySchema.skip,
  order: PagingQuerySchema.order,
});
export type AdminListQuery = Static<typeof AdminListQuerySchema>;

export const OrganizationParamsSchema = Type.Object({ organizationId: IdSchema });
export const ApplicationParamsSchema = Type.Object({ applicationId: IdSchema });
export const ApiKeyParamsSchema = Type.Object({ apiKeyId: IdSchema });
export const ExpertJobParamsSchema = Type.Object({ expertJobId: IdSchema });
export const ProviderKeyParamsSchema = Type.Object({ applicationId: IdSchema, provider: ProviderSchema });
