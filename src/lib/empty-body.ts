import type { FastifyRequest } from "fastify";

/**
 * preValidation hook for POST routes whose body fields are all optional: the Perstack client sends
 * `Content-Type: application/json` with no body, which the JSON parser turns into `undefined`;
 * validating it as `{}` gives the route's own answer instead of a 422 "must be object".
 */
export async function emptyBodyAsObject(request: FastifyRequest): Promise<void> {
  if (request.body === undefined || request.body === null) request.body = {};
}
