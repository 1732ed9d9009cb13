import type { handleServerStreamingCall } from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { TooManyWatchers } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import { whenStreamEnds } from "./streamEnd.js";

/**
 * Caps open watch streams per process (every kind of watch shares one
 * counter). Counted here, from the call's start to its end (OK, error or
 * cancellation), so concurrent starts cannot overshoot the way a count of
 * registered watchers could.
 */
export function createWatcherLimit(maxWatchers: number, logger: Logger) {
  let open = 0;
  const release = () => {
    open--;
  };
  return function limitWatchers<Req, Res>(handler: handleServerStreamingCall<Req, Res>): handleServerStreamingCall<Req, Res> {
    return (call) => {
      if (open >= maxWatchers) {
        call.emit("error", toServiceError(new TooManyWatchers(maxWatchers), logger));
        return;
      }
      open++;
      whenStreamEnds(call, release);
      handler(call);
    };
  };
}
