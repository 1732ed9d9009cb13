import type { ServerDuplexStream, ServerWritableStream } from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { ShuttingDown, type StreamCredentialsExpired } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import { whenStreamEnds } from "./streamEnd.js";

type OpenStream = ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/**
 * Every open server stream of the process (watches, health watches,
 * reflection), so shutdown ends them all the same way: UNAVAILABLE with
 * SHUTTING_DOWN, and clients resume on another replica. grpc-js's
 * tryShutdown waits for open streams; ending them lets it complete.
 */
export interface StreamRegistry {
  /** Registers a stream until it finishes, fails or is cancelled. */
  track(call: OpenStream): void;
  /** Ends one stream with UNAVAILABLE (SHUTTING_DOWN), or UNAUTHENTICATED when its credential expired; at most once. */
  end(call: OpenStream, reason?: ShuttingDown | StreamCredentialsExpired): void;
  /** Ends every open stream; later tracked streams are ended at once. */
  endAll(): void;
  readonly size: number;
}

export function createStreamRegistry(logger: Logger): StreamRegistry {
  const open = new Set<OpenStream>();
  const ended = new WeakSet<OpenStream>();
  let closing = false;

  const end = (call: OpenStream, reason: ShuttingDown | StreamCredentialsExpired = new ShuttingDown()) => {
    if (ended.has(call)) return;
    ended.add(call);
    open.delete(call);
    if (!call.cancelled) call.emit("error", toServiceError(reason, logger));
  };

  const untrack = (_code: unknown, _details: unknown, call: OpenStream) => {
    ended.add(call);
    open.delete(call);
  };

  return {
    track(call) {
      if (closing) return end(call);
      open.add(call);
      whenStreamEnds(call, untrack, call);
    },
    end,
    endAll() {
      closing = true;
      for (const call of [...open]) end(call);
    },
    get size() {
      return open.size;
    },
  };
}
