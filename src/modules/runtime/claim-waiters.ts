export interface Wakeable {
  /** Set by a wake-up; the waiting loop clears it before each look, so a wake during a look is not lost. */
  woken: boolean;
  release?: () => void;
}

export interface Waiter extends Wakeable {
  readonly applicationId: string;
  readonly apiKeyId: string;
}

/** Resolves after `ms`, on a wake-up or on abort, whichever comes first; at once if already woken. */
export function waitForWake(waiter: Wakeable, ms: number, signal: AbortSignal): Promise<void> {
  if (waiter.woken || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const release = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", release);
      waiter.release = undefined;
      resolve();
    };
    const timer = setTimeout(release, ms);
    signal.addEventListener("abort", release, { once: true });
    waiter.release = release;
  });
}

export function wake(waiter: Wakeable): void {
  waiter.woken = true;
  waiter.release?.();
}

/** Status watches long-polling on this instance, by job, woken when the job changes (on any instance). */
export class StatusWatchers {
  readonly #byJob = new Map<string, Set<Wakeable>>();

  get size(): number {
    let count = 0;
    for (const watchers of this.#byJob.values()) count += watchers.size;
    return count;
  }

  add(expertJobId: string): Wakeable {
    const watcher: Wakeable = { woken: false };
    let watchers = this.#byJob.get(expertJobId);
    if (!watchers) this.#byJob.set(expertJobId, (watchers = new Set()));
    watchers.add(watcher);
    return watcher;
  }

  remove(expertJobId: string, watcher: Wakeable): void {
    const watchers = this.#byJob.get(expertJobId);
    watchers?.delete(watcher);
    if (watchers?.size === 0) this.#byJob.delete(expertJobId);
  }

  wake(expertJobId: string): void {
    for (const watcher of this.#byJob.get(expertJobId) ?? []) wake(watcher);
  }

  wakeAll(): void {
    for (const watchers of this.#byJob.values()) for (const watcher of watchers) wake(watcher);
  }
}

/** Claims long-polling on this instance, by application, woken when a job of theirs is queued. */
export class ClaimWaiters {
  readonly #byApplication = new Map<string, Set<Waiter>>();

  get size(): number {
    let count = 0;
    for (const waiters of this.#byApplication.values()) count += waiters.size;
    return count;
  }

  /** The applications with claims waiting. */
  get applications(): string[] {
    return [...this.#byApplication.keys()];
  }

  /** The API keys of the waiting claims. */
  get keys(): string[] {
    const keys = new Set<string>();
    for (const waiters of this.#byApplication.values()) for (const waiter of waiters) keys.add(waiter.apiKeyId);
    return [...keys];
  }

  add(applicationId: string, apiKeyId: string): Waiter {
    const waiter: Waiter = { applicationId, apiKeyId, woken: false };
    let waiters = this.#byApplication.get(applicationId);
    if (!waiters) this.#byApplication.set(applicationId, (waiters = new Set()));
    waiters.add(waiter);
    return waiter;
  }

  remove(waiter: Waiter): void {
    const waiters = this.#byApplication.get(waiter.applicationId);
    waiters?.delete(waiter);
    if (waiters?.size === 0) this.#byApplication.delete(waiter.applicationId);
  }

  /** Resolves after `ms`, on a wake-up or on abort, whichever comes first; at once if already woken. */
  wait(waiter: Waiter, ms: number, signal: AbortSignal): Promise<void> {
    return waitForWake(waiter, ms, signal);
  }

  wake(applicationId: string): void {
    for (const waiter of this.#byApplication.get(applicationId) ?? []) this.#release(waiter);
  }

  /** The waiters of one API key (it was revoked); a key's waiters are all of its application's. */
  wakeKey(apiKeyId: string): void {
    for (const waiters of this.#byApplication.values()) {
      for (const waiter of waiters) if (waiter.apiKeyId === apiKeyId) this.#release(waiter);
    }
  }

  wakeAll(): void {
    for (const applicationId of [...this.#byApplication.keys()]) this.wake(applicationId);
  }

  #release(waiter: Waiter): void {
    wake(waiter);
  }
}
