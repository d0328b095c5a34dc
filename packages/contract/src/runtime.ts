import { Type, type Static } from "@sinclair/typebox";
import { IdSchema, providers, TimestampSchema } from "./common.ts";
import { claimExample } from "./examples.ts";
import { CheckpointSchema } from "./checkpoints.ts";
import { expertJobStatuses, ExpertJobSchema, ExpertJobStatusSchema } from "./expert-jobs.ts";

export const MAX_CLAIM_WAIT_MS = 30_000;

export const ClaimBodySchema = Type.Object(
  {
    waitMs: Type.Integer({
      minimum: 0,
      maximum: MAX_CLAIM_WAIT_MS,
      default: 0,
      description: "How long to wait for a job when none is queued (long poll); 0 answers at once",
    }),
  },
  { examples: [{ waitMs: 20000 }] },
);
export type ClaimBody = Static<typeof ClaimBodySchema>;

/** The request header a runtime sends its claim's `leaseToken` back in (HTTP header names are case-insensitive). */
export const LEASE_TOKEN_HEADER = "perstack-lease-token";

export const LeaseTokenHeadersSchema = Type.Object({
  [LEASE_TOKEN_HEADER]: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      description:
        "`Perstack-Lease-Token`: the `leaseToken` of the claim this runtime holds the job by. When the job's lease is no longer " +
        "that claim's (it ran out and the job was requeued, claimed by another runtime, continued or taken back), the request " +
        "is refused with 409 before anything is stored. Without the header nothing is checked (as before leases had tokens).",
    }),
  ),
});
export type LeaseTokenHeaders = Static<typeof LeaseTokenHeadersSchema>;

export const ClaimSchema = Type.Object(
  {
    expertJob: ExpertJobSchema,
    checkpoint: Type.Optional(CheckpointSchema),
    leaseExpiresAt: TimestampSchema,
    leaseToken: Type.String({
      description:
        "This claim's lease: send it as the `Perstack-Lease-Token` header on the job's checkpoint posts and status reports. " +
        "Every claim of a job gets a new one; once the job is requeued or claimed again, the old one is refused (409)",
    }),
    providerKey: Type.Object({ provider: Type.Union(providers.map((provider) => Type.Literal(provider))), key: Type.String() }),
  },
  {
    description:
      "`checkpoint`: where to resume (the one given to resume_from, else the job's latest; absent for a new job). " +
      "`leaseExpiresAt`: post a checkpoint or report status `processing` before then to keep the job. " +
      "`providerKey`: the API key the job's model needs.",
  },
);
export type Claim = Static<typeof ClaimSchema>;

export const ClaimEnvelopeSchema = Type.Object(
  { data: Type.Object({ claim: ClaimSchema }) },
  { examples: [{ data: { claim: claimExample } }] },
);

export const ReportStatusBodySchema = Type.Object({ status: ExpertJobStatusSchema }, { examples: [{ status: "processing" }] });
export type ReportStatusBody = Static<typeof ReportStatusBodySchema>;

export const WatchStatusQuerySchema = Type.Object({
  while: Type.Optional(
    Type.Union(
      expertJobStatuses.map((status) => Type.Literal(status)),
      {
        description:
          "The status the runtime last saw (usually `processing`): the answer waits while the job is still in it. Without it, " +
          "the answer is at once",
      },
    ),
  ),
  waitMs: Type.Integer({
    minimum: 0,
    maximum: MAX_CLAIM_WAIT_MS,
    default: 0,
    description: "How long to wait for the job to leave the `while` status (long poll); 0 answers at once",
  }),
});
export type WatchStatusQuery = Static<typeof WatchStatusQuerySchema>;

export const JobStatusSchema = Type.Object({ expertJobId: IdSchema, status: ExpertJobStatusSchema });
export type JobStatus = Static<typeof JobStatusSchema>;

export const JobStatusEnvelopeSchema = Type.Object(
  { data: Type.Object({ jobStatus: JobStatusSchema }) },
  { examples: [{ data: { jobStatus: { expertJobId: "test12345678901234567890", status: "canceling" } } }] },
);
