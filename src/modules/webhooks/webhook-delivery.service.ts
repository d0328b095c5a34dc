import type { FastifyBaseLogger } from "fastify";
import type { PrismaClient } from "../../generated/prisma/client.ts";
import type { WebhookConfig } from "../../config.ts";
import { expertJobInclude, toExpertJob, type ExpertJobRow } from "../expert-jobs/expert-jobs.service.ts";
import { sendWebhook, SHUTTING_DOWN, type SendResult } from "./webhook-sender.ts";
import type { WebhooksService } from "./webhooks.service.ts";

export interface WebhookDeliveryOptions extends WebhookConfig {
  /** Beyond the attempt's timeout, how long a claim keeps a delivery from other workers (a worker that died mid-attempt is retried after). */
  claimMarginMs: number;
}

export const webhookDeliveryDefaults: WebhookDeliveryOptions = {
  allowPrivate: false,
  timeoutMs: 10_000,
  retryWindowMs: 24 * 60 * 60 * 1000,
  retryBaseMs: 5_000,
  retryMaxDelayMs: 60 * 60 * 1000,
  pollIntervalMs: 1_000,
  concurrency: 10,
  claimMarginMs: 5_000,
};

/** "Equal jitter": between half and all of min(max, base·2^(attempt-1)), so retries of many deliveries spread out. */
export function retryDelayMs(attempt: number, options: Pick<WebhookConfig, "retryBaseMs" | "retryMaxDelayMs">): number {
  const ceiling = Math.min(options.retryMaxDelayMs, options.retryBaseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
}

interface ClaimedDelivery {
  id: string;
  message_id: string;
  endpoint_id: string;
  /** This attempt's number. */
  attempts: number;
  window_started_at: Date;
}

export interface WebhookDeliveryTotals {
  succeeded: number;
  retried: number;
  failed: number;
}

/** `created_at` → `createdAt`. */
const camelCase = (name: string) => name.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());

/**
 * The outbox worker: claims due deliveries with FOR UPDATE SKIP LOCKED (every instance runs one; each
 * delivery goes to one of them at a time), sends them, and records each attempt. At-least-once: a claim
 * is a lease (the attempt's timeout plus a margin), so a delivery whose worker died between sending and
 * recording is sent again, with the same `webhook-id` and body, once the lease is over.
 */
export class WebhookDeliveryService {
  readonly #totals: WebhookDeliveryTotals = { succeeded: 0, retried: 0, failed: 0 };

  constructor(
    private readonly prisma: PrismaClient,
    private readonly webhooks: WebhooksService,
    private readonly log: FastifyBaseLogger,
    private readonly options: WebhookDeliveryOptions,
  ) {}

  /** Attempts this instance finished since it started, by outcome. */
  get totals(): Readonly<WebhookDeliveryTotals> {
    return this.#totals;
  }

  /** Claims up to `concurrency` due deliveries and attempts them all; the number claimed. */
  async deliverDue(signal?: AbortSignal): Promise<number> {
    const claimed = await this.#claim();
    if (claimed.length === 0) return 0;
    const [endpoints, messages] = await Promise.all([
      this.prisma.webhookEndpoint.findMany({ where: { id: { in: [...new Set(claimed.map((row) => row.endpoint_id))] } } }),
      this.prisma.webhookMessage.findMany({ where: { id: { in: [...new Set(claimed.map((row) => row.message_id))] } } }),
    ]);
    const endpointById = new Map(endpoints.map((endpoint) => [endpoint.id, endpoint]));
    const messageById = new Map(messages.map((message) => [message.id, message]));
    await Promise.all(
      claimed.map(async (delivery) => {
        const endpoint = endpointById.get(delivery.endpoint_id);
        const message = messageById.get(delivery.message_id);
        // Deleted since the claim (its endpoint was): nothing to send.
        if (!endpoint || !message) return;
        const startedAt = new Date();
        let result: SendResult;
        try {
          const body = message.payload ?? (await this.#fixPayload(message));
          const secret = this.webhooks.revealSecret(endpoint);
          result = await sendWebhook(
            { url: endpoint.url, id: message.id, secret, body },
            {
              timeoutMs: this.options.timeoutMs,
              policy: { allowPrivate: this.options.allowPrivate },
              signal,
            },
          );
        } catch (error) {
          result = { error: `not sent: ${(error as Error).message}`, durationMs: Date.now() - startedAt.getTime() };
        }
        await this.#record(delivery, startedAt, result).catch((error: unknown) =>
          this.log.error({ err: error, webhookDeliveryId: delivery.id }, "recording a webhook attempt failed"),
        );
      }),
    );
    return claimed.length;
  }

