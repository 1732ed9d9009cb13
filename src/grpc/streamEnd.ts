import type { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";

/**
 * When a server stream ends, for every layer that needs to know (the watch
 * limit, the stream registry, the RPC log line, a credential's timer, the
 * watch hub): one set of listeners per call, whatever the number of layers.
 * A process holds one open stream per watcher, so what each stream keeps
 * counts: the listeners below are shared functions (no closures per call),
 * and the layers' callbacks sit in one list on the call.
 *
 * A stream ends at the first of: an error emitted (its status is the
 * outcome), 'finish' (OK), 'cancelled' (the client went away) or 'close'.
 * Callbacks run once, in the order they were added; one added after the end
 * runs at once.
 */
export type StreamEndListener = (code: status, details: string | undefined) => void;

type Emitter = Pick<EventEmitter, "on">;

interface EndState {
  listeners: StreamEndListener[];
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
  for (const listener of listeners) listener(code, details);
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

/** Calls `listener` once when the stream ends (at once if it already has). */
export function whenStreamEnds(call: Emitter, listener: StreamEndListener): void {
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
  if (state.code !== undefined) listener(state.code, state.details);
  else state.listeners.push(listener);
}
