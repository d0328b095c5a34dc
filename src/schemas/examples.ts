// Example values for the OpenAPI document (`examples` on route schemas). The studio API's live with its
// schemas in the contract (packages/contract); test/docs checks all of them at run time.
import { exampleIds, expertDigestExample } from "#contract/examples";

export * from "#contract/examples";

const createdAt = expertDigestExample.createdAt;

export const adminExamples = {
  organization: { id: exampleIds.organization, name: "acme", createdAt },
  application: { id: exampleIds.application, organizationId: exampleIds.organization, name: "web", createdAt },
  apiKey: {
    id: exampleIds.apiKey,
    applicationId: exampleIds.application,
    scope: "runtime" as const,
    name: "worker-1",
    key: `ejk_${exampleIds.apiKey}_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8`,
    createdAt,
  },
  apiKeySummary: { id: exampleIds.apiKey, applicationId: exampleIds.application, scope: "runtime" as const, name: "worker-1", createdAt },
  providerKey: { provider: "anthropic" as const, createdAt, updatedAt: createdAt },
};
