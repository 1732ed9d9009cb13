import type { handleServerStreamingCall, ServerWritableStream } from "@grpc/grpc-js";
import type { WatchDeliveryRequest, WatchDeliveryResponse } from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { updateBytes } from "../mapping/protoMapping.js";
import { encodeDeliveryIn } from "../mapping/wire.js";
import type { WatchEncoder, WatchHub, WatchStream } from "../watch/watchHub.js";
import { ShuttingDown } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import { parseAfterVersion, parseDeliveryId, parseFields } from "./parse.js";
import { closeHandle, whenStreamEnds } from "./streamEnd.js";
import type { StreamRegistry } from "./streamRegistry.js";

/** Pre-encoded WatchDeliveryResponse bytes (Buffers, sent as they are): the hub encodes an update once for all local watchers. */
export const watchEncoder: WatchEncoder = {
  // WatchDeliveryResponse { delivery = 1 }: a snapshot has no event.
  snapshot: (delivery) => encodeDeliveryIn(1, delivery),
  update: updateBytes,
};

export interface WatchHandlerDeps {
  readonly hub: WatchHub;
  readonly logger: Logger;
  readonly registry: StreamRegistry;
}

const RESUME_HINT = "the server is shutting down; watch again (on any replica) with after_version set to the last version received";

/** The hub's side of one call: one object per watcher, no closures (a process holds thousands). */
class CallWatchStream implements WatchStream {
  constructor(
    private readonly call: ServerWritableStream<WatchDeliveryRequest, WatchDeliveryResponse>,
    private readonly registry: StreamRegistry,
  ) {}
  // The stream carries pre-encoded bytes (see preEncoded.ts), hence the cast.
  write(bytes: Uint8Array): boolean {
    return this.call.write(bytes as unknown as WatchDeliveryResponse);
  }
  onDrain(listener: () => void): void {
    this.call.on("drain", listener);
  }
  end(): void {
    this.call.end();
  }
  abort(): void {
    this.registry.end(this.call, new ShuttingDown(RESUME_HINT));
  }
}

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
    hub.watch(deliveryId, afterVersion, new CallWatchStream(call, registry)).then(
      (handle) => whenStreamEnds(call, closeHandle, handle),
      (error: unknown) => call.emit("error", toServiceError(error, logger)),
    );
  };
}
