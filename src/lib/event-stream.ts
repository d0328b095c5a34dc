import type { OutgoingHttpHeaders } from "node:http";
import type { FastifyReply, FastifyRequest } from "fastify";

/**
 * Takes the response over for Server-Sent Events and writes its headers. False for HEAD (the headers a GET
 * would answer, then the end), so the caller subscribes nothing.
 */
export function startEventStream(request: FastifyRequest, reply: FastifyReply): boolean {
  reply.hijack();
  // A stream may stay quiet for longer than the server's idle-connection timeout; its heartbeat keeps proxies open.
  // (Injected requests have a socket without timeouts.)
  request.raw.socket.setTimeout?.(0);
  reply.raw.writeHead(200, {
    // Headers set by hooks (CORS, rate limit) are kept: hijacking bypasses Fastify's own header writing.
    ...(reply.getHeaders() as OutgoingHttpHeaders),
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no",
    connection: "keep-alive",
    "x-request-id": request.id,
  });
  if (request.raw.method === "HEAD") {
    reply.raw.end();
    return false;
  }
  reply.raw.flushHeaders();
  return true;
}
