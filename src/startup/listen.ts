import net from "node:net";
import { StartupError, errorCode } from "./startup-error.ts";

/** One line for a failure to listen on HOST:PORT, naming the setting to change. */
export function describeListenError(error: unknown, host: string, port: number): string | undefined {
  const address = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  switch (errorCode(error)) {
    case "EADDRINUSE":
      return `PORT=${port}: ${address} is already in use by another process: stop that process, or set PORT to a free port`;
    case "EACCES":
      return `PORT=${port}: listening on ${address} needs privileges this user lacks: set PORT to 1024 or above (put a proxy on port ${port})`;
    case "EADDRNOTAVAIL":
      return `HOST=${host}: not an address of this machine: set HOST to one of its addresses (127.0.0.1, or 0.0.0.0 for all)`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `HOST=${host}: the name cannot be resolved: set HOST to an address of this machine (127.0.0.1, or 0.0.0.0 for all)`;
    default:
      return undefined;
  }
}

/**
 * Fails fast when HOST:PORT cannot be listened on, before the database is opened (PGlite's first start
 * takes seconds). Another process may still take the port in between: listen's own error says the same.
 */
export async function checkListenable(host: string, port: number): Promise<void> {
  if (port === 0) return;
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (error) {
    const line = describeListenError(error, host, port);
    if (line) throw new StartupError(line, { cause: error });
    throw error;
  }
  await new Promise((resolve) => probe.close(resolve));
}
