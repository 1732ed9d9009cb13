/**
 * Domain <-> generated proto messages. Used by the gRPC layer (responses) and
 * by the stores (the Redis store keeps events as StoredEvent protobuf, see
 * src/store/redis/codec.ts; its migration reads release 1 JSON).
 */
import type { Delivery, DeliveryEvent, DeliveryEventData, DeliveryStatus } from "../domain/index.js";
import * as pb from "../gen/delivery/v1/delivery.js";
import { encodeChange, STATUS_TO_PROTO } from "./wire.js";


const STATUS_FROM_PROTO = new Map(
  Object.entries(STATUS_TO_PROTO).map(([name, value]) => [value, name as DeliveryStatus]),
);

function statusFromProto(status: pb.DeliveryStatus): DeliveryStatus {
  const name = STATUS_FROM_PROTO.get(status);
  if (name === undefined) throw new Error(`stored delivery has unknown status ${status}`);
  return name;
}

function big(n: number): bigint {
  return BigInt(n);
}

function num(n: bigint): number {
  const value = Number(n);
  if (!Number.isSafeInteger(value)) throw new Error(`stored value ${n} is not a safe integer`);
  return value;
}

function ms(date: Date | undefined): number {
  if (!date) throw new Error("stored record lacks a timestamp");
  return date.getTime();
}

export function toProtoDelivery(d: Delivery): pb.Delivery {
  return {
    id: d.id,
    status: STATUS_TO_PROTO[d.status],
    budget: big(d.budgetMinor),
    notes: d.notes,
    purchasePrice: big(d.purchasePriceMinor),
    sellPrice: big(d.sellPriceMinor),
    quantity: big(d.quantity),
    deliveredQuantity: big(d.deliveredQuantity),
    version: big(d.version),
    createdAt: new Date(d.createdAtMs),
    updatedAt: new Date(d.updatedAtMs),
  };
}

export function fromProtoDelivery(p: pb.Delivery): Delivery {
  return {
    id: p.id,
    status: statusFromProto(p.status),
    budgetMinor: num(p.budget),
    notes: p.notes,
    purchasePriceMinor: num(p.purchasePrice),
    sellPriceMinor: num(p.sellPrice),
    quantity: num(p.quantity),
    deliveredQuantity: num(p.deliveredQuantity),
    version: num(p.version),
    createdAtMs: ms(p.createdAt),
    updatedAtMs: ms(p.updatedAt),
  };
}

export function toProtoKind(data: DeliveryEventData): pb.DeliveryEvent["kind"] {
  switch (data.type) {
    case "created":
      return { $case: "created", created: { budget: big(data.budgetMinor), notes: data.notes } };
    case "started":
      return { $case: "started", started: {} };
    case "productsPickedUp":
      return {
        $case: "productsPickedUp",
        productsPickedUp: { purchasePrice: big(data.purchasePriceMinor), quantity: big(data.quantity) },
      };
    case "productsDelivered":
      return {
        $case: "productsDelivered",
        productsDelivered: { sellPrice: big(data.sellPriceMinor), quantity: big(data.quantity) },
      };
    case "budgetIncreased":
      return { $case: "budgetIncreased", budgetIncreased: { amount: big(data.amountMinor) } };
    case "cancelled":
      return { $case: "cancelled", cancelled: { reason: data.reason } };
    default: {
      const unhandled: never = data;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
}

export function fromProtoKind(kind: pb.DeliveryEvent["kind"]): DeliveryEventData {
  switch (kind?.$case) {
    case "created":
      return { type: "created", budgetMinor: num(kind.created.budget), notes: kind.created.notes };
    case "started":
      return { type: "started" };
    case "productsPickedUp":
      return {
        type: "productsPickedUp",
        purchasePriceMinor: num(kind.productsPickedUp.purchasePrice),
        quantity: num(kind.productsPickedUp.quantity),
      };
    case "productsDelivered":
      return {
        type: "productsDelivered",
        sellPriceMinor: num(kind.productsDelivered.sellPrice),
        quantity: num(kind.productsDelivered.quantity),
      };
    case "budgetIncreased":
      return { type: "budgetIncreased", amountMinor: num(kind.budgetIncreased.amount) };
    case "cancelled":
      return { type: "cancelled", reason: kind.cancelled.reason };
    case undefined:
      throw new Error("stored event has no kind");
    default: {
      const unhandled: never = kind;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
}

export function toProtoEvent(e: DeliveryEvent): pb.DeliveryEvent {
  return {
    deliveryId: e.deliveryId,
    version: big(e.version),
    occurredAt: new Date(e.occurredAtMs),
    requestId: e.requestId,
    actor: e.actor,
    kind: toProtoKind(e.data),
  };
}

export function fromProtoEvent(p: pb.DeliveryEvent): DeliveryEvent {
  return {
    deliveryId: p.deliveryId,
    version: num(p.version),
    occurredAtMs: ms(p.occurredAt),
    requestId: p.requestId,
    actor: p.actor,
    data: fromProtoKind(p.kind),
  };
}

/** Release 1 stored canonical proto JSON; the migration reads it. */
export function decodeDeliveryJson(json: string): Delivery {
  return fromProtoDelivery(pb.Delivery.fromJSON(JSON.parse(json)));
}

export function decodeEventJson(json: string): DeliveryEvent {
  return fromProtoEvent(pb.DeliveryEvent.fromJSON(JSON.parse(json)));
}

const encodedUpdates = new WeakMap<object, Buffer>();

/**
 * A record as WatchDeliveryResponse bytes: what the append publishes, what local
 * watchers receive, and (the same fields, delivery = 1 and event = 2) a
 * command's response. Encoded once per record, whoever asks first.
 */
export function updateBytes(record: { readonly delivery: Delivery; readonly event: DeliveryEvent }): Buffer {
  let bytes = encodedUpdates.get(record);
  if (bytes === undefined) {
    bytes = encodeChange(record.delivery, record.event);
    encodedUpdates.set(record, bytes);
  }
  return bytes;
}

/** A record decoded from `bytes` (a received update): updateBytes gives them back without encoding. */
export function rememberUpdateBytes(record: { readonly delivery: Delivery; readonly event: DeliveryEvent }, bytes: Buffer): void {
  encodedUpdates.set(record, bytes);
}
