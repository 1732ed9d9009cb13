/**
 * A deadline per Redis call, counted from the call's arrival.
 *
 * ioredis' own `commandTimeout` starts when a command is written to the
 * socket, and a command can wait before that: a Cluster holds commands back
 * while it follows a redirection or refreshes its slot map, and with ioredis'
 * auto-pipelining (which this service used before writeBatching.ts) only one
 * pipeline per node was in flight, so calls made while Redis was frozen
 * (SIGSTOP, a long fork, a dead network path without RST) waited for as long
 * as the freeze lasted. callWithin() races the call against a timer started
 * when it arrives, so the caller gets an error within `ms` whatever is queued
 * ahead of it.
 *
 * A call that missed its deadline may still be carried out by Redis later (it
 * is already queued or on the wire and cannot be taken back): an append that
 * timed out may be applied. Callers retry with the same request id, which the
 * store answers idempotently. The late reply (or error) is swallowed.
 */

/**
 * The call did not complete within its deadline. Not a ReplyError, so
 * callRedis() turns it into StoreUnavailable (UNAVAILABLE: the caller may retry).
 * The message starts with "Command timed out", like ioredis' own timeout.
 */
export class CommandDeadlineError extends Error {
  override readonly name = "CommandDeadlineError";
  constructor(readonly timeoutMs: number) {
    super(`Command timed out: no reply from Redis within ${timeoutMs} ms of the call`);
  }
}

/**
 * Starts `operation` now and settles with it, or rejects with
 * CommandDeadlineError once `ms` have passed, whichever comes first.
 * `operation` is called synchronously (so commands keep their order), and a
 * synchronous throw becomes a rejection.
 */
export function callWithin<T>(ms: number, operation: () => Promise<T>): Promise<T> {
  let pending: Promise<T>;
  try {
    pending = operation();
  } catch (error) {
    return Promise.reject(error);
  }
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new CommandDeadlineError(ms)), ms);
    // Shutdown need not wait for a deadline: the pending call holds its own socket.
    timer.unref();
    // Both handlers stay attached after the deadline, so a late rejection is
    // handled (no unhandledRejection) and a late value is dropped.
    pending.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** callWithin() with the deadline bound: `const within = withDeadline(2_000); await within(() => redis.get(k))`. */
export function withDeadline(ms: number): <T>(operation: () => Promise<T>) => Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) throw new RangeError(`a deadline must be a positive number of ms, got ${ms}`);
  return (operation) => callWithin(ms, operation);
}
