import createError from "@fastify/error";

// Every error the services throw carries its HTTP status and the exact `reason` text of the contract;
// the root error handler turns them into `{code, error, reason}`.
export const UnauthorizedError = createError("APP_UNAUTHORIZED", "Failed to authenticate", 401);
export const ForbiddenError = createError<[string]>("APP_FORBIDDEN", "%s", 403);
export const NotFoundError = createError<[string]>("APP_NOT_FOUND", "%s", 404);
export const BadRequestError = createError<[string]>("APP_BAD_REQUEST", "%s", 400);
export const ConflictError = createError<[string]>("APP_CONFLICT", "%s", 409);

export const reasons = {
  expertJobNotFound: "Expert job not found",
  checkpointNotFound: "Checkpoint not found",
  expertNotFound: "Expert not found",
  queryOrFilesRequired: "Query or files are required",
  noCheckpointFound: "No checkpoint found",
  unableToContinue: "Current status is unable to continue",
  unableToCancel: "Current status is unable to cancel",
  providerKeyNotFound: "Provider API key not found",
  idempotencyKeyReused: "Idempotency-Key was already used with another request body",
  runtimeScopeRequired: "This endpoint requires an API key with the runtime scope",
  leaseNotCurrent: "Lease token is not the job's current lease: the job was requeued, claimed again or taken back",
} as const;

export interface ValidationIssue {
  path: string;
  message: string;
}

/** A 422 raised outside schema validation (a rule no schema can express); `reason` is the issue list. */
export class RequestValidationError extends Error {
  readonly statusCode = 422;
  constructor(readonly issues: ValidationIssue[]) {
    super(issues.map((issue) => `${issue.path} ${issue.message}`).join("; "));
  }
}

export { StartupError } from "./startup/startup-error.ts";
