import http from "node:http";
import type { AddressInfo } from "node:net";

export interface ReceivedWebhook {
  headers: Record<string, string>;
  body: string;
}

/** What the receiver does with the nth request (0-based): answer with a status, or never answer. */
export type Responder = (request: ReceivedWebhook, index: number) => number | "hang" | Promise<number | "hang">;

export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  respond: Responder;
  /** Resolves once `count` requests have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/** A real HTTP receiver on 127.0.0.1, recording every request; answers 200 unless told otherwise. */
export async function startWebhookReceiver(path = "/hooks"): Promise<WebhookReceiver> {
  const received: ReceivedWebhook[] = [];
  const waiters: Array<() => void> = [];
  const receiver: Partial<WebhookReceiver> = { received, respond: () => 200 };
  const server = http.createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const item: ReceivedWebhook = {
      headers: Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, String(value)])),
      body: Buffer.concat(chunks).toString("utf8"),
    };
    const index = received.push(item) - 1;
    for (const wake of waiters.splice(0)) wake();
    const answer = await receiver.respond!(item, index);
    if (answer === "hang") return; // the connection stays open until the sender gives up
    response.writeHead(answer, { "content-type": "text/plain" }).end(answer < 300 ? "ok" : "nope");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  receiver.waitFor = async (count, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs;
    while (received.length < count) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`${received.length} of ${count} webhooks arrived within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return received.slice(0, count);
  };
  receiver.close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  return receiver as WebhookReceiver;
}
