import type { Prisma, PrismaClient } from "../../generated/prisma/client.ts";
import { NotFoundError, RequestValidationError } from "../../errors.ts";
import { newId } from "../../lib/ids.ts";
import { openSecret, reencryptSecrets, type SecretBox, type StoredSecret } from "../../lib/secrets.ts";
import type { AdminListQuery } from "../admin/admin.schemas.ts";
import { checkWebhookUrl, WebhookAddressError, type AddressPolicy } from "./webhook-address.ts";
import { generateWebhookSecret } from "./webhook-sender.ts";
import {
  webhookEventTypes,
  type CreateWebhookEndpointBody,
  type CreatedWebhookEndpoint,
  type WebhookDeliveryView,
  type WebhookEndpointView,
  type WebhookEventType,
} from "./webhooks.schemas.ts";

interface EndpointRow {
  id: string;
  applicationId: string;
  url: string;
  eventTypes: string[];
  createdAt: Date;
}

const deliveryInclude = {
  message: { select: { id: true, type: true, expertJobId: true } },
  attemptLog: { orderBy: { number: "asc" } },
} as const satisfies Prisma.WebhookDeliveryInclude;

type DeliveryRow = Prisma.WebhookDeliveryGetPayload<{ include: typeof deliveryInclude }>;

const toEndpoint = (row: EndpointRow): WebhookEndpointView => ({
  id: row.id,
  applicationId: row.applicationId,
  url: row.url,
  eventTypes: row.eventTypes as WebhookEventType[],
  createdAt: row.createdAt.toISOString(),
});

export function toDelivery(row: DeliveryRow): WebhookDeliveryView {
  return {
    id: row.id,
    endpointId: row.endpointId,
    webhookId: row.message.id,
    eventType: row.message.type as WebhookEventType,
    expertJobId: row.message.expertJobId,
    status: row.status,
    attempts: row.attempts,
    ...(row.status === "pending" && { nextAttemptAt: row.nextAttemptAt.toISOString() }),
    createdAt: row.createdAt.toISOString(),
    attemptLog: row.attemptLog.map((attempt) => ({
      number: attempt.number,
      startedAt: attempt.startedAt.toISOString(),
      durationMs: attempt.durationMs,
      ...(attempt.responseStatus !== null && { responseStatus: attempt.responseStatus }),
      ...(attempt.error !== null && { error: attempt.error }),
      ...(attempt.responseBody !== null && { responseBody: attempt.responseBody }),
    })),
  };
}

/** Webhook endpoints (admin API): registration with a secret shown once, the delivery log, redelivery. */
export class WebhooksService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly secrets: SecretBox,
    private readonly policy: AddressPolicy,
  ) {}

  // Bound to the endpoint: a ciphertext copied to another row does not decrypt.
  #associatedData = (endpointId: string) => `webhook_endpoint/${endpointId}`;

  async create(applicationId: string, body: CreateWebhookEndpointBody): Promise<CreatedWebhookEndpoint> {
    await this.#requireApplication(applicationId);
    try {
      await checkWebhookUrl(body.url, this.policy);
    } catch (error) {
      if (error instanceof WebhookAddressError) throw new RequestValidationError([{ path: "/url", message: error.message }]);
      throw error;
    }
    const id = newId();
    const secret = generateWebhookSecret();
    const encrypted = this.secrets.encrypt(secret, this.#associatedData(id));
    const row = await this.prisma.webhookEndpoint.create({
      data: { id, applicationId, url: body.url, eventTypes: body.eventTypes ?? [...webhookEventTypes], ...encrypted },
    });
    return { ...toEndpoint(row), secret };
  }

  async list(applicationId: string, query: AdminListQuery) {
    await this.#requireApplication(applicationId);
    const where = { applicationId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.webhookEndpoint.count({ where }),
      this.prisma.webhookEndpoint.findMany({
        where,
        orderBy: [{ createdAt: query.order }, { id: query.order }],
        take: query.take,
        skip: query.skip,
      }),
    ]);
    return { items: rows.map(toEndpoint), meta: { total, take: query.take, skip: query.skip } };
  }

  /** Deletes the endpoint with its pending deliveries and log; events already in flight may still arrive once. */
  async delete(endpointId: string): Promise<void> {
    const { count } = await this.prisma.webhookEndpoint.deleteMany({ where: { id: endpointId } });
    if (count === 0) throw new NotFoundError("Webhook endpoint not found");
  }

  async deliveries(endpointId: string, query: AdminListQuery) {
    if ((await this.prisma.webhookEndpoint.count({ where: { id: endpointId } })) === 0)
      throw new NotFoundError("Webhook endpoint not found");
    const where = { endpointId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.webhookDelivery.count({ where }),
      this.prisma.webhookDelivery.findMany({
        where,
        include: deliveryInclude,
        orderBy: [{ createdAt: query.order }, { id: query.order }],
        take: query.take,
        skip: query.skip,
      }),
    ]);
    return { items: rows.map(toDelivery), meta: { total, take: query.take, skip: query.skip } };
  }

  /**
   * Sends the event again, with the same `webhook-id` and body, whatever became of it (delivered, failed,
   * pending): due now, with a fresh retry window.
   */
  async redeliver(deliveryId: string): Promise<WebhookDeliveryView> {
    const now = new Date();
    const { count } = await this.prisma.webhookDelivery.updateMany({
      where: { id: deliveryId },
      data: { status: "pending", nextAttemptAt: now, windowStartedAt: now },
    });
    if (count === 0) throw new NotFoundError("Webhook delivery not found");
    return toDelivery(await this.prisma.webhookDelivery.findUniqueOrThrow({ where: { id: deliveryId }, include: deliveryInclude }));
  }

  revealSecret(endpoint: StoredSecret & { id: string }): string {
    return openSecret(this.secrets, endpoint, this.#associatedData(endpoint.id));
  }

  /**
   * SECRETS_KEY rotation, in the caller's transaction: every endpoint's secret from `previous` to this
   * service's key. Secrets the new key already opens are left alone; one neither opens throws.
   */
  async reencryptFrom(previous: SecretBox, tx: Prisma.TransactionClient): Promise<{ reencrypted: number; alreadyCurrent: number }> {
    await tx.$executeRaw`SELECT 1 FROM webhook_endpoint FOR UPDATE`;
    const rows = await tx.webhookEndpoint.findMany({
      select: { id: true, ciphertext: true, iv: true, authTag: true },
      orderBy: { id: "asc" },
    });
    return reencryptSecrets(
      rows,
      { previous, next: this.secrets },
      (row) => ({ associatedData: this.#associatedData(row.id), name: row.id }),
      (row, encrypted) => tx.webhookEndpoint.update({ where: { id: row.id }, data: encrypted }),
      "the secrets of webhook endpoints",
    );
  }

  async #requireApplication(id: string) {
    if ((await this.prisma.application.count({ where: { id } })) === 0) throw new NotFoundError("Application not found");
  }
}
