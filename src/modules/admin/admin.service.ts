import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import { ConflictError, NotFoundError } from "../../errors.ts";
import { newId } from "../../lib/ids.ts";
import type { Provider } from "../../lib/models.ts";
import { generateApiKey } from "../../lib/secrets.ts";
import { notifyApiKeyRevoked } from "../../db/channels.ts";
import type { ApiKeyScope } from "../../plugins/auth.ts";
import type { ExpertDigest } from "../../schemas/common.ts";
import type { ExpertsService } from "../experts/experts.service.ts";
import type { ProviderKeyInfo, ProviderKeysService } from "../provider-keys/provider-keys.service.ts";
import type { RegisterExpertBody } from "./admin.schemas.ts";

export interface OrganizationView {
  id: string;
  name: string;
  createdAt: string;
}
export interface ApplicationView extends OrganizationView {
  organizationId: string;
}
export interface ApiKeyView {
  id: string;
  applicationId: string;
  scope: ApiKeyScope;
  name?: string;
  key: string;
  createdAt: string;
}
export interface BootstrapResult {
  organization: OrganizationView;
  application: ApplicationView;
  clientKey: ApiKeyView;
  runtimeKey: ApiKeyView;
}

const isUniqueViolation = (error: unknown) => error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002";

// Serialises first-start bootstrap across server instances sharing one database.
const BOOTSTRAP_LOCK = 7_270_737;

export class AdminService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly experts: ExpertsService,
    private readonly providerKeys: ProviderKeysService,
  ) {}

  async createOrganization(name: string): Promise<OrganizationView> {
    try {
      const row = await this.prisma.organization.create({ data: { id: newId(), name } });
      return { id: row.id, name: row.name, createdAt: row.createdAt.toISOString() };
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictError("An organization with this name already exists");
      throw error;
    }
  }

  async createApplication(
    organizationId: string,
    name: string,
    db: Prisma.TransactionClient | PrismaClient = this.prisma,
  ): Promise<ApplicationView> {
    await this.#requireOrganization(organizationId, db);
    try {
      const row = await db.application.create({ data: { id: newId(), organizationId, name } });
      return { id: row.id, organizationId: row.organizationId, name: row.name, createdAt: row.createdAt.toISOString() };
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictError("An application with this name already exists in the organization");
      throw error;
    }
  }

  async createApiKey(
    applicationId: string,
    scope: ApiKeyScope,
    name?: string,
    db: Prisma.TransactionClient | PrismaClient = this.prisma,
  ): Promise<ApiKeyView> {
    await this.#requireApplication(applicationId, db);
    const id = newId();
    const { key, secretHash } = generateApiKey(id);
    const row = await db.apiKey.create({ data: { id, applicationId, scope, name, secretHash } });
    return { id, applicationId, scope, ...(name !== undefined && { name }), key, createdAt: row.createdAt.toISOString() };
  }

  /** Revoked at once: the next request with the key gets 401, and every instance ends the streams it holds open. */
  async revokeApiKey(apiKeyId: string): Promise<void> {
    const count = await this.prisma.$transaction(async (tx) => {
      const { count } = await tx.apiKey.updateMany({ where: { id: apiKeyId, revokedAt: null }, data: { revokedAt: new Date() } });
      if (count > 0) await notifyApiKeyRevoked(tx, { apiKeyId });
      return count;
    });
    if (count === 0 && (await this.prisma.apiKey.count({ where: { id: apiKeyId } })) === 0) throw new NotFoundError("API key not found");
  }

  async registerExpert(organizationId: string, body: RegisterExpertBody): Promise<ExpertDigest> {
    await this.#requireOrganization(organizationId);
    try {
      return await this.experts.register(organizationId, body);
    } catch (error) {
      if (isUniqueViolation(error)) throw new ConflictError("This expert version already exists");
      throw error;
    }
  }

  async putProviderKey(applicationId: string, provider: Provider, key: string): Promise<ProviderKeyInfo> {
    await this.#requireApplication(applicationId);
    return this.providerKeys.put(applicationId, provider, key);
  }

  async deleteProviderKey(applicationId: string, provider: Provider): Promise<void> {
    await this.#requireApplication(applicationId);
    if (!(await this.providerKeys.delete(applicationId, provider))) throw new NotFoundError("Provider key not found");
  }

  /** On an empty database: organization and application `default`, one client and one runtime key. */
  async bootstrapIfEmpty(): Promise<BootstrapResult | undefined> {
    return this.prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`;
      if ((await tx.organization.count()) > 0) return undefined;
      const org = await tx.organization.create({ data: { id: newId(), name: "default" } });
      const organization = { id: org.id, name: org.name, createdAt: org.createdAt.toISOString() };
      const application = await this.createApplication(org.id, "default", tx);
      const clientKey = await this.createApiKey(application.id, "client", "default client key", tx);
      const runtimeKey = await this.createApiKey(application.id, "runtime", "default runtime key", tx);
      return { organization, application, clientKey, runtimeKey };
    });
  }

  async #requireOrganization(id: string, db: Prisma.TransactionClient | PrismaClient = this.prisma) {
    if ((await db.organization.count({ where: { id } })) === 0) throw new NotFoundError("Organization not found");
  }

  async #requireApplication(id: string, db: Prisma.TransactionClient | PrismaClient = this.prisma) {
    if ((await db.application.count({ where: { id } })) === 0) throw new NotFoundError("Application not found");
  }
}
