/**
 * A child process holding many SSE connections, so 10,000 streams are not parsed by one event loop.
 * It records when each `id: <seq>` line arrives (CLOCK_MONOTONIC, comparable with the parent's clock) and
 * reports a sequence number's arrival times once every open connection has it.
 *
 * Raw sockets instead of fetch: a stream costs a socket and a few closures here, and finding event ids
 * is one native `indexOf` per chunk, so the client adds as little as possible to the latency it measures.
 */
import net from "node:net";
import { nowMs } from "./stats.ts";

export type WorkerCommand =
  { type: "open"; port: number; path: string; tokens: string[]; parallel: number } | { type: "flush"; seq: number } | { type: "close" };

export type WorkerReport =
  | { type: "opened"; open: number; failed: number; errors: string[] }
  | { type: "arrivals"; seq: number; times: number[]; missing: number }
  | { type: "closed" };

const ID_LINE = Buffer.from("\nid: ");
const HEADER_END = Buffer.from("\r\n\r\n");

const EMPTY = Buffer.alloc(0);
const READ_BUFFER = Buffer.alloc(256 * 1024);

/** A "\nid: " split across reads: the tail of `buffer` (after `from`) that starts it, else nothing to carry. */
function partialIdLine(buffer: Buffer, from: number): Buffer {
  for (let length = Math.min(ID_LINE.length - 1, buffer.length - from); length > 0; length--) {
    if (buffer.subarray(buffer.length - length).equals(ID_LINE.subarray(0, length)))
      return Buffer.from(buffer.subarray(buffer.length - length));
  }
  return EMPTY;
}

const sockets = new Set<net.Socket>();
const arrivals = new Map<number, number[]>();
const send = (report: WorkerReport) => process.send!(report);

function record(seq: number, at: number) {
  let times = arrivals.get(seq);
  if (!times) arrivals.set(seq, (times = []));
  times.push(at);
  if (times.length >= sockets.size) {
    arrivals.delete(seq);
    send({ type: "arrivals", seq, times, missing: 0 });
  }
}

function connect(port: number, path: string, token: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let head: Buffer | undefined = Buffer.alloc(0);
    let carry: Buffer = EMPTY;
    // `onread`: libuv reads straight into one buffer shared by all sockets and calls back, without the
    // stream machinery and a new Buffer per read. Nothing may keep a view of it (head and carry are copies).
    const socket = net.connect({
      port,
      host: "127.0.0.1",
      onread: { buffer: READ_BUFFER, callback: (length: number) => (onData(READ_BUFFER.subarray(0, length)), true) },
    });
    socket.setNoDelay(true);
    socket.once("connect", () =>
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`,
      ),
    );
    const onData = (chunk: Buffer) => {
      const at = nowMs();
      if (head) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf(HEADER_END);
        if (end === -1) return;
        const status = head.toString("latin1", 9, 12);
        if (status !== "200") {
          socket.destroy();
          return reject(new Error(`stream answered ${status}: ${head.toString("utf8", 0, 300)}`));
        }
        chunk = head.subarray(end + 2);
        head = undefined;
        sockets.add(socket);
        resolve(socket);
      }
      let buffer = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk;
      let from = 0;
      for (;;) {
        const start = buffer.indexOf(ID_LINE, from);
        if (start === -1) break;
        const end = buffer.indexOf(10, start + ID_LINE.length);
        if (end === -1) {
          carry = Buffer.from(buffer.subarray(start));
          return;
        }
        record(Number(buffer.toString("latin1", start + ID_LINE.length, end)), at);
        from = end;
      }
      carry = partialIdLine(buffer, from);
    };
    socket.on("error", (error) => {
      sockets.delete(socket);
      reject(error);
    });
    socket.on("close", () => sockets.delete(socket));
  });
}

async function open(command: Extract<WorkerCommand, { type: "open" }>) {
  let failed = 0;
  const errors: string[] = [];
  let next = 0;
  const opener = async () => {
    while (next < command.tokens.length) {
      const token = command.tokens[next++]!;
      try {
        await connect(command.port, command.path, token);
      } catch (error) {
        failed++;
        if (errors.length < 5) errors.push(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(command.parallel, command.tokens.length) }, opener));
  send({ type: "opened", open: sockets.size, failed, errors });
}

process.on("message", (command: WorkerCommand) => {
  if (command.type === "open") void open(command);
  else if (command.type === "flush") {
    const times = arrivals.get(command.seq) ?? [];
    arrivals.delete(command.seq);
    send({ type: "arrivals", seq: command.seq, times, missing: sockets.size - times.length });
  } else if (command.type === "close") {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    send({ type: "closed" });
    process.disconnect();
  }
});
