import { ReplyError } from "ioredis";
import { StoreUnavailable } from "../../domain/index.js";

// Replies that mean "Redis is there but cannot serve this now": treated like
// a lost connection, so callers see UNAVAILABLE and may retry. MOVED and ASK
// (the command was not run) reach us when ioredis does not follow them: it
// follows them for the single commands the store sends, but a pipeline to a
// node that lost a slot fails its redirected commands with the raw reply.
const TRANSIENT_REPLY = /^(LOADING|BUSY|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|MOVED|ASK)\b/;

/**
 * Runs a Redis operation; connection loss, timeouts and transient replies
 * become StoreUnavailable. Other reply errors are bugs and pass through.
 */
export function callRedis<T>(operation: () => Promise<T>): Promise<T> {
  return attempt(operation).catch((error: unknown) => {
    // A slot that just moved: the commands did not run, and the slot map is being refreshed; once more.
    if (isRedirect(error)) return attempt(operation).catch(unavailable);
    return unavailable(error);
  });
}

/** The operation's promise; a synchronous throw becomes a rejection. */
function attempt<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return operation();
  } catch (error) {
    return Promise.reject(error);
  }
}

function unavailable(error: unknown): never {
  if (error instanceof ReplyError && !TRANSIENT_REPLY.test((error as Error).message)) throw error;
  throw new StoreUnavailable(error);
}

const REDIRECT = /^(MOVED|ASK)\b|All keys in the pipeline should belong/;

function isRedirect(error: unknown): boolean {
  return error instanceof Error && REDIRECT.test(error.message);
}
