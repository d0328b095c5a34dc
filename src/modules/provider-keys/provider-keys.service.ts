import type { Prisma, PrismaClient } from "../../generated/prisma/client.ts";
import { openSecret, reencryptSecrets, type SecretBox } from "../../lib/secrets.ts";
import type { Provider } from "../../lib/models.ts";
import { encryptCheckValue } from "./secrets-key-check.ts";

export interface ProviderKeyInfo {
  provider: Provider;
  createdAt: string;
  updatedAt: string;
}

/** Provider API keys, encrypted per application; the plaintext leaves only through `reveal` (runtime claims). */
export class ProviderKeysService {
  constructor(
    private readonly prisma: PrismaClient,
    private readonly secrets: SecretBox,
  ) {}

  // Binding the ciphertext to its row means a ciphertext copied to another application fails to decrypt.
  #associatedData = (applicationId: string, provider: Provider) => `${applicationId}/${provider}`;

  async put(applicationId: string, provider: Provider, key: string): Promise<ProviderKeyInfo> {
    const encrypted = this.secrets.encrypt(key, this.#associatedData(applicationId, provider));
    const data = { ciphertext: encrypted.ciphertext, iv: encrypted.iv, authTag: encrypted.authTag };
    const row = await this.prisma.providerKey.upsert({
      where: { applicationId_provider: { applicationId, provider } },
      create: { applicationId, provider, ...data },
      update: data,
      select: { createdAt: true, updatedAt: true },
    });
    return { provider, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
  }

  /** The application's provider keys: which providers, since when (never the keys). */
  async list(
    applicationId: string,
    page: { take: number; skip: number; order: "asc" | "desc" },
  ): Promise<{ items: ProviderKeyInfo[]; meta: { total: number; take: number; skip: number } }> {
    const where = { applicationId };
    const [total, rows] = await this.prisma.$transaction([
      this.prisma.providerKey.count({ where }),
      this.prisma.providerKey.findMany({
        where,
        orderBy: [{ createdAt: page.order }, { provider: page.order }],
        take: page.take,
        skip: page.skip,
        select: { provider: true, createdAt: true, updatedAt: true },
      }),
    ]);
    return {
      items: rows.map((row) => ({
        provider: row.provider as Provider,
        createdAt: row.createdAt.toISOString(),
        updatedAt: row.updatedAt.toISOString(),
      })),
      meta: { total, take: page.take, skip: page.skip },
    };
  }

  async delete(applicationId: string, provider: Provider): Promise<boolean> {
    const { count } = await this.prisma.providerKey.deleteMany({ where: { applicationId, provider } });
    return count > 0;
  }

  async has(applicationId: string, provider: Provider): Promise<boolean> {
    const count = await this.prisma.providerKey.count({ where: { applicationId, provider } });
    return count > 0;
  }

  /** The key in plaintext; in the caller's transaction when given, so a key that fails to decrypt rolls back what the caller did. */
  async reveal(
    applicationId: string,
    provider: Provider,
    db: Prisma.TransactionClient | PrismaClient = this.prisma,
  ): Promise<string | undefined> {
    const row = await db.providerKey.findUnique({ where: { applicationId_provider: { applicationId, provider } } });
    if (!row) return undefined;
    try {
      return openSecret(this.secrets, row, this.#associatedData(row.applicationId, row.provider as Provider));
    } catch (error) {
      // Logged (masked as a 500): the check at start-up makes this a row written with another key, or altered.
      throw new Error(`the ${provider} key of application ${applicationId} cannot be decrypted with this SECRETS_KEY`, { cause: error });
    }
  }

  /**
   * Re-encrypts every stored provider key from the `previous` secrets key to this service's, in the
   * caller's transaction (secrets rotation). Keys this service's key already opens are left alone, so
   * running it again is harmless; a key that neither opens throws, and the caller rolls back.
   */
  async reencryptFrom(previous: SecretBox, tx: Prisma.TransactionClient): Promise<{ reencrypted: number; alreadyCurrent: number }> {
    await tx.$executeRaw`SELECT 1 FROM provider_key FOR UPDATE`;
    const rows = await tx.providerKey.findMany({ orderBy: [{ applicationId: "asc" }, { provider: "asc" }] });
    const result = await reencryptSecrets(
      rows,
      { previous, next: this.secrets },
      (row) => ({
        associatedData: this.#associatedData(row.applicationId, row.provider as Provider),
        name: `${row.applicationId}/${row.provider}`,
      }),
      (row, encrypted) =>
        tx.providerKey.update({
          where: { applicationId_provider: { applicationId: row.applicationId, provider: row.provider } },
          data: { ciphertext: encrypted.ciphertext, iv: encrypted.iv, authTag: encrypted.authTag },
        }),
      "the provider keys of",
    );
    // The start-up check value moves to the new key with them, or no server would start with it.
    const check = encryptCheckValue(this.secrets);
    await tx.$executeRaw`INSERT INTO secrets_key_check (id, ciphertext, iv, auth_tag)
      VALUES (1, ${check.ciphertext}, ${check.iv}, ${check.authTag})
      ON CONFLICT (id) DO UPDATE SET ciphertext = EXCLUDED.ciphertext, iv = EXCLUDED.iv, auth_tag = EXCLUDED.auth_tag`;
    return result;
  }
}
