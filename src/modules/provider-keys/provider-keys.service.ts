import type { PrismaClient } from "../../generated/prisma/client.ts";
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

  async reveal(applicationId: string, provider: Provider): Promise<string | undefined> {
    const row = await this.prisma.providerKey.findUnique({ where: { applicationId_provider: { applicationId, provider } } });
    if (!row) return undefined;
    return this.secrets.decrypt(
      { ciphertext: Buffer.from(row.ciphertext) as Bytes, iv: Buffer.from(row.iv) as Bytes, authTag: Buffer.from(row.authTag) as Bytes },
      this.#associatedData(applicationId, provider),
    );
  }
}
