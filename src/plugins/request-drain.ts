import type { ServerResponse } from "node:http";
import fp from "fastify-plugin";

export interface RequestDrainOptions {
  /** How long shutdown waits for responses still in progress before connections are closed. */
  timeoutMs: number;
}

/**
 * Lets requests in flight finish on shutdown. `forceCloseConnections` destroys every socket right after
 * the preClose hooks, so this plugin's preClose, registered after the stream hub's and the runtime's
 * (which end open streams and waiting claims), waits for the responses still being produced, including
 * those of requests already sent but not yet read.
 */
export const requestDrainPlugin = fp<RequestDrainOptions>(
  async (app, { timeoutMs }) => {
    const inFlight = new Set<ServerResponse>();
    let drained: (() => void) | undefined;

    const settle = (response: ServerResponse) => {
      inFlight.delete(response);
      if (inFlight.size === 0) drained?.();
    };

    app.addHook("onRequest", async (_request, reply) => {
      const response = reply.raw;
      inFlight.add(response);
      response.once("close", () => settle(response));
    });
    // `close` is not emitted by injected (light-my-request) responses.
    app.addHook("onResponse", async (_request, reply) => settle(reply.raw));

    app.addHook("preClose", async () => {
      // The listener stays open until Fastify closes it after this hook: closing it now would reset connections
      // the kernel already accepted for us, with their requests sent.
      const deadline = Date.now() + timeoutMs;
      // A request whose bytes have arrived but are not parsed yet shows up within an I/O turn: be idle for two.
      for (let idleTurns = 0; idleTurns < 2 && Date.now() < deadline;) {
        if (inFlight.size === 0) {
          idleTurns++;
          await new Promise((resolve) => setImmediate(resolve));
          continue;
        }
        idleTurns = 0;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, deadline - Date.now());
          drained = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      if (inFlight.size > 0) app.log.warn({ requests: inFlight.size }, "shutting down with requests still in flight");
    });
  },
  { name: "request-drain", dependencies: ["stream-hub", "runtime"], fastify: "5.x" },
);
