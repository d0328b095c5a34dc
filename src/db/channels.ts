import type { Prisma } from "../generated/prisma/client.ts";

// NOTIFY is delivered on commit only, payloads must stay under 8000 bytes and carry no history:
// they are wake-up pointers, and listeners re-read the database.
export const channels = {
  checkpointCreated: "app_checkpoint_created",
  expertJobChanged: "app_expert_job_changed",
  apiKeyRevoked: "app_api_key_revoked",
} as const;

export interface CheckpointCreatedPayload {
  expertJobId: string;
  seq: number;
  /** For the streams of an application's job changes (a checkpoint moves the job's step, usage and duration). */
  applicationId?: string;
}

export interface ExpertJobChangedPayload {
  expertJobId: string;
  applicationId: string;
  status: string;
}

export interface ApiKeyRevokedPayload {
  apiKeyId: string;
}

type Tx = Pick<Prisma.TransactionClient, "$executeRaw">;

export async function notifyCheckpointCreated(tx: Tx, payload: CheckpointCreatedPayload): Promise<void> {
  await tx.$executeRaw`SELECT pg_notify(${channels.checkpointCreated}, ${JSON.stringify(payload)})`;
}

export async function notifyExpertJobChanged(tx: Tx, payload: ExpertJobChangedPayload): Promise<void> {
  await tx.$executeRaw`SELECT pg_notify(${channels.expertJobChanged}, ${JSON.stringify(payload)})`;
}

export async function notifyApiKeyRevoked(tx: Tx, payload: ApiKeyRevokedPayload): Promise<void> {
  await tx.$executeRaw`SELECT pg_notify(${channels.apiKeyRevoked}, ${JSON.stringify(payload)})`;
}
