import { randomUUID } from "node:crypto";
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import fp from "fastify-plugin";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { RequestValidationError, type ValidationIssue } from "../errors.ts";

type Validation = NonNullable<FastifyError["validation"]>;

/** Ajv reports a failed enum (a union of literals) as one `const` error per literal plus `anyOf`: merge them. */
function mergeEnumIssues(validation: Validation): Validation {
  const unions = new Set(validation.filter((issue) => issue.keyword === "anyOf").map((issue) => issue.instancePath));
  const allowed = new Map<string, unknown[]>();
  for (const issue of validation) {
    if (issue.keyword === "const" && unions.has(issue.instancePath)) {
      const values = allowed.get(issue.instancePath) ?? [];
      values.push((issue.params as { allowedValue?: unknown }).allowedValue);
      allowed.set(issue.instancePath, values);
    }
  }
  return validation.flatMap((issue) => {
    const values = allowed.get(issue.instancePath);
    if (!values) return [issue];
    if (issue.keyword === "const") return [];
    if (issue.keyword === "anyOf")
      return [{ ...issue, message: `must be one of: ${values.map((value) => JSON.stringify(value)).join(", ")}` }];
    return [issue];
  });
}

function validationIssues(validation: Validation): ValidationIssue[] {
  return mergeEnumIssues(validation).map((issue) => {
    const missing = (issue.params as { missingProperty?: string } | undefined)?.missingProperty;
    const extra = (issue.params as { additionalProperty?: string } | undefined)?.additionalProperty;
    const path = `${issue.instancePath}${missing ? `/${missing}` : extra ? `/${extra}` : ""}` || "/";
    return { path, message: issue.message ?? "is invalid" };
  });
}

/**
 * A malformed multipart body is the client's fault: busboy reports it with plain Errors (no status), and
 * @fastify/multipart answers a field that is not the JSON its part declares with a 406 nobody documents.
 */
function isMalformedMultipart(error: FastifyError): boolean {
  if (error.code === "FST_INVALID_JSON_FIELD_ERROR" || error.code === "FST_INVALID_MULTIPART_CONTENT_TYPE") return true;
  return error.statusCode === undefined && /multipart data|Boundary not found|Malformed part header|needle cannot/.test(error.message);
}

// Driver-adapter error kinds and Postgres codes (57P01-03: shutting down or starting up; class 08: connection
// exceptions) that mean the database cannot be reached right now, as opposed to a failing query.
const UNREACHABLE_KINDS = new Set(["DatabaseNotReachable", "ConnectionClosed", "SocketTimeout", "TooManyConnections"]);
const UNREACHABLE_PRISMA_CODES = new Set(["P1001", "P1002", "P1017", "P2024"]);
const UNREACHABLE_SOCKET_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE"]);

function isDatabaseUnavailable(error: FastifyError & { meta?: { driverAdapterError?: { cause?: { kind?: string; code?: string } } } }) {
  const cause = error.meta?.driverAdapterError?.cause;
  if (cause && (UNREACHABLE_KINDS.has(cause.kind ?? "") || /^(57P0[123]|08)/.test(cause.code ?? ""))) return true;
  if (UNREACHABLE_PRISMA_CODES.has(error.code)) return true;
  // The same, met by a raw statement of src/db/sql.ts: pg's own errors (SQLSTATE in `code`) and socket errors.
  if ("severity" in error && /^(57P0[123]|08)/.test(error.code ?? "")) return true;
  if (UNREACHABLE_SOCKET_CODES.has(error.code)) return true;
  return error.code === undefined && /^Connection terminated/.test(error.message);
}

const errorText = (code: number) => (code === 422 ? "Validation Failed" : (STATUS_CODES[code] ?? "Error"));

export function sendError(reply: FastifyReply, code: number, reason: unknown) {
  return reply
    .code(code)
    .type("application/json; charset=utf-8")
    .send({ code, error: errorText(code), reason });
}

/** The envelope as a raw HTTP response, for what fails before there is a request to reply to; the connection closes. */
function rawErrorResponse(code: number, reason: string): { head: Record<string, string>; body: string } {
  const body = JSON.stringify({ code, error: errorText(code), reason });
  return {
    head: {
      "content-type": "application/json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      connection: "close",
      "x-request-id": randomUUID(),
    },
    body,
  };
}

/** What Node's HTTP parser refuses before any request exists (Fastify's `clientErrorHandler`): a status and its reason. */
function clientErrorAnswer(error: NodeJS.ErrnoException): [number, string] {
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") return [408, "The request did not arrive in time"];
  if (error.code === "HPE_HEADER_OVERFLOW") return [431, "The request line and headers are larger than 16 KiB"];
  return [400, "Malformed HTTP request"];
}

/** Errors raised before routing (malformed framing, oversized headers, slow headers) in the envelope, not Node's or Fastify's own bodies. */
export function clientErrorHandler(
  this: { log: { debug(object: object, message: string): void } },
  error: NodeJS.ErrnoException,
  socket: Socket,
) {
  // A reset connection, or one already gone: there is nobody to answer.
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [code, reason] = clientErrorAnswer(error);
  const { head, body } = rawErrorResponse(code, reason);
  this.log.debug({ err: error, reqId: head["x-request-id"], code }, "client error");
  if (socket.writable) {
    const lines = Object.entries(head).map(([name, value]) => `${name}: ${value}`);
    socket.write(`HTTP/1.1 ${code} ${STATUS_CODES[code]}\r\n${lines.join("\r\n")}\r\n\r\n${body}`);
  }
  socket.destroy(error);
}

/** An `Expect` header other than `100-continue` (Node answers it by itself, with no body): 417 in the envelope. */
export function expectationFailed(request: IncomingMessage, response: ServerResponse) {
  const { head, body } = rawErrorResponse(417, `Unsupported expectation: ${String(request.headers.expect).slice(0, 100)}`);
  response.writeHead(417, head).end(body);
}

/** The one place errors become `{code, error, reason}`; anything unexpected is logged and masked. */
export const errorHandlerPlugin = fp(
  async (app) => {
    app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      if (error.validation) return sendError(reply, 422, validationIssues(error.validation));
      if (error instanceof RequestValidationError) return sendError(reply, 422, error.issues);
      if (isMalformedMultipart(error)) return sendError(reply, 400, "Malformed multipart body");
      const status = error.statusCode ?? 500;
      if (status >= 400 && status < 500) {
        const reason =
          error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError ? "Malformed JSON body" : error.message;
        if (status === 429 && reply.getHeader("retry-after") === undefined && error.message) reply.header("retry-after", "1");
        return sendError(reply, status, reason);
      }
      // A database restart or failover: the client should retry (runtimes do), so 503, not a masked 500.
      if (isDatabaseUnavailable(error)) {
        request.log.warn({ err: error }, "database unavailable");
        reply.header("retry-after", "1");
        return sendError(reply, 503, "Database unavailable; retry later");
      }
      request.log.error({ err: error }, "request failed");
      const masked = status === 503 ? "Service unavailable" : `Internal server error (request id ${request.id})`;
      return sendError(reply, status >= 500 && status < 600 ? status : 500, masked);
    });
    app.setNotFoundHandler((request, reply) => sendError(reply, 404, `Route ${request.method} ${request.url.split("?")[0]} not found`));
  },
  { name: "error-handler", fastify: "5.x" },
);
