import { Prisma, type PrismaClient } from "../../generated/prisma/client.ts";
import { ConflictError, NotFoundError } from "../../errors.ts";
import { newId } from "../../lib/ids.ts";
import type { Provider } from "../../lib/models.ts";
import { generateApiKey } from "../../lib/secrets.ts";
import type { Notifier } from "../../db/channels.ts";
import type { ApiKeyScope } from "../../plugins/auth.ts";
import type { ExpertDigest } from "../../schemas/common.ts";
import { toExpertDigest, type ExpertsService } from "../experts/experts.service.ts";
import type { ProviderKeyInfo, ProviderKeysService } from "../provider-keys/provider-keys.service.ts";
import type { AdminListQuery, RegisterExpertBody } from "./admin.schemas.ts";

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
export type ApiKeySummary = Omit<ApiKeyView, "key"> & { revokedAt?: string };
export interface Page<T> {
  items: T[];
  meta: { total: number; take: number; skip: number };
}
export interface BootstrapResult {
  organization: OrganizationView;
  application: ApplicationView;
  clientKey: ApiKeyView;
  runtimeKey: ApiKeyView;
}

const isUniqueViolation = (error: unknown) => error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002";

/** Oldest first (or newest, `order=desc`); the id breaks ties between rows created in the same millisecond. */
const pageOf = (query: AdminListQuery) => ({
  orderBy: [{ createdAt: query.order }, { id: query.order }],
  take: query.take,
  skip: query.skip,
});
const metaOf = (query: AdminListQuery, total: number) => ({ total, take: query.take, skip: query.skip });

// Serialises first-start bootstrap across server instances sharing one database.
const BOOTSTRAP_LOCK = 7_270_737;

export class AdminService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly experts: ExpertsService,
    private readonly providerKeys: ProviderKeysService,
    private readonly notifier: Notifier,
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
    const { count } = await this.prisma.apiKey.updateMany({ where: { id: apiKeyId, revokedAt: null }, data: { revokedAt: new Date() } });
    if (count > 0) this.notifier.apiKeyRevoked({ apiKeyId });
    if (count === 0 && (await this.prisma.apiKey.count({ where: { id: apiKeyId } })) === 0) throw new NotFoundError("API key not found");
  }

  /** The revoked ones among these keys (a safety re-read: their revocation's notification may have been lost). */
  async revokedAmong(apiKeyIds: string[]): Promise<string[]> {
    const rows = await this.prisma.apiKey.findMany({ where: { id: { in: apiKeyIds }, revokedAt: { not: null } }, select: { id: true } });
    return rows.map((row) => row.id);
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

  async listOrganizations(query: AdminListQuery): Promise<Page<OrganizationView>> {
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.organization.count(),
      this.prisma.organization.findMany(pageOf(query)),
    ]);
    return {
      items: rows.map((row) => ({ id: row.id, name: row.name, createdAt: row.createdAt.toISOString() })),
      meta: metaOf(query, total),
    };
  }

  async listApplications(organizationId: string, query: AdminListQuery): Promise<Page<ApplicationView>> {
    await this.#requireOrganization(organizationId);
    const where = { organizationId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.application.count({ where }),
      this.prisma.application.findMany({ where, ...pageOf(query) }),
    ]);
    return {
      items: rows.map((row) => ({
        id: row.id,
        organizationId: row.organizationId,
        name: row.name,
        createdAt: row.createdAt.toISOString(),
      })),
      meta: metaOf(query, total),
    };
  }

  /** Every registered version of every expert of the organization. */
  async listExperts(organizationId: string, query: AdminListQuery): Promise<Page<ExpertDigest>> {
    await this.#requireOrganization(organizationId);
    const where = { organizationId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.expert.count({ where }),
      this.prisma.expert.findMany({
        where,
        ...pageOf(query),
        include: { organization: { select: { id: true, name: true, createdAt: true } } },
      }),
    ]);
    return { items: rows.map(toExpertDigest), meta: metaOf(query, total) };
  }

  /** Revoked keys included (with `revokedAt`); never a key's secret, which is not stored. */
  async listApiKeys(applicationId: string, query: AdminListQuery): Promise<Page<ApiKeySummary>> {
    await this.#requireApplication(applicationId);
    const where = { applicationId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.apiKey.count({ where }),
      this.prisma.apiKey.findMany({
        where,
        ...pageOf(query),
        select: { id: true, applicationId: true, scope: true, name: true, createdAt: true, revokedAt: true },
      }),
    ]);
    return {
      items: rows.map((row) => ({
        id: row.id,
        applicationId: row.applicationId,
        scope: row.scope,
        ...(row.name !== null && { name: row.name }),
        createdAt: row.createdAt.toISOString(),
        ...(row.revokedAt !== null && { revokedAt: row.revokedAt.toISOString() }),
      })),
      meta: metaOf(query, total),
    };
  }

  async listProviderKeys(applicationId: string, query: AdminListQuery): Promise<Page<ProviderKeyInfo>> {
    await this.#requireApplication(applicationId);
    return this.providerKeys.list(applicationId, query);
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
