export interface ReconnectPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
}

/** Full jitter: a random delay up to min(max, initial·2^attempt), so many instances do not reconnect in step. */
export const reconnectDelay = (attempt: number, policy: ReconnectPolicy): number =>
  Math.random() * Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** attempt);
