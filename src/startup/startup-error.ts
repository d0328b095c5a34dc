/**
 * A start-up failure the operator can fix: its message is one line naming the setting and what to
 * change. The server prints it (prefixed `Cannot start:`) and exits 1, without a stack trace.
 */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StartupError";
  }
}

export const errorCode = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code;
