import type { handleServerStreamingCall } from "@grpc/grpc-js";
import type { FeedEncoder, FeedHub, FeedMessage } from "../feed/feedHub.js";
import {
  DeliveryStatus as ProtoStatus,
  type WatchDeliveriesRequest,
  WatchDeliveriesResponse,
} from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { toProtoDelivery, toProtoEvent } from "../mapping/protoMapping.js";
import { STATUS_TO_PROTO } from "../mapping/wire.js";
import { ShuttingDown } from "./conditions.js";
import { encoded } from "../mapping/sharedWriter.js";
import type { BinaryWriter } from "@bufbuild/protobuf/wire";
import { toServiceError } from "./errorStatus.js";
import { parseFields, parseResumeToken, parseStatuses } from "./parse.js";
import { closeHandle, whenStreamEnds } from "./streamEnd.js";
import type { StreamRegistry } from "./streamRegistry.js";

/** A change's status before it: none for a creation. */
const PROTO_STATUS = { NONE: ProtoStatus.DELIVERY_STATUS_UNSPECIFIED, ...STATUS_TO_PROTO } as const;

/** WatchDeliveriesResponse bytes (a Buffer, sent as it is): the hub encodes each change once for every watcher it goes to. */
export const feedEncoder: FeedEncoder = {
  encode: (message, resumeToken) => encoded((w) => encodeFeedMessage(message, resumeToken, w)),
};

function encodeFeedMessage(message: FeedMessage, resumeToken: string, writer: BinaryWriter): BinaryWriter {
  switch (message.kind) {
    case "snapshot":
      return WatchDeliveriesResponse.encode({
        kind: { $case: "snapshot", snapshot: { delivery: toProtoDelivery(message.delivery) } },
        resumeToken,
      }, writer);
    case "change":
      return WatchDeliveriesResponse.encode({
        kind: {
          $case: "change",
          change: {
            delivery: toProtoDelivery(message.record.delivery),
            event: toProtoEvent(message.record.event),
            previousStatus: PROTO_STATUS[message.previous],
          },
        },
        resumeToken,
      }, writer);
    case "caughtUp":
      return WatchDeliveriesResponse.encode({ kind: { $case: "caughtUp", caughtUp: {} }, resumeToken }, writer);
    case "checkpoint":
      return WatchDeliveriesResponse.encode({ kind: { $case: "checkpoint", checkpoint: {} }, resumeToken }, writer);
    default: {
      const unhandled: never = message;
      throw new Error(`unhandled feed message ${JSON.stringify(unhandled)}`);
    }
  }
}

const RESUME_HINT = "the server is shutting down; watch again (on any replica) with the last resume_token received";

export function createWatchDeliveriesHandler({
  hub,
  logger,
  registry,
}: {
  hub: FeedHub;
  logger: Logger;
  registry: StreamRegistry;
}): handleServerStreamingCall<WatchDeliveriesRequest, WatchDeliveriesResponse> {
  return (call) => {
    let statuses;
    let resumeToken;
    try {
      ({ statuses, resumeToken } = parseFields({
        statuses: () => parseStatuses(call.request.statuses),
        resumeToken: () => parseResumeToken(call.request.resumeToken),
      }));
    } catch (error) {
      call.emit("error", toServiceError(error, logger));
      return;
    }
    const write = call.write.bind(call) as unknown as (bytes: Uint8Array) => boolean;
    hub
      .watch(
        { statuses, resumeToken, includeSnapshot: call.request.includeSnapshot },
        {
          write,
          onDrain: (listener) => call.on("drain", listener),
          abort: () => registry.end(call, new ShuttingDown(RESUME_HINT)),
          fail: (error) => {
            if (!call.cancelled) call.emit("error", toServiceError(error, logger));
          },
        },
      )
      .then(
        (handle) => whenStreamEnds(call, closeHandle, handle),
        (error: unknown) => call.emit("error", toServiceError(error, logger)),
      );
  };
}