  async #claim(): Promise<ClaimedDelivery[]> {
    const leaseSeconds = (this.options.timeoutMs + this.options.claimMarginMs) / 1000;
    return this.prisma.$queryRaw<ClaimedDelivery[]>`
      UPDATE webhook_delivery d
      SET attempts = d.attempts + 1, last_attempt_at = now(), next_attempt_at = now() + make_interval(secs => ${leaseSeconds}::float8)
      FROM (
        SELECT id FROM webhook_delivery
        WHERE status = 'pending' AND next_attempt_at <= now()
        ORDER BY next_attempt_at
        LIMIT ${this.options.concurrency}
        FOR UPDATE SKIP LOCKED
      ) due
      WHERE d.id = due.id
      RETURNING d.id, d.message_id, d.endpoint_id, d.attempts, d.window_started_at`;
  }

  /**
   * The body every attempt of the message sends: the event and the job as GET renders it, from the row the
   * status change left. Fixed by the first attempt to get here (of any endpoint's delivery): redeliveries are byte for byte the same.
   */
  async #fixPayload(message: { id: string; type: string; jobRow: unknown; createdAt: Date }): Promise<string> {
    const row = Object.fromEntries(
      Object.entries(message.jobRow as Record<string, unknown>).map(([column, value]) => [
        camelCase(column),
        column.endsWith("_at") && typeof value === "string" ? new Date(value) : value,
      ]),
    ) as Omit<ExpertJobRow, "expert">;
    const expert = await this.prisma.expert.findUnique({ where: { id: row.expertId }, include: expertJobInclude.expert.include });
    if (!expert) throw new Error("the job's expert no longer exists");
    const payload = JSON.stringify({
      type: message.type,
      timestamp: message.createdAt.toISOString(),
      data: { expertJob: toExpertJob({ ...row, expert }) },
    });
    const [fixed] = await this.prisma.$queryRaw<Array<{ payload: string }>>`
      UPDATE webhook_message SET payload = COALESCE(payload, ${payload}) WHERE id = ${message.id} RETURNING payload`;
    return fixed?.payload ?? payload;
  }

  async #record(delivery: ClaimedDelivery, startedAt: Date, result: SendResult): Promise<void> {
    const delivered = result.statusCode !== undefined && result.statusCode >= 200 && result.statusCode < 300;
    const now = Date.now();
    // A shutdown is not the receiver's fault: due again at once, for another instance (or this one's next start).
    const next = result.error === SHUTTING_DOWN ? new Date(now) : new Date(now + retryDelayMs(delivery.attempts, this.options));
    const giveUp = !delivered && next.getTime() > delivery.window_started_at.getTime() + this.options.retryWindowMs;
    await this.prisma.$transaction([
      this.prisma.webhookAttempt.createMany({
        data: [
          {
            deliveryId: delivery.id,
            number: delivery.attempts,
            startedAt,
            durationMs: result.durationMs,
            responseStatus: result.statusCode ?? null,
            error: result.error ?? null,
            responseBody: result.responseBody ?? null,
          },
        ],
        skipDuplicates: true,
      }),
      // Only if no other worker claimed it since (this one's lease ran out): the later attempt's outcome counts.
      this.prisma.webhookDelivery.updateMany({
        where: { id: delivery.id, attempts: delivery.attempts, status: "pending" },
        data: delivered ? { status: "succeeded" } : giveUp ? { status: "failed" } : { nextAttemptAt: next },
      }),
    ]);
    if (delivered) this.#totals.succeeded++;
    else if (giveUp) this.#totals.failed++;
    else this.#totals.retried++;
    if (!delivered) {
      this.log.warn(
        { webhookDeliveryId: delivery.id, attempt: delivery.attempts, statusCode: result.statusCode, error: result.error, giveUp },
        giveUp ? "webhook delivery failed for good" : "webhook delivery failed; will retry",
      );
    }
  }
}
