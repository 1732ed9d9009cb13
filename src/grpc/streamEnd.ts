import type { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";

/**
 * When a server stream ends, for every layer that needs to know (the watch
 * limit, the stream registry, the RPC log line, a credential's timer, the
 * watch hub): one set of listeners per call, whatever the number of layers.
 * A process holds one open stream per watcher, so what each stream keeps
 * counts: the listeners below are shared functions (no closures per call),
 * and the layers' callbacks sit in one list on the call, each with the value
 * it is about (a layer passes a shared function and its subject rather than a
 * closure made per call).
 *
 * A stream ends at the first of: an error emitted (its status is the
 * outcome), 'finish' (OK), 'cancelled' (the client went away) or 'close'.
 * Callbacks run once, in the order they were added; one added after the end
 * runs at once.
 */
export type StreamEndListener<T = undefined> = (code: status, details: string | undefined, subject: T) => void;

type Emitter = Pick<EventEmitter, "on">;

interface EndState {
  /** Listener, subject, listener, subject, ... */
  listeners: unknown[];
  code: status | undefined;
  details: string | undefined;
}

const STATE = Symbol("streamEnd");
type Tracked = Emitter & { [STATE]?: EndState };

function settle(call: Tracked, code: status, details: string | undefined): void {
  const state = call[STATE]!;
  if (state.code !== undefined) return;
  state.code = code;
  state.details = details;
  const listeners = state.listeners;
  state.listeners = [];
  for (let i = 0; i < listeners.length; i += 2) (listeners[i] as StreamEndListener<unknown>)(code, details, listeners[i + 1]);
}

function onError(this: Tracked, error: { code?: status; details?: string } | undefined): void {
  settle(this, error?.code ?? status.UNKNOWN, error?.details);
}
function onFinish(this: Tracked): void {
  settle(this, status.OK, undefined);
}
function onCancelled(this: Tracked): void {
  settle(this, status.CANCELLED, undefined);
}

/** Calls `listener` (with `subject`) once when the stream ends (at once if it already has). */
export function whenStreamEnds(call: Emitter, listener: StreamEndListener): void;
export function whenStreamEnds<T>(call: Emitter, listener: StreamEndListener<T>, subject: T): void;
export function whenStreamEnds<T>(call: Emitter, listener: StreamEndListener<T>, subject?: T): void {
  const tracked = call as Tracked;
  let state = tracked[STATE];
  if (!state) {
    state = { listeners: [], code: undefined, details: undefined };
    tracked[STATE] = state;
    call.on("error", onError);
    call.on("finish", onFinish);
    call.on("cancelled", onCancelled);
    call.on("close", onCancelled);
    // A grpc-js call tells whether its client already went away.
    if ((call as { cancelled?: boolean }).cancelled === true) settle(tracked, status.CANCELLED, undefined);
  }
  if (state.code !== undefined) listener(state.code, state.details, subject as T);
  else state.listeners.push(listener, subject);
}

/** A listener that closes its subject: `whenStreamEnds(call, closeHandle, handle)`. */
export function closeHandle(_code: status, _details: string | undefined, handle: { close(): void }): void {
  handle.close();
}
