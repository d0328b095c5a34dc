export interface Waiter {
  readonly applicationId: string;
  readonly apiKeyId: string;
  /** Set by a wake-up; the claim loop clears it before each attempt, so a wake during an attempt is not lost. */
  woken: boolean;
  release?: () => void;
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
    waiter.woken = true;
    waiter.release?.();
  }
}
