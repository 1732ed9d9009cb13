import { type handleServerStreamingCall, status } from "@grpc/grpc-js";

export interface WatchLimit {
  readonly open: number;
}

/**
 * Caps open WatchDelivery streams per process. Counted here, from the call's
 * start to its end (OK, error or cancellation), so concurrent starts cannot
 * overshoot the way a count of registered watchers could.
 */
export function limitWatchers<Req, Res>(
  handler: handleServerStreamingCall<Req, Res>,
  maxWatchers: number,
): handleServerStreamingCall<Req, Res> & WatchLimit {
  let open = 0;
  const limited = (call: Parameters<handleServerStreamingCall<Req, Res>>[0]) => {
    if (open >= maxWatchers) {
      call.emit("error", {
        code: status.RESOURCE_EXHAUSTED,
        details: `this replica already has ${maxWatchers} open watches; retry later or on another replica`,
      });
      return;
    }
    open++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      open--;
    };
    call.on("finish", release);
    call.on("cancelled", release);
    call.on("close", release);
    handler(call);
  };
  Object.defineProperty(limited, "open", { get: () => open });
  return limited as handleServerStreamingCall<Req, Res> & WatchLimit;
}
