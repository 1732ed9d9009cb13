import { type handleServerStreamingCall, status } from "@grpc/grpc-js";

/**
 * Caps open WatchDelivery streams per process. Counted here, from the call's
 * start to its end (OK, error or cancellation), so concurrent starts cannot
 * overshoot the way a count of registered watchers could.
 */
export function limitWatchers<Req, Res>(
  handler: handleServerStreamingCall<Req, Res>,
  maxWatchers: number,
): handleServerStreamingCall<Req, Res> {
  let open = 0;
  return (call) => {
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
}
