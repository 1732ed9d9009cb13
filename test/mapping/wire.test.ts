/**
 * The hand-written wire codec writes the bytes the generated encoders write
 * for the same values, and reads what they write (and any valid encoding).
 */
import { describe, expect, it } from "vitest";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import type { Delivery, DeliveryEvent, DeliveryEventData, DeliveryStatus } from "../../src/domain/index.js";
import { StoredEvent } from "../../src/gen/delivery/storage/v2/records.js";
import { GetDeliveryResponse, WatchDeliveryResponse } from "../../src/gen/delivery/v1/delivery.js";
import { toProtoDelivery, toProtoEvent, toProtoKind } from "../../src/mapping/protoMapping.js";
import { decodeStoredEvent, encodeChange, encodeDeliveryIn, encodeStoredEvent } from "../../src/mapping/wire.js";

/** A small deterministic generator (tests repeat exactly). */
function random(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  return {
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    int: (max: number) => Math.floor(next() * max),
  };
}

const NUMBERS = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 1_767_225_600_123, 2 ** 53 - 1, -1, -128, -(2 ** 31), -(2 ** 53 - 1)];
const TEXTS = ["", "a", "ring twice", "é", "日本語のメモ", "🚚 at the door", "x".repeat(42), "é".repeat(43), "y".repeat(127), "z".repeat(128), "long ".repeat(60)];
const STATUSES: readonly DeliveryStatus[] = ["READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"];
const TIMES = [0, 1, 999, 1_000, 1_767_225_600_000, 1_767_225_600_001, 1_767_225_600_999, -1, -1_500];

function kindOf(g: ReturnType<typeof random>): DeliveryEventData {
  const n = () => g.pick(NUMBERS);
  switch (g.int(6)) {
    case 0:
      return { type: "created", budgetMinor: n(), notes: g.pick(TEXTS) };
    case 1:
      return { type: "started" };
    case 2:
      return { type: "productsPickedUp", purchasePriceMinor: n(), quantity: n() };
    case 3:
      return { type: "productsDelivered", sellPriceMinor: n(), quantity: n() };
    case 4:
      return { type: "budgetIncreased", amountMinor: n() };
    default:
      return { type: "cancelled", reason: g.pick(TEXTS) };
  }
}

function samples(count: number): { delivery: Delivery; event: DeliveryEvent }[] {
  const g = random(7);
  const n = () => g.pick(NUMBERS);
  return Array.from({ length: count }, (_, i) => {
    const id = g.pick(["d-1", "3f2a0c1e-5b7d-4c1a-9e2f-0a1b2c3d4e5f", "x".repeat(64), `id-${i}`]);
    const delivery: Delivery = {
      id,
      status: g.pick(STATUSES),
      budgetMinor: n(),
      notes: g.pick(TEXTS),
      purchasePriceMinor: n(),
      sellPriceMinor: n(),
      quantity: n(),
      deliveredQuantity: n(),
      version: Math.abs(n()),
      createdAtMs: g.pick(TIMES),
      updatedAtMs: g.pick(TIMES),
    };
    const event: DeliveryEvent = {
      deliveryId: id,
      version: Math.abs(n()),
      occurredAtMs: g.pick(TIMES),
      requestId: g.pick(TEXTS),
      actor: g.pick(["", "spiffe://example.org/dispatch", "ü".repeat(50)]),
      data: kindOf(g),
    };
    return { delivery, event };
  });
}

const generated = (encode: (w: BinaryWriter) => BinaryWriter) => Buffer.from(encode(new BinaryWriter()).finish());
const SAMPLES = samples(600);

