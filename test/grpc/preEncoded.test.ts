/**
 * Updates are encoded once: the bytes the append publishes are those local
 * watchers get and a command answers with (its response has the update's
 * fields). The methods' serializers send such bytes as they are.
 */
import { describe, expect, it } from "vitest";
import { evolve, initialState, type RecordedEvent } from "../../src/domain/index.js";
import { CreateDeliveryResponse, DeliveryServiceService, WatchDeliveryResponse } from "../../src/gen/delivery/v1/delivery.js";
import { acceptingEncoded, asBuffer } from "../../src/grpc/preEncoded.js";
import { rememberUpdateBytes, toProtoDelivery, toProtoEvent, updateBytes } from "../../src/mapping/protoMapping.js";
import { encoded } from "../../src/mapping/sharedWriter.js";
import { decodeUpdate } from "../../src/store/redis/codec.js";

const event = {
  deliveryId: "d-1",
  version: 1,
  occurredAtMs: 1_767_225_600_000,
  requestId: "req-1",
  actor: "",
  data: { type: "created", budgetMinor: 1_000, notes: "ring twice" },
} as const;
const record: RecordedEvent = { event, delivery: evolve(initialState, event) };

describe("updateBytes", () => {
  it("encodes a record once, as a Buffer, and gives the same bytes to every caller", () => {
    const copy = { ...record };
    const first = updateBytes(copy);
    expect(Buffer.isBuffer(first)).toBe(true);
    expect(updateBytes(copy)).toBe(first);
    expect(WatchDeliveryResponse.decode(first)).toEqual({ delivery: toProtoDelivery(record.delivery), event: toProtoEvent(record.event) });
  });

  it("is byte for byte a command's response: delivery = 1 and event = 2 in both messages", () => {
    const copy = { ...record };
    const expected = CreateDeliveryResponse.encode({ delivery: toProtoDelivery(record.delivery), event: toProtoEvent(record.event) }).finish();
    expect(Buffer.compare(Buffer.from(updateBytes(copy)), Buffer.from(expected))).toBe(0);
  });

  it("keeps a received update's bytes for the record decoded from them", () => {
    const received = Buffer.from(updateBytes({ ...record }));
    const decoded = decodeUpdate(received);
    expect(updateBytes(decoded)).toBe(received);
    const other = { ...record };
    rememberUpdateBytes(other, received);
    expect(updateBytes(other)).toBe(received);
  });
});

describe("acceptingEncoded", () => {
  const method = acceptingEncoded(DeliveryServiceService.createDelivery);

  it("sends bytes as they are, over the same memory", () => {
    const bytes = updateBytes({ ...record });
    const sent = method.responseSerialize(bytes);
    expect(sent.buffer).toBe(bytes.buffer);
    expect(sent.byteOffset).toBe(bytes.byteOffset);
    expect(sent.byteLength).toBe(bytes.byteLength);
  });

  it("encodes a message object with the method's own serializer", () => {
    const message = { delivery: toProtoDelivery(record.delivery), event: toProtoEvent(record.event) };
    expect(method.responseSerialize(message)).toEqual(DeliveryServiceService.createDelivery.responseSerialize(message));
  });

  it("turns a Uint8Array into a Buffer without copying", () => {
    const view = new Uint8Array(new ArrayBuffer(16), 4, 8);
    const buffer = asBuffer(view);
    expect(Buffer.isBuffer(buffer)).toBe(true);
    expect(buffer.buffer).toBe(view.buffer);
    expect([buffer.byteOffset, buffer.byteLength]).toEqual([4, 8]);
  });
});

describe("encoded (the shared protobuf writer)", () => {
  it("gives each caller its own bytes, equal to a fresh writer's", () => {
    const message = { delivery: toProtoDelivery(record.delivery), event: toProtoEvent(record.event) };
    const first = encoded((w) => WatchDeliveryResponse.encode(message, w));
    const second = encoded((w) => WatchDeliveryResponse.encode(message, w));
    expect(second).not.toBe(first);
    expect(second.buffer).not.toBe(first.buffer);
    expect(Buffer.from(first).equals(Buffer.from(WatchDeliveryResponse.encode(message).finish()))).toBe(true);
    expect(Buffer.from(second).equals(Buffer.from(first))).toBe(true);
  });

  it("leaves nothing of a failed encoding for the next one", () => {
    expect(() =>
      encoded((w) => {
        w.uint32(10).string("half written");
        throw new Error("mapping failed");
      }),
    ).toThrow("mapping failed");
    const message = { delivery: toProtoDelivery(record.delivery), event: undefined };
    expect(Buffer.from(encoded((w) => WatchDeliveryResponse.encode(message, w))).equals(Buffer.from(WatchDeliveryResponse.encode(message).finish()))).toBe(true);
  });
});
