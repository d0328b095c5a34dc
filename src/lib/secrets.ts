import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Bytes as Prisma's `Bytes` columns take them. */
export type Bytes = Buffer<ArrayBuffer>;

export interface EncryptedSecret {
  ciphertext: Bytes;
  iv: Bytes;
  authTag: Bytes;
}

/** AES-256-GCM with a fresh 96-bit IV per secret. */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error("the secrets key must be 32 bytes");
    this.#key = key;
  }

  encrypt(plaintext: string, associatedData: string): EncryptedSecret {
    const iv = randomBytes(12) as Bytes;
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    cipher.setAAD(Buffer.from(associatedData));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]) as Bytes;
    return { ciphertext, iv, authTag: cipher.getAuthTag() as Bytes };
  }

  decrypt(secret: EncryptedSecret, associatedData: string): string {
    const decipher = createDecipheriv("aes-256-gcm", this.#key, secret.iv);
    decipher.setAAD(Buffer.from(associatedData));
    decipher.setAuthTag(secret.authTag);
    return Buffer.concat([decipher.update(secret.ciphertext), decipher.final()]).toString("utf8");
  }
}

export const sha256 = (data: string | Uint8Array): Bytes => createHash("sha256").update(data).digest() as Bytes;

/** Compares two strings in time independent of where they differ (hashing first equalises lengths). */
export const constantTimeEqual = (a: string, b: string): boolean => timingSafeEqual(sha256(a), sha256(b));

const API_KEY_PATTERN = /^ejk_([a-z0-9]{24})_([A-Za-z0-9_-]{43})$/;

/** API keys are `ejk_<key id>_<secret>`: the id finds the row, only the secret's hash is stored. */
export function generateApiKey(id: string): { key: string; secretHash: Bytes } {
  const secret = randomBytes(32).toString("base64url");
  return { key: `ejk_${id}_${secret}`, secretHash: sha256(secret) };
}

export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  const match = API_KEY_PATTERN.exec(key);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

export const apiKeySecretMatches = (secret: string, secretHash: Uint8Array): boolean =>
  secretHash.length === 32 && timingSafeEqual(sha256(secret), secretHash);

/** A row's encrypted secret as Prisma reads it. */
export interface StoredSecret {
  ciphertext: Uint8Array;
  iv: Uint8Array;
  authTag: Uint8Array;
}

export const openSecret = (secrets: SecretBox, row: StoredSecret, associatedData: string): string =>
  secrets.decrypt(
    { ciphertext: Buffer.from(row.ciphertext) as Bytes, iv: Buffer.from(row.iv) as Bytes, authTag: Buffer.from(row.authTag) as Bytes },
    associatedData,
  );

function tryOpenSecret(secrets: SecretBox, row: StoredSecret, associatedData: string): string | undefined {
  try {
    return openSecret(secrets, row, associatedData);
  } catch {
    return undefined;
  }
}

/**
 * Secrets rotation for one table's rows: each secret from `previous` to `next`, saved by `save`. Rows
 * `next` already opens are left alone, so running it again is harmless; rows neither opens throw (listed
 * by name, after `what`) and the caller's transaction rolls back.
 */
export async function reencryptSecrets<Row extends StoredSecret>(
  rows: Row[],
  keys: { previous: SecretBox; next: SecretBox },
  describe: (row: Row) => { associatedData: string; name: string },
  save: (row: Row, encrypted: EncryptedSecret) => Promise<unknown>,
  what: string,
): Promise<{ reencrypted: number; alreadyCurrent: number }> {
  const result = { reencrypted: 0, alreadyCurrent: 0 };
  const unreadable: string[] = [];
  for (const row of rows) {
    const { associatedData, name } = describe(row);
    if (tryOpenSecret(keys.next, row, associatedData) !== undefined) {
      result.alreadyCurrent++;
      continue;
    }
    const plaintext = tryOpenSecret(keys.previous, row, associatedData);
    if (plaintext === undefined) {
      unreadable.push(name);
      continue;
    }
    await save(row, keys.next.encrypt(plaintext, associatedData));
    result.reencrypted++;
  }
  if (unreadable.length > 0) throw new Error(`neither key opens ${what} ${unreadable.join(", ")}: nothing was changed`);
  return result;
}
