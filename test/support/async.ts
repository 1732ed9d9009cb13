/**
 * Waiting in tests, always with a deadline and a message that says what was
 * awaited: a promise (`within`), a condition (`waitUntil`), an attempt that
 * throws until it passes (`eventually`), and the error of a call that must
 * fail (`rejectionOf`). Nothing here sleeps as synchronisation.
 */
import type { ServiceError } from "@grpc/grpc-js";

/** How often `waitUntil` evaluates its condition. */
const POLL_INTERVAL_MS = 10;

/** `promise`, or an error naming `what` once `timeoutMs` is over (instead of hanging the test). */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Re-evaluates `condition` until it returns something other than undefined or
 * false, and resolves with that value (`true` for a plain condition). A
 * condition that throws counts as not met yet. Once `timeoutMs` is over, fails
 * naming `what` (and the last error, if the condition threw).
 */
export async function waitUntil<T>(
  condition: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let lastError: unknown;
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError === undefined ? "" : ` (last error: ${String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${cause}`);
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/**
 * Runs `attempt` until it resolves, and resolves with its result; rethrows the
 * attempt's last error (e.g. a failed expect, with its diff) once `timeoutMs`
 * is over.
 */
export async function eventually<T>(attempt: () => Promise<T>, { timeoutMs = 10_000, intervalMs = 50 } = {}): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

/** The error of a call that must fail; throws if it succeeds. */
export async function rejectionOf(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail, but it succeeded");
}
