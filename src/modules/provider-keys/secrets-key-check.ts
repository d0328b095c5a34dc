import type { PrismaClient } from "../../generated/prisma/client.ts";
import { StartupError } from "../../errors.ts";
import type { Bytes, SecretBox } from "../../lib/secrets.ts";

const CHECK_TEXT = "expert-jobs secrets key check";
const CHECK_ASSOCIATED_DATA = "secrets-key-check";

export const secretsKeyMismatch = () =>
  new StartupError(
    "SECRETS_KEY does not match the key this database's provider keys were encrypted with: start the server with that SECRETS_KEY " +
      "(without SECRETS_KEY on PGlite: the secrets.key DATA_DIR held)",
  );

const opens = (secrets: SecretBox, row: { ciphertext: Uint8Array; iv: Uint8Array; authTag: Uint8Array }, associatedData: string) => {
  try {
    return secrets.decrypt(
      { ciphertext: Buffer.from(row.ciphertext) as Bytes, iv: Buffer.from(row.iv) as Bytes, authTag: Buffer.from(row.authTag) as Bytes },
      associatedData,
    );
  } catch {
    return undefined;
  }
};

/** The known text, encrypted with a key: what a server with that key can open at start-up. */
export const encryptCheckValue = (secrets: SecretBox) => secrets.encrypt(CHECK_TEXT, CHECK_ASSOCIATED_DATA);

/**
 * Start-up: the SECRETS_KEY must be the one the database's secrets were written with, or every claim would
 * fail on a provider key it cannot decrypt. The first server to meet a database stores a known text
 * encrypted with its key (after checking it opens the provider keys already there); every later start,
 * on any instance, must decrypt it.
 */
export async function verifySecretsKey(prisma: PrismaClient, secrets: SecretBox): Promise<void> {
  let check = await prisma.secretsKeyCheck.findUnique({ where: { id: 1 } });
  if (!check) {
    // A database from before the check existed: its provider keys tell whether this key is theirs.
    const existing = await prisma.providerKey.findFirst();
    if (existing && opens(secrets, existing, `${existing.applicationId}/${existing.provider}`) === undefined) throw secretsKeyMismatch();
    const encrypted = encryptCheckValue(secrets);
    // Instances starting together: one row wins, and every instance checks its key against that one.
    await prisma.$executeRaw`INSERT INTO secrets_key_check (id, ciphertext, iv, auth_tag)
      VALUES (1, ${encrypted.ciphertext}, ${encrypted.iv}, ${encrypted.authTag}) ON CONFLICT (id) DO NOTHING`;
    check = await prisma.secretsKeyCheck.findUniqueOrThrow({ where: { id: 1 } });
  }
  if (opens(secrets, check, CHECK_ASSOCIATED_DATA) !== CHECK_TEXT) throw secretsKeyMismatch();
}
