import type { ExpertJobStatus } from "./expert-jobs.schemas.ts";

/** The job state machine in one place (SPEC §4, §6, §7). */

export const runningStatuses: ReadonlySet<ExpertJobStatus> = new Set(["queued", "processing", "canceling", "requestDelegateResult"]);
export const isStopped = (status: ExpertJobStatus): boolean => !runningStatuses.has(status);

/** Stopped, waiting for a continue; they expire after PAUSED_JOB_TTL_MS. */
/** Jobs nothing will move on by itself: retention may delete them (paused jobs count once they expire). */
export const finishedStatuses: readonly ExpertJobStatus[] = ["completed", "failed", "canceled", "expired"];

export const pausedStatuses: ReadonlySet<ExpertJobStatus> = new Set(["requestInteractiveToolResult", "exceededMaxSteps"]);

export const continuableStatuses: readonly ExpertJobStatus[] = [
  "completed",
  "requestInteractiveToolResult",
  "requestDelegateResult",
  "exceededMaxSteps",
  "failed",
];

/** Statuses in which the runtime may post a checkpoint. */
export const acceptsCheckpoints: ReadonlySet<ExpertJobStatus> = new Set(["queued", "processing", "requestDelegateResult", "canceling"]);

export type CheckpointStatus =
  "init" | "proceeding" | "completed" | "stoppedByInteractiveTool" | "stoppedByDelegate" | "stoppedByExceededMaxSteps" | "stoppedByError";

export function jobStatusAfterCheckpoint(current: ExpertJobStatus, checkpoint: CheckpointStatus, delegated: boolean): ExpertJobStatus {
  if (current === "canceling") return "canceled";
  switch (checkpoint) {
    case "init":
    case "proceeding":
      return "processing";
    case "completed":
      return delegated ? "processing" : "completed";
    case "stoppedByInteractiveTool":
      return "requestInteractiveToolResult";
    case "stoppedByDelegate":
      return "requestDelegateResult";
    case "stoppedByExceededMaxSteps":
      return "exceededMaxSteps";
    case "stoppedByError":
      return "failed";
  }
}

/** What `POST .../cancel` does from each status: the new status, or undefined when it cannot cancel. */
export function statusAfterCancel(current: ExpertJobStatus): ExpertJobStatus | undefined {
  switch (current) {
    case "queued":
    case "requestInteractiveToolResult":
    case "exceededMaxSteps":
      return "canceled";
    case "processing":
    case "requestDelegateResult":
      return "canceling";
    case "canceling":
    case "canceled":
      return current;
    default:
      return undefined;
  }
}

/**
 * Status reports the runtime may make (`POST /expert_jobs/{id}` `{status}`): from → allowed reports.
 * Repeating the current status is accepted as a no-op, so a runtime may retry a report, or report the
 * status its last checkpoint already set.
 */
export const runtimeTransitions: Readonly<Record<ExpertJobStatus, readonly ExpertJobStatus[]>> = {
  queued: ["processing", "failed"],
  processing: ["processing", "completed", "requestInteractiveToolResult", "requestDelegateResult", "exceededMaxSteps", "failed"],
  requestDelegateResult: ["requestDelegateResult", "processing", "failed"],
  // `processing` here is the heartbeat of a runtime that has not yet seen the cancel: the job stays canceling.
  canceling: ["processing", "canceled", "failed"],
  completed: ["completed"],
  requestInteractiveToolResult: ["requestInteractiveToolResult"],
  exceededMaxSteps: ["exceededMaxSteps"],
  failed: ["failed"],
  canceled: ["canceled"],
  expired: [],
};

/** The status a runtime report leads to, or undefined when the state machine does not allow it. */
export function statusAfterReport(current: ExpertJobStatus, reported: ExpertJobStatus): ExpertJobStatus | undefined {
  if (!runtimeTransitions[current].includes(reported)) return undefined;
  return current === "canceling" && reported === "processing" ? "canceling" : reported;
}

/** Statuses in which a runtime holds the job under a lease; the sweeper takes back jobs whose lease ran out. */
export const leasedStatuses: readonly ExpertJobStatus[] = ["processing", "canceling", "requestDelegateResult"];

/** What happens to a leased job whose runtime went silent: canceled if it was canceling, else retried until maxRetries. */
export function statusAfterLeaseExpiry(current: ExpertJobStatus, retryCount: number, maxRetries: number): ExpertJobStatus {
  if (current === "canceling") return "canceled";
  return retryCount + 1 > maxRetries ? "failed" : "queued";
}
