import { EventEmitter } from "node:events";

export type NotificationListener = (payload: string) => void;

/**
 * Why listeners should look at the database again although no notification said so: the connection
 * that brings notifications came back (`reconnected`: any of them may have been missed, so everything
 * re-reads), or the safety interval passed (`periodic`: a notification may have been lost between a
 * commit and its send, so each listener checks cheaply whether what it waits for has happened).
 */
export type CatchUpReason = "reconnected" | "periodic";

/**
 * Wake-up hints from the other instances (and this one). A notification may be lost or merged, so
 * listeners treat it as "something changed" and re-read the database; on a catch-up they look again
 * without one.
 */
export interface Notifications {
  on(channel: string, listener: NotificationListener): () => void;
  onCatchUp(listener: (reason: CatchUpReason) => void): () => void;
  /** Whether notifications from other instances can reach this one now (the LISTEN or NATS connection is up). */
  readonly connected: boolean;
}

export class NotificationBus implements Notifications {
  /** Set by the backend that feeds the bus. */
  connected = true;
  readonly #events = new EventEmitter();

  constructor() {
    this.#events.setMaxListeners(0);
  }

  on(channel: string, listener: NotificationListener) {
    this.#events.on(`channel:${channel}`, listener);
    return () => void this.#events.off(`channel:${channel}`, listener);
  }

  onCatchUp(listener: (reason: CatchUpReason) => void) {
    this.#events.on("catch-up", listener);
    return () => void this.#events.off("catch-up", listener);
  }

  emit(channel: string, payload: string) {
    this.#events.emit(`channel:${channel}`, payload);
  }

  emitCatchUp(reason: CatchUpReason) {
    this.#events.emit("catch-up", reason);
  }
}

/** `run`, but a call while one is in progress does nothing (a database slower than the safety interval gets one re-read at a time). */
export function oneAtATime(run: () => Promise<void>): () => Promise<void> {
  let running = false;
  return async () => {
    if (running) return;
    running = true;
    try {
      await run();
    } finally {
      running = false;
    }
  };
}
