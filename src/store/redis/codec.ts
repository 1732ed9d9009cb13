/**
 * The bytes of storage layout 2: events as StoredEvent protobuf (the version
 * is the position in the log, see keys.ts), state as the fold of its events,
 * published updates as ready-made WatchDeliveryResponse bytes.
 */
import { type Delivery, type DeliveryEventData, type DeliveryState, evolve, initialState, type RecordedEvent } from "../../domain/index.js";
import { WatchDeliveryResponse } from "../../gen/delivery/v1/delivery.js";
import { fromProtoDelivery, fromProtoEvent, rememberUpdateBytes, updateBytes } from "../../mapping/protoMapping.js";
import { decodeStoredEvent, encodeStoredEvent } from "../../mapping/wire.js";
import type { FeedChange, FeedEntry } from "../eventStore.js";
import { type IndexedStatus, STATUS_CODES } from "./keys.js";

/** StoredEvent bytes: src/mapping/wire.ts writes and reads them (records.proto describes them). */
export { decodeStoredEvent, encodeStoredEvent };

/** The request-hash field of a key: "r" + a client's request_id, "a" + a private one. */
export function requestField(requestKey: string, fromClient: boolean): string {
  return (fromClient ? "r" : "a") + requestKey;
}

/**
 * Folds part of a log into records, each event with the state after it:
 * `entries` are the events after `from` (the state at their first version
 * minus one; initialState for a log read from version 1).
 */
export function foldLog(deliveryId: string, entries: readonly Uint8Array[], from: DeliveryState = initialState): RecordedEvent[] {
  const records: RecordedEvent[] = [];
  let state = from;
  for (let i = 0; i < entries.length; i++) {
    const event = decodeStoredEvent(entries[i]!, deliveryId, from.version + i + 1);
    const delivery = evolve(state, event);
    records.push({ event, delivery });
    state = delivery;
  }
  return records;
}

/** The current state from a log, without building every record. */
export function foldState(deliveryId: string, entries: readonly Uint8Array[]): DeliveryState {
  let state: DeliveryState = initialState;
  for (let i = 0; i < entries.length; i++) state = evolve(state, decodeStoredEvent(entries[i]!, deliveryId, i + 1));
  return state;
}

/** One published update: the WatchDelivery message itself, so watchers can be sent these bytes. */
export function encodeUpdate(record: RecordedEvent): Buffer {
  return updateBytes(record);
}

export function decodeUpdate(bytes: Buffer): RecordedEvent {
  const message = WatchDeliveryResponse.decode(bytes);
  if (!message.delivery || !message.event) throw new Error("update lacks delivery or event");
  const record = { event: fromProtoEvent(message.event), delivery: fromProtoDelivery(message.delivery) };
  rememberUpdateBytes(record, bytes);
  return record;
}

/** A feed entry's statuses, "<before><after>" as status codes (0: none before); undefined if malformed. */
export function feedStatuses(codes: string): Pick<FeedEntry, "before" | "after"> | undefined {
  const after = STATUS_BY_CODE[Number(codes[1])];
  return after && { before: STATUS_BY_CODE[Number(codes[0])] ?? "NONE", after };
}

/**
 * A partition's message (the append script's): "<entry before> <entry> <delivery id> <version>
 * <status codes before, after> <update bytes>". The ids and numbers hold no space.
 */
export function decodePartitionMessage(partition: number, bytes: Buffer): FeedChange | undefined {
  const fields: string[] = [];
  let at = 0;
  for (let i = 0; i < 5; i++) {
    const space = bytes.indexOf(32, at);
    if (space < 0) return undefined;
    fields.push(bytes.toString("latin1", at, space));
    at = space + 1;
  }
  const [previous, id, deliveryId, version, codes] = fields as [string, string, string, string, string];
  const statuses = feedStatuses(codes);
  if (!statuses) return undefined;
  return { previous, entry: { partition, id, deliveryId, version: Number(version), ...statuses }, record: decodeUpdate(bytes.subarray(at)) };
}

/** Index members sort by creation time, then id: "<created_at ms, 13 digits><id>". */
export function indexMember(delivery: Pick<Delivery, "id" | "createdAtMs">): string {
  return String(delivery.createdAtMs).padStart(13, "0") + delivery.id;
}

export function idOfIndexMember(member: string): string {
  return member.slice(13);
}

export function statusCode(status: DeliveryState["status"]): number {
  return status === "NONE" ? 0 : STATUS_CODES[status as IndexedStatus];
}

export const STATUS_BY_CODE: readonly (IndexedStatus | undefined)[] = [undefined, "READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"];

/** One-letter event types in the feed (t). */
export const EVENT_CODES: { readonly [T in DeliveryEventData["type"]]: string } = {
  created: "c",
  started: "s",
  productsPickedUp: "p",
  productsDelivered: "d",
  budgetIncreased: "b",
  cancelled: "x",
};
export const EVENT_BY_CODE = new Map(Object.entries(EVENT_CODES).map(([type, code]) => [code, type as DeliveryEventData["type"]]));
