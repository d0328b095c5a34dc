// Every type here is derived from the API's route schemas (the contract package), so the client cannot
// drift from the API. Type-only imports: the client loads nothing of the contract at run time.
import type { Static } from "@sinclair/typebox";
import type {
  CheckpointSchema,
  ClaimBodySchema,
  ClaimSchema,
  ContinueExpertJobBodySchema,
  ErrorResponses,
  Exclusion,
  ExpertJobSchema,
  ExpertJobStatusSchema,
  GetCheckpointQuerySchema,
  JobStatusSchema,
  ListCheckpointsQuerySchema,
  ListExpertJobsQuerySchema,
  PageMetaSchema,
  PostCheckpointBodySchema,
  ResumeExpertJobBodySchema,
  StartExpertJobBodySchema,
  UsageSchema,
  WatchStatusQuerySchema,
} from "@expert-jobs/contract";

export type ExpertJob = Static<typeof ExpertJobSchema>;
export type ExpertJobStatus = Static<typeof ExpertJobStatusSchema>;
export type Checkpoint = Static<typeof CheckpointSchema>;
export type Claim = Static<typeof ClaimSchema>;
export type Usage = Static<typeof UsageSchema>;
export type PageMeta = Static<typeof PageMetaSchema>;

export type StartExpertJobBody = Static<typeof StartExpertJobBodySchema>;
export type ContinueExpertJobBody = Static<typeof ContinueExpertJobBodySchema>;
export type ResumeExpertJobBody = Static<typeof ResumeExpertJobBodySchema>;
export type PostCheckpointBody = Static<typeof PostCheckpointBodySchema>;
// Fields with a server-side default are optional for the caller.
export type ListExpertJobsQuery = Partial<Static<typeof ListExpertJobsQuerySchema>>;
export type ListCheckpointsQuery = Partial<Omit<Static<typeof ListCheckpointsQuerySchema>, "exclude">> & { exclude?: Exclude };
export type GetCheckpointQuery = Omit<Static<typeof GetCheckpointQuerySchema>, "exclude"> & { exclude?: Exclude };
export type { Exclusion };
/**
 * Heavy parts of checkpoints to leave out: `messages` (and `inputMessages`), `newMessages`, `toolCall`,
 * `toolResult`, `actionContent` (the action's large fields). One name, or several.
 */
export type Exclude = Exclusion | readonly Exclusion[];
export type ClaimBody = Partial<Static<typeof ClaimBodySchema>>;
export type WatchStatusQuery = Static<typeof WatchStatusQuerySchema>;
/** A job's status, as `waitForStatus` answers it. */
export type JobStatus = Static<typeof JobStatusSchema>;

export type ErrorBody = Static<(typeof ErrorResponses)[keyof typeof ErrorResponses]>;
/** A string, or for a 422 the list of `{path, message}` issues. */
export type ErrorReason = ErrorBody["reason"];

export interface ExpertJobPage {
  expertJobs: ExpertJob[];
  meta: PageMeta;
}

export interface CheckpointPage {
  checkpoints: Checkpoint[];
  meta: PageMeta;
}

/** What `checkpoints.stream()` yields: each checkpoint once, in order, then `complete` when the job stopped. */
export type StreamEvent =
  | { type: "checkpoint"; /** The event id: the checkpoint's sequence number in its job. */ id: number; checkpoint: Checkpoint }
  | { type: "complete"; status: ExpertJobStatus; expertJobId: string };

/** What `expertJobs.changes()` yields: `connected` on every (re)connection (read the list then), then changed jobs. */
export type JobChange = { type: "connected" } | { type: "job"; expertJob: ExpertJob };
