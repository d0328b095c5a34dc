import { Type, type Static, type TArray, type TSchema } from "@sinclair/typebox";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { ExpertDigestSchema, PageMetaSchema, errorResponses } from "../../schemas/common.ts";
import { adminExamples, expertDigestExample, pageMetaExample } from "../../schemas/examples.ts";
import {
  AdminListQuerySchema,
  ApiKeySummarySchema,
  ApiKeyParamsSchema,
  ApiKeySchema,
  ApplicationParamsSchema,
  ApplicationSchema,
  CreateApiKeyBodySchema,
  CreateApplicationBodySchema,
  CreateOrganizationBodySchema,
  ExpertJobParamsSchema,
  OrganizationParamsSchema,
  OrganizationSchema,
  ProviderKeyParamsSchema,
  ProviderKeySchema,
  PutProviderKeyBodySchema,
  RegisterExpertBodySchema,
} from "./admin.schemas.ts";

const tags = ["admin"];
const NoContent = Type.Null({ description: "No content" });

/** `{data: {<name>: [item…]}, meta: {total, take, skip}}`, like the studio API's lists. */
const listOf = <Name extends string, Item extends TSchema>(name: Name, item: Item, example: Static<Item>) =>
  Type.Object(
    { data: Type.Object({ [name]: Type.Array(item) } as Record<Name, TArray<Item>>), meta: PageMetaSchema },
    { examples: [{ data: { [name]: [example] }, meta: pageMetaExample }] },
  );

export const adminRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    "/organizations",
    {
      schema: {
        summary: "List organizations",
        tags,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("organizations", OrganizationSchema, adminExamples.organization), ...errorResponses(401, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.admin.listOrganizations(request.query);
      return { data: { organizations: items }, meta };
    },
  );

  app.get(
    "/organizations/:organizationId/applications",
    {
      schema: {
        summary: "List an organization's applications",
        tags,
        params: OrganizationParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("applications", ApplicationSchema, adminExamples.application), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.admin.listApplications(request.params.organizationId, request.query);
      return { data: { applications: items }, meta };
    },
  );

  app.get(
    "/organizations/:organizationId/experts",
    {
      schema: {
        summary: "List an organization's experts (every version)",
        tags,
        params: OrganizationParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("experts", ExpertDigestSchema, expertDigestExample), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.admin.listExperts(request.params.organizationId, request.query);
      return { data: { experts: items }, meta };
    },
  );

  app.get(
    "/applications/:applicationId/api_keys",
    {
      schema: {
        summary: "List an application's API keys, revoked ones included (never their secrets)",
        tags,
        params: ApplicationParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("apiKeys", ApiKeySummarySchema, adminExamples.apiKeySummary), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.admin.listApiKeys(request.params.applicationId, request.query);
      return { data: { apiKeys: items }, meta };
    },
  );

  app.get(
    "/applications/:applicationId/provider_keys",
    {
      schema: {
        summary: "List an application's provider keys (provider and dates, never the key)",
        tags,
        params: ApplicationParamsSchema,
        querystring: AdminListQuerySchema,
        response: { 200: listOf("providerKeys", ProviderKeySchema, adminExamples.providerKey), ...errorResponses(401, 404, 422) },
      },
    },
    async (request) => {
      const { items, meta } = await app.admin.listProviderKeys(request.params.applicationId, request.query);
      return { data: { providerKeys: items }, meta };
    },
  );

  app.post(
    "/organizations",
    {
      schema: {
        summary: "Create an organization",
        tags,
        body: CreateOrganizationBodySchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ organization: OrganizationSchema }) },
            { examples: [{ data: { organization: adminExamples.organization } }] },
          ),
          ...errorResponses(401, 409, 422),
        },
      },
    },
    async (request) => ({ data: { organization: await app.admin.createOrganization(request.body.name) } }),
  );

  app.post(
    "/organizations/:organizationId/applications",
    {
      schema: {
        summary: "Create an application",
        tags,
        params: OrganizationParamsSchema,
        body: CreateApplicationBodySchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ application: ApplicationSchema }) },
            { examples: [{ data: { application: adminExamples.application } }] },
          ),
          ...errorResponses(401, 404, 409, 422),
        },
      },
    },
    async (request) => ({
      data: { application: await app.admin.createApplication(request.params.organizationId, request.body.name) },
    }),
  );

  app.post(
    "/applications/:applicationId/api_keys",
    {
      schema: {
        summary: "Create an API key (the key is shown only in this response)",
        tags,
        params: ApplicationParamsSchema,
        body: CreateApiKeyBodySchema,
        response: {
          200: Type.Object({ data: Type.Object({ apiKey: ApiKeySchema }) }, { examples: [{ data: { apiKey: adminExamples.apiKey } }] }),
          ...errorResponses(401, 404, 422),
        },
      },
    },
    async (request) => ({
      data: { apiKey: await app.admin.createApiKey(request.params.applicationId, request.body.scope, request.body.name) },
    }),
  );

  app.delete(
    "/api_keys/:apiKeyId",
    {
      schema: {
        summary: "Revoke an API key (effective on the next request)",
        tags,
        params: ApiKeyParamsSchema,
        response: { 204: NoContent, ...errorResponses(401, 404, 422) },
      },
    },
    async (request, reply) => {
      await app.admin.revokeApiKey(request.params.apiKeyId);
      return reply.code(204).send(null);
    },
  );

  app.post(
    "/organizations/:organizationId/experts",
    {
      schema: {
        summary: "Register an expert version",
        tags,
        params: OrganizationParamsSchema,
        body: RegisterExpertBodySchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ expert: ExpertDigestSchema }) },
            { examples: [{ data: { expert: expertDigestExample } }] },
          ),
          ...errorResponses(401, 404, 409, 422),
        },
      },
    },
    async (request) => ({ data: { expert: await app.admin.registerExpert(request.params.organizationId, request.body) } }),
  );

  app.delete(
    "/expert_jobs/:expertJobId",
    {
      schema: {
        summary: "Delete a job that is not running, with its checkpoints and messages",
        tags,
        params: ExpertJobParamsSchema,
        response: { 204: NoContent, ...errorResponses(401, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      await app.jobRetention.deleteJob(request.params.expertJobId);
      return reply.code(204).send(null);
    },
  );

  app.put(
    "/applications/:applicationId/provider_keys/:provider",
    {
      schema: {
        summary: "Store a provider API key (encrypted at rest, never returned)",
        tags,
        params: ProviderKeyParamsSchema,
        body: PutProviderKeyBodySchema,
        response: {
          200: Type.Object(
            { data: Type.Object({ providerKey: ProviderKeySchema }) },
            { examples: [{ data: { providerKey: adminExamples.providerKey } }] },
          ),
          ...errorResponses(401, 404, 422),
        },
      },
    },
    async (request) => ({
      data: { providerKey: await app.admin.putProviderKey(request.params.applicationId, request.params.provider, request.body.key) },
    }),
  );

  app.delete(
    "/applications/:applicationId/provider_keys/:provider",
    {
      schema: {
        summary: "Delete a provider API key",
        tags,
        params: ProviderKeyParamsSchema,
        response: { 204: NoContent, ...errorResponses(401, 404, 422) },
      },
    },
    async (request, reply) => {
      await app.admin.deleteProviderKey(request.params.applicationId, request.params.provider);
      return reply.code(204).send(null);
    },
  );
};
