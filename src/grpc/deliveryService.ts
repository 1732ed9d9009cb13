import type { handleUnaryCall } from "@grpc/grpc-js";
import type { DeliveryApp } from "../app/deliveryApp.js";
import type { RecordedEvent } from "../domain/index.js";
import type { DeliveryServiceServer } from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { toProtoDelivery, toProtoEvent } from "../mapping/protoMapping.js";
import { toServiceError } from "./errorStatus.js";
import {
  formatPageToken,
  LIMITS,
  type ParsedCommand,
  parseAfterVersion,
  parseAtVersion,
  parseCommand,
  parseCommandEnvelope,
  parseDeliveryId,
  parsePageSize,
  parsePageToken,
  parseRequestId,
} from "./parse.js";

export interface DeliveryServiceDeps {
  readonly app: DeliveryApp;
  readonly logger: Logger;
  readonly watchDelivery: DeliveryServiceServer["watchDelivery"];
}

function recordResponse({ event, delivery }: RecordedEvent) {
  return { delivery: toProtoDelivery(delivery), event: toProtoEvent(event) };
}

/** Thin handlers: parse, call the application, map the result. */
export function createDeliveryService({ app, logger, watchDelivery }: DeliveryServiceDeps): DeliveryServiceServer {
  function unary<Req, Res>(handle: (request: Req) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      // parse errors throw synchronously inside handle; the promise chain catches both.
      Promise.resolve()
        .then(() => handle(call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => callback(toServiceError(error, logger)),
        );
    };
  }

  const command = <Req>(parse: (request: Req) => ParsedCommand) =>
    unary(async (request: Req) => {
      const { deliveryId, command, expectedVersion, requestId } = parse(request);
      return recordResponse(await app.execute(deliveryId, command, { expectedVersion, requestId }));
    });

  return {
    createDelivery: command((r) => {
      const requestId = parseRequestId(r.requestId);
      const create = parseCommand.create(r);
      const deliveryId = r.deliveryId === "" ? app.newDeliveryId(requestId) : parseDeliveryId(r.deliveryId);
      return { deliveryId, command: create, requestId };
    }),
    startDelivery: command((r) => parseCommandEnvelope(r, parseCommand.start())),
    pickupProducts: command((r) => parseCommandEnvelope(r, parseCommand.pickup(r))),
    deliverProducts: command((r) => parseCommandEnvelope(r, parseCommand.deliver(r))),
    increaseBudget: command((r) => parseCommandEnvelope(r, parseCommand.increaseBudget(r))),
    cancelDelivery: command((r) => parseCommandEnvelope(r, parseCommand.cancel(r))),

    getDelivery: unary(async (r) => {
      const delivery = await app.get(parseDeliveryId(r.deliveryId), parseAtVersion(r.atVersion));
      return { delivery: toProtoDelivery(delivery) };
    }),

    listDeliveries: unary(async (r) => {
      const page = await app.list(parsePageToken(r.pageToken), parsePageSize(r.pageSize, LIMITS.listDeliveries));
      return { deliveries: page.deliveries.map(toProtoDelivery), nextPageToken: formatPageToken(page.nextCursor) };
    }),

    listDeliveryEvents: unary(async (r) => {
      const deliveryId = parseDeliveryId(r.deliveryId);
      const afterVersion = parseAfterVersion(r.afterVersion);
      const records = await app.events(deliveryId, afterVersion, parsePageSize(r.pageSize, LIMITS.listEvents));
      return { events: records.map(({ event }) => toProtoEvent(event)) };
    }),

    watchDelivery,
  };
}
