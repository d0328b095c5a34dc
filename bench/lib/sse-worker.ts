/**
 * A child process holding many SSE connections, so 10,000 streams are not parsed by one event loop.
 *
 * An event has arrived when its last byte has (sse-events.ts finds the ends). For every event the worker
 * records when that was (CLOCK_MONOTONIC, comparable with the parent's clock) and the event's size, and
 * reports a sequence number's arrival times once every open connection has it. In replay mode it instead follows each connection to the end of the stream
 * (`event: complete`) and reports, per connection, when it opened, how many events and bytes it got, and
 * when it was done.
 *
 * Raw sockets instead of fetch: a stream costs a socket and a few closures here, and finding event ends
 * is a native `indexOf` per read, so the client adds as little as possible to what it measures.
 */
import net from "node:net";
import { EventScanner, eventBytes, eventId, isComplete } from "./sse-events.ts";
import { nowMs } from "./stats.ts";

export type WorkerCommand =
  | { type: "open"; port: number; path: string; tokens: string[]; parallel: number; mode?: "live" | "replay" }
  | { type: "flush"; seq: number }
  | { type: "replayed"; timeoutMs: number }
  | { type: "close" };

export interface ReplayedStream {
  /** When the request was sent, the first event ended, and the stream completed (monotonic ms; undefined if it did not). */
  startedAt: number;
  firstEventAt?: number;
  completedAt?: number;
  /** The connection closed before `complete` (cut off by the server, or an error). */
  closedAt?: number;
  events: number;
  lastSeq: number;
  /** Bytes of the response body (events, pings and chunk framing). */
  bytes: number;
}

export type WorkerReport =
  | { type: "ready" }
  | { type: "opened"; open: number; failed: number; errors: string[] }
  | { type: "arrivals"; seq: number; times: number[]; missing: number; eventBytes?: number }
  | { type: "replayed"; streams: ReplayedStream[] }
  | { type: "closed" };

const HEADER_END = Buffer.from("\r\n\r\n");

const READ_BUFFER = Buffer.alloc(256 * 1024);

const sockets = new Set<net.Socket>();
const arrivals = new Map<number, number[]>();
const sizes = new Map<number, number>();
const replays: ReplayedStream[] = [];
let replayWaiter: (() => void) | undefined;
const send = (report: WorkerReport) => process.send!(report);

function record(seq: number, at: number, bytes: number) {
  if (!sizes.has(seq)) sizes.set(seq, bytes);
  let times = arrivals.get(seq);
  if (!times) arrivals.set(seq, (times = []));
  times.push(at);
  if (times.length >= sockets.size) report(seq, times, 0);
}

function report(seq: number, times: number[], missing: number) {
  arrivals.delete(seq);
  const eventBytes = sizes.get(seq);
  sizes.delete(seq);
  send({ type: "arrivals", seq, times, missing, eventBytes });
}

function connect(port: number, path: string, token: string, mode: "live" | "replay"): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let head: Buffer | undefined = Buffer.alloc(0);
    const replay: ReplayedStream = { startedAt: nowMs(), events: 0, lastSeq: 0, bytes: 0 };
    const scanner = new EventScanner((eventHead, bytes, at) => {
      const seq = eventId(eventHead);
      if (mode === "live") {
        if (seq !== undefined) record(seq, at, eventBytes(eventHead, bytes));
        return;
      }
      if (seq !== undefined) {
        replay.events++;
        replay.lastSeq = seq;
        replay.firstEventAt ??= at;
      } else if (isComplete(eventHead)) {
        replay.completedAt = at;
        if (replays.every(done)) replayWaiter?.();
      }
    });
    // `onread`: libuv reads straight into one buffer shared by all sockets and calls back, without the
    // stream machinery and a new Buffer per read. Nothing may keep a view of it (the scanner copies what it keeps).
    const socket = net.connect({
      port,
      host: "127.0.0.1",
      onread: { buffer: READ_BUFFER, callback: (length: number) => (onData(READ_BUFFER.subarray(0, length)), true) },
    });
    socket.setNoDelay(true);
    socket.once("connect", () => {
      replay.startedAt = nowMs();
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nAccept: text/event-stream\r\n\r\n`,
      );
    });
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
        // The body starts after the blank line that ends the headers; copied, since `head` is the parser's own.
        chunk = head.subarray(end + HEADER_END.length);
        head = undefined;
        sockets.add(socket);
        if (mode === "replay") replays.push(replay);
        resolve(socket);
      }
      replay.bytes += chunk.length;
      scanner.push(chunk, at);
    };
    socket.on("error", (error) => {
      sockets.delete(socket);
      reject(error);
    });
    socket.on("close", () => {
      sockets.delete(socket);
      if (mode === "replay" && replay.completedAt === undefined) {
        replay.closedAt = nowMs();
        if (replays.every(done)) replayWaiter?.();
      }
    });
  });
}

const done = (stream: ReplayedStream) => stream.completedAt !== undefined || stream.closedAt !== undefined;

async function open(command: Extract<WorkerCommand, { type: "open" }>) {
  let failed = 0;
  const errors: string[] = [];
  let next = 0;
  const opener = async () => {
    while (next < command.tokens.length) {
      const token = command.tokens[next++]!;
      try {
        await connect(command.port, command.path, token, command.mode ?? "live");
      } catch (error) {
        failed++;
        if (errors.length < 5) errors.push(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(command.parallel, command.tokens.length) }, opener));
  send({ type: "opened", open: sockets.size, failed, errors });
}

async function replayed(timeoutMs: number) {
  if (!replays.every(done)) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      replayWaiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  send({ type: "replayed", streams: replays });
}

send({ type: "ready" });

process.on("message", (command: WorkerCommand) => {
  if (command.type === "open") void open(command);
  else if (command.type === "flush") {
    const times = arrivals.get(command.seq) ?? [];
    report(command.seq, times, sockets.size - times.length);
  } else if (command.type === "replayed") void replayed(command.timeoutMs);
  else if (command.type === "close") {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    send({ type: "closed" });
    process.disconnect();
  }
});
