import { Type, type Static } from "@sinclair/typebox";
import { providers, TimestampSchema } from "./common.ts";
import { claimExample } from "./examples.ts";
import { CheckpointSchema } from "./checkpoints.ts";
import { ExpertJobSchema, ExpertJobStatusSchema } from "./expert-jobs.ts";

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

export const ClaimSchema = Type.Object(
  {
    expertJob: ExpertJobSchema,
    checkpoint: Type.Optional(CheckpointSchema),
    leaseExpiresAt: TimestampSchema,
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
