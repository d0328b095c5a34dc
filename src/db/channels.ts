// Notifications are sent after the change they announce has committed, never inside its transaction;
// payloads stay under 8000 bytes (NOTIFY's limit) and carry no history: they are wake-up pointers, and
// listeners re-read the database.
export const channels = {
  checkpointCreated: "app_checkpoint_created",
  expertJobChanged: "app_expert_job_changed",
  apiKeyRevoked: "app_api_key_revoked",
} as const;

export const listenedChannels: readonly string[] = Object.values(channels);

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

/**
 * Tells every instance that something committed. Call it after the commit: it returns at once, and the
 * notification goes out shortly after (src/notify/publisher.ts). A notification that is lost (a crash
 * between commit and send) only delays a wake-up until the next safety re-read.
 */
export interface Notifier {
  checkpointCreated(payload: CheckpointCreatedPayload): void;
  expertJobChanged(payload: ExpertJobChangedPayload): void;
  apiKeyRevoked(payload: ApiKeyRevokedPayload): void;
}
