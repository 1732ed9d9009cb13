import { type handleServerStreamingCall, status } from "@grpc/grpc-js";
import type { WatchDeliveryRequest, WatchDeliveryResponse } from "../gen/delivery/v1/delivery.js";
import { WatchDeliveryResponse as WatchDeliveryResponseCodec } from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { toProtoDelivery, toProtoEvent } from "../mapping/protoMapping.js";
import type { WatchEncoder, WatchHub } from "../watch/watchHub.js";
import { toServiceError } from "./errorStatus.js";
import { parseAfterVersion, parseDeliveryId } from "./parse.js";

/** Pre-encoded WatchDeliveryResponse bytes: the hub encodes an update once for all local watchers. */
export const watchEncoder: WatchEncoder = {
  snapshot: (delivery) => WatchDeliveryResponseCodec.encode({ delivery: toProtoDelivery(delivery), event: undefined }).finish(),
  update: ({ event, delivery }) =>
    WatchDeliveryResponseCodec.encode({ delivery: toProtoDelivery(delivery), event: toProtoEvent(event) }).finish(),
};

/** The response serializer of WatchDelivery: bytes from watchEncoder go out as they are. */
export function serializeWatchResponse(value: WatchDeliveryResponse | Uint8Array): Buffer {
  if (value instanceof Uint8Array) return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return Buffer.from(WatchDeliveryResponseCodec.encode(value).finish());
}

export interface WatchHandlerDeps {
  readonly hub: WatchHub;
  readonly logger: Logger;
}

export function createWatchHandler({ hub, logger }: WatchHandlerDeps): handleServerStreamingCall<WatchDeliveryRequest, WatchDeliveryResponse> {
  return (call) => {
    let deliveryId: string;
    let afterVersion: number | undefined;
    try {
      deliveryId = parseDeliveryId(call.request.deliveryId);
      afterVersion = call.request.afterVersion === undefined ? undefined : parseAfterVersion(call.request.afterVersion);
    } catch (error) {
      call.emit("error", toServiceError(error, logger));
      return;
    }
    // The stream carries pre-encoded bytes (see serializeWatchResponse), hence the cast.
    const write = call.write.bind(call) as unknown as (bytes: Uint8Array) => boolean;
    hub
      .watch(deliveryId, afterVersion, {
        write,
        onDrain: (listener) => call.on("drain", listener),
        end: () => call.end(),
        abort: () =>
          call.emit("error", {
            code: status.UNAVAILABLE,
            details: "the server is shutting down; watch again with after_version set to the last version received",
          }),
      })
      .then(
        (handle) => {
          if (call.cancelled) handle.close();
          else call.on("cancelled", () => handle.close());
        },
        (error: unknown) => call.emit("error", toServiceError(error, logger)),
      );
  };
}
