import { existsSync } from "node:fs";
import type { FastifyBaseLogger } from "fastify";
import type { Database } from "../../config.ts";
import { SecretBox } from "../../lib/secrets.ts";
import { openDatabase } from "../../plugins/database.ts";
import { WebhooksService } from "../webhooks/webhooks.service.ts";
import { ProviderKeysService } from "./provider-keys.service.ts";

/** Warnings (pending migrations applied on the way) go to stderr, so stdout stays the JSON result. */
const stderrLogger = (): FastifyBaseLogger => {
  const write = (message: unknown, text?: string) => process.stderr.write(`${typeof message === "string" ? message : (text ?? "")}\n`);
  const logger = {
    level: "warn",
    fatal: write,
    error: write,
    warn: write,
    info: () => {},
    debug: () => {},
    trace: () => {},
    silent: () => {},
  };
  return { ...logger, child: () => logger } as unknown as FastifyBaseLogger;
};

/**
 * `npm run cli -- secrets rotate`: re-encrypts every provider key and webhook secret stored in `database` from the old
 * SECRETS_KEY to the new one. Run it while no server uses the database (PGlite) or while servers are
 * stopped, then start them with the new key.
 */
export async function rotateSecrets(database: Database, previousKey: Buffer, nextKey: Buffer) {
  if (database.kind === "pglite" && !database.dataDir.startsWith("memory://") && !existsSync(database.dataDir)) {
    throw new Error(`no database in ${database.dataDir}: set DATA_DIR (or DATABASE_URL) to the server's`);
  }
  const opened = await openDatabase(database, stderrLogger());
  try {
    const [previous, next] = [new SecretBox(previousKey), new SecretBox(nextKey)];
    const providerKeys = new ProviderKeysService(opened.prisma, next);
    const webhooks = new WebhooksService(opened.prisma, next, { allowPrivate: false });
    // One transaction: every secret moves to the new key, or none does.
    return await opened.prisma.$transaction(
      async (tx) => ({
        providerKeys: await providerKeys.reencryptFrom(previous, tx),
        webhookEndpoints: await webhooks.reencryptFrom(previous, tx),
      }),
      { timeout: 120_000 },
    );
  } finally {
    await opened.close();
  }
}
