import type { handleServerStreamingCall } from "@grpc/grpc-js";
import type { WatchDeliveryRequest, WatchDeliveryResponse } from "../gen/delivery/v1/delivery.js";
import { WatchDeliveryResponse as WatchDeliveryResponseCodec } from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { toProtoDelivery, toProtoEvent } from "../mapping/protoMapping.js";
import type { WatchEncoder, WatchHub } from "../watch/watchHub.js";
import { ShuttingDown } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import { parseAfterVersion, parseDeliveryId, parseFields } from "./parse.js";
import type { StreamRegistry } from "./streamRegistry.js";

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
  readonly registry: StreamRegistry;
}

const RESUME_HINT = "the server is shutting down; watch again (on any replica) with after_version set to the last version received";

export function createWatchHandler({ hub, logger, registry }: WatchHandlerDeps): handleServerStreamingCall<WatchDeliveryRequest, WatchDeliveryResponse> {
  return (call) => {
    let deliveryId: string;
    let afterVersion: number | undefined;
    try {
      ({ deliveryId, afterVersion } = parseFields({
        deliveryId: () => parseDeliveryId(call.request.deliveryId),
        afterVersion: () => (call.request.afterVersion === undefined ? undefined : parseAfterVersion(call.request.afterVersion)),
      }));
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
        abort: () => registry.end(call, new ShuttingDown(RESUME_HINT)),
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
