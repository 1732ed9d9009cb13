import type { handleUnaryCall, ServerUnaryCall } from "@grpc/grpc-js";
import type { DeliveryApp } from "../app/deliveryApp.js";
import type { RecordedEvent } from "../domain/index.js";
import type { CreateDeliveryResponse, DeliveryServiceServer, GetDeliveryResponse } from "../gen/delivery/v1/delivery.js";
import type { Logger } from "../logger.js";
import { toProtoDelivery, toProtoEvent, updateBytes } from "../mapping/protoMapping.js";
import { encodeDeliveryIn } from "../mapping/wire.js";
import { actorOfCall } from "./callAuth.js";
import { toServiceError } from "./errorStatus.js";
import { noteDeliveryOf } from "./instrument.js";
import {
  formatPageToken,
  LIMITS,
  type ParsedCommand,
  parseAfterVersion,
  parseAtVersion,
  parseCommand,
  parseCommandEnvelope,
  parseDeliveryId,
  parseFields,
  parsePageSize,
  parseListQuery,
  parseRequestId,
} from "./parse.js";

export interface DeliveryServiceDeps {
  readonly app: DeliveryApp;
  readonly logger: Logger;
  readonly watchDelivery: DeliveryServiceServer["watchDelivery"];
  readonly watchDeliveries: DeliveryServiceServer["watchDeliveries"];
}

/**
 * A command's response (delivery = 1, event = 2) has the fields of a
 * WatchDeliveryResponse: the bytes the append encoded for the watchers, sent
 * as they are (the method's serializer takes bytes, see preEncoded.ts).
 */
function recordResponse(record: RecordedEvent): CreateDeliveryResponse {
  return updateBytes(record) as unknown as CreateDeliveryResponse;
}

/** Thin handlers: parse, call the application, map the result. */
export function createDeliveryService({ app, logger, watchDelivery, watchDeliveries }: DeliveryServiceDeps): DeliveryServiceServer {
  function unary<Req, Res>(handle: (request: Req, call: ServerUnaryCall<Req, unknown>) => Promise<Res>): handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const fail = (error: unknown) => callback(toServiceError(error, logger));
      let answer: Promise<Res>;
      try {
        // A parse error throws synchronously inside handle.
        answer = handle(call.request, call);
      } catch (error) {
        fail(error);
        return;
      }
      answer.then((response) => callback(null, response), fail);
    };
  }

  const command = <Req>(parse: (request: Req) => ParsedCommand) =>
    unary(async (request: Req, call) => {
      const { deliveryId, command, expectedVersion, requestId } = parse(request);
      if (!(request as { deliveryId?: string }).deliveryId) noteDeliveryOf(call, deliveryId);
      // The principal the guard admitted: recorded on the event, and part of the request's fingerprint.
      return recordResponse(await app.execute(deliveryId, command, { expectedVersion, requestId, actor: actorOfCall(call) }));
    });

  return {
    createDelivery: command((r) => {
      const { requestId, create, clientId } = parseFields({
        requestId: () => parseRequestId(r.requestId),
        create: () => parseCommand.create(r),
        clientId: () => (r.deliveryId === "" ? undefined : parseDeliveryId(r.deliveryId)),
      });
      return { deliveryId: clientId ?? app.newDeliveryId(requestId), command: create, requestId };
    }),
    startDelivery: command((r) => parseCommandEnvelope(r, () => parseCommand.start())),
    pickupProducts: command((r) => parseCommandEnvelope(r, () => parseCommand.pickup(r))),
    deliverProducts: command((r) => parseCommandEnvelope(r, () => parseCommand.deliver(r))),
    increaseBudget: command((r) => parseCommandEnvelope(r, () => parseCommand.increaseBudget(r))),
    cancelDelivery: command((r) => parseCommandEnvelope(r, () => parseCommand.cancel(r))),

    getDelivery: unary(async (r) => {
      const { deliveryId, atVersion } = parseFields({
        deliveryId: () => parseDeliveryId(r.deliveryId),
        atVersion: () => parseAtVersion(r.atVersion),
      });
      // GetDeliveryResponse { delivery = 1 }, pre-encoded (the serializer takes bytes, see preEncoded.ts).
      return encodeDeliveryIn(1, await app.get(deliveryId, atVersion)) as unknown as GetDeliveryResponse;
    }),

    listDeliveries: unary(async (r) => {
      const { query, limit } = parseFields({
        query: () => parseListQuery(r),
        limit: () => parsePageSize(r.pageSize, LIMITS.listDeliveries),
      });
      const page = await app.list({ ...query, limit });
      return { deliveries: page.deliveries.map(toProtoDelivery), nextPageToken: formatPageToken(query, page.nextCursor) };
    }),

    listDeliveryEvents: unary(async (r) => {
      const { deliveryId, afterVersion, pageSize } = parseFields({
        deliveryId: () => parseDeliveryId(r.deliveryId),
        afterVersion: () => parseAfterVersion(r.afterVersion),
        pageSize: () => parsePageSize(r.pageSize, LIMITS.listEvents),
      });
      const records = await app.events(deliveryId, afterVersion, pageSize);
      return { events: records.map(({ event }) => toProtoEvent(event)) };
    }),

    watchDelivery,
    watchDeliveries,
  };
}
