/**
 * The ceiling replay throughput cannot pass on this machine: one Node process writing a prebuilt 1 MiB
 * buffer 207 times (the size of replay's 200-step job) to N loopback sockets, read and discarded by N
 * clients in a second process. No database, no framing, no frames to build: only the kernel's copies.
 *
 *   node --import tsx bench/loopback-ceiling.ts            writes bench/results/<date>-loopback-ceiling.json
 */
import { fork } from "node:child_process";
import { writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";

const MEGABYTES = 207;
const SELF = fileURLToPath(import.meta.url);

function runClients(count: number, port: number): void {
  const started = performance.now();
  let ended = 0;
  for (let index = 0; index < count; index++) {
    const socket = net.connect(port, "127.0.0.1");
    socket.resume();
    socket.on("end", () => {
      if (++ended === count) {
        process.send?.({ ms: performance.now() - started });
        process.exit(0);
      }
    });
  }
}

async function measure(count: number): Promise<{ sockets: number; seconds: number; aggregateMBps: number; eachMBps: number }> {
  const chunk = Buffer.alloc(1 << 20, 97);
  const server = net.createServer((socket) => {
    let written = 0;
    const pump = (): void => {
      while (written < MEGABYTES) {
        written++;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
      socket.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  const child = fork(SELF, ["client", String(count), String(port)], { execArgv: process.execArgv });
  const { ms } = await new Promise<{ ms: number }>((resolve) => child.once("message", (message) => resolve(message as { ms: number })));
  server.close();
  const seconds = ms / 1000;
  return {
    sockets: count,
    seconds: +seconds.toFixed(2),
    aggregateMBps: Math.round((count * MEGABYTES) / seconds),
    eachMBps: +(MEGABYTES / seconds).toFixed(1),
  };
}

if (process.argv[2] === "client") {
  runClients(Number(process.argv[3]), Number(process.argv[4]));
} else {
  const runs = [];
  for (const count of [1, 10, 100]) {
    const run = await measure(count);
    console.log(`${count} socket(s) × ${MEGABYTES} MB: ${run.seconds} s, ${run.aggregateMBps} MB/s in all, ${run.eachMBps} MB/s each`);
    runs.push(run);
  }
  const at = new Date().toISOString();
  const file = `bench/results/${at.slice(0, 16).replace(/:/g, "")}-loopback-ceiling.json`;
  await writeFile(
    file,
    JSON.stringify({ at, cores: os.cpus().length, load: os.loadavg(), node: process.version, megabytes: MEGABYTES, runs }, null, 2) + "\n",
  );
  console.log(`results: ${file}`);
}
