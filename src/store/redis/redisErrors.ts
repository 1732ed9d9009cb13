import { ReplyError } from "ioredis";
import { StoreUnavailable } from "../../domain/index.js";

// Replies that mean "Redis is there but cannot serve this now": treated like
// a lost connection, so callers see UNAVAILABLE and may retry.
const TRANSIENT_REPLY = /^(LOADING|BUSY|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS)\b/;

/**
 * Runs a Redis operation; connection loss, timeouts and transient replies
 * become StoreUnavailable. Other reply errors are bugs and pass through.
 */
export async function callRedis<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof ReplyError && !TRANSIENT_REPLY.test((error as Error).message)) throw error;
    throw new StoreUnavailable(error);
  }
}
