/**
 * Counts failures per key (a client address) in fixed windows: after `max` failures a key is refused until
 * its window ends. Memory is bounded: past `maxKeys`, ended windows are dropped first, then the oldest.
 */
export class FailureLimiter {
  readonly #windows = new Map<string, { failures: number; endsAt: number }>();

  constructor(
    readonly max: number,
    readonly windowMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Milliseconds until `key` may try again, or 0 when it may now. */
  retryAfterMs(key: string, now = Date.now()): number {
    const window = this.#windows.get(key);
    if (!window || window.endsAt <= now) return 0;
    return window.failures >= this.max ? window.endsAt - now : 0;
  }

  fail(key: string, now = Date.now()): void {
    const window = this.#windows.get(key);
    if (window && window.endsAt > now) {
      window.failures++;
      return;
    }
    this.#windows.delete(key);
    if (this.#windows.size >= this.maxKeys) this.#evict(now);
    this.#windows.set(key, { failures: 1, endsAt: now + this.windowMs });
  }

  #evict(now: number): void {
    for (const [key, window] of this.#windows) if (window.endsAt <= now) this.#windows.delete(key);
    // Insertion order is window order: the oldest windows go first.
    for (const key of this.#windows.keys()) {
      if (this.#windows.size < this.maxKeys) break;
      this.#windows.delete(key);
    }
  }
}
