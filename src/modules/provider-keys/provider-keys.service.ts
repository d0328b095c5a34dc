import type { Prisma, PrismaClient } from "../../generated/prisma/client.ts";
import type { Bytes, SecretBox } from "../../lib/secrets.ts";
import type { Provider } from "../../lib/models.ts";

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
      return this.secrets.decrypt(
        { ciphertext: Buffer.from(row.ciphertext) as Bytes, iv: Buffer.from(row.iv) as Bytes, authTag: Buffer.from(row.authTag) as Bytes },
        this.#associatedData(applicationId, provider),
      );
    } catch (error) {
      // Logged (masked as a 500): the check at start-up makes this a row written with another key, or altered.
      throw new Error(`the ${provider} key of application ${applicationId} cannot be decrypted with this SECRETS_KEY`, { cause: error });
    }
  }
}