describe("wire encoding", () => {
  it("writes a change as the generated WatchDeliveryResponse encoder does", () => {
    for (const { delivery, event } of SAMPLES) {
      const expected = generated((w) => WatchDeliveryResponse.encode({ delivery: toProtoDelivery(delivery), event: toProtoEvent(event) }, w));
      expect(encodeChange(delivery, event).equals(expected)).toBe(true);
    }
  });

  it("writes a delivery alone as the generated encoders do (GetDeliveryResponse, a snapshot)", () => {
    for (const { delivery } of SAMPLES) {
      expect(encodeDeliveryIn(1, delivery).equals(generated((w) => GetDeliveryResponse.encode({ delivery: toProtoDelivery(delivery) }, w)))).toBe(true);
      const snapshot = generated((w) => WatchDeliveryResponse.encode({ delivery: toProtoDelivery(delivery), event: undefined }, w));
      expect(encodeDeliveryIn(1, delivery).equals(snapshot)).toBe(true);
    }
  });

  it("writes an event as the generated StoredEvent encoder does", () => {
    for (const { event } of SAMPLES) {
      const expected = generated((w) =>
        StoredEvent.encode({ occurredAtMs: BigInt(event.occurredAtMs), actor: event.actor, requestId: event.requestId, kind: toProtoKind(event.data) }, w),
      );
      expect(encodeStoredEvent(event).equals(expected)).toBe(true);
    }
  });

  it("hands out bytes of their own: a later encoding changes none of them", () => {
    const [a, b] = SAMPLES;
    const first = encodeChange(a!.delivery, a!.event);
    const copy = Buffer.from(first);
    encodeChange(b!.delivery, b!.event);
    encodeStoredEvent(b!.event);
    expect(first.equals(copy)).toBe(true);
  });

  it("a failed encoding leaves nothing behind for the next one", () => {
    const [a] = SAMPLES;
    const bad = { ...a!.event, data: { type: "teleported" } } as unknown as DeliveryEvent;
    expect(() => encodeStoredEvent(bad)).toThrow(/unhandled event/);
    expect(() => encodeChange(a!.delivery, { ...a!.event, version: 1.5 })).toThrow(/safe integer/);
    expect(() => encodeChange({ ...a!.delivery, budgetMinor: 2 ** 53 }, a!.event)).toThrow(/safe integer/);
    expect(encodeStoredEvent(a!.event).equals(generated((w) =>
      StoredEvent.encode({ occurredAtMs: BigInt(a!.event.occurredAtMs), actor: a!.event.actor, requestId: a!.event.requestId, kind: toProtoKind(a!.event.data) }, w),
    ))).toBe(true);
  });
});

describe("wire decoding of StoredEvent", () => {
  it("reads back every event, as written by the generated encoder", () => {
    for (const { event } of SAMPLES) {
      const bytes = generated((w) =>
        StoredEvent.encode({ occurredAtMs: BigInt(event.occurredAtMs), actor: event.actor, requestId: event.requestId, kind: toProtoKind(event.data) }, w),
      );
      expect(decodeStoredEvent(bytes, event.deliveryId, event.version)).toEqual(event);
      expect(decodeStoredEvent(new Uint8Array(bytes), event.deliveryId, event.version)).toEqual(event);
    }
  });

  it("reads fields in any order, skips unknown ones, and lets the last of a repeated field win", () => {
    const w = new BinaryWriter();
    w.uint32((99 << 3) | 2).string("unknown, length-delimited");
    w.uint32((14 << 3) | 2).fork().uint32(8).int64(5n).join(); // budget_increased, replaced below
    w.uint32((3 << 3) | 2).string("req-9");
    w.uint32((98 << 3) | 0).uint64(12345678901234n);
    w.uint32((97 << 3) | 1).fixed64(1n);
    w.uint32((96 << 3) | 5).fixed32(1);
    w.uint32((1 << 3) | 0).int64(10n);
    w.uint32((13 << 3) | 2).fork().uint32((2 << 3) | 0).int64(3n).uint32((7 << 3) | 2).string("?").uint32((1 << 3) | 0).int64(400n).join();
    w.uint32((1 << 3) | 0).int64(1_767_225_600_000n);
    const event = decodeStoredEvent(Buffer.from(w.finish()), "d-1", 4);
    expect(event).toEqual({
      deliveryId: "d-1",
      version: 4,
      occurredAtMs: 1_767_225_600_000,
      requestId: "req-9",
      actor: "",
      data: { type: "productsDelivered", sellPriceMinor: 400, quantity: 3 },
    });
  });

  it("refuses what the generated decoder refuses, or could not give a safe integer for", () => {
    const [{ event }] = [SAMPLES.find((s) => s.event.data.type === "created" && s.event.requestId.length > 5)!];
    const bytes = encodeStoredEvent(event);
    for (let cut = 1; cut < bytes.length; cut++) {
      // Every strict prefix ends inside a field or lacks the kind (the kind is written last).
      expect(() => decodeStoredEvent(bytes.subarray(0, cut), "d", 1)).toThrow();
    }
    const unsafe = Buffer.from(new BinaryWriter().uint32(8).int64(2n ** 53n).uint32((11 << 3) | 2).uint32(0).finish());
    expect(() => decodeStoredEvent(unsafe, "d", 1)).toThrow(/safe integer/);
    const noKind = Buffer.from(new BinaryWriter().uint32(8).int64(5n).finish());
    expect(() => decodeStoredEvent(noKind, "d", 1)).toThrow(/no kind/);
  });
});
