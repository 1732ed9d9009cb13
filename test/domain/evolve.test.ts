import { describe, expect, it } from "vitest";
import {
  type Delivery,
  type DeliveryEvent,
  type DeliveryEventData,
  type DeliveryState,
  evolve,
  initialState,
} from "../../src/domain/index.js";
import { cmd, existing, HISTORY_TO, recordsOf, stateAfter, STEP_MS, T0_MS } from "./deliveryScenario.js";

const ID = "delivery-7";
/** Well after any history's events, so a stale timestamp cannot pass for this one. */
const WHEN_MS = Date.UTC(2025, 5, 1, 12, 30);

function eventOn(state: DeliveryState, data: DeliveryEventData, occurredAtMs = WHEN_MS): DeliveryEvent {
  return { deliveryId: ID, version: state.version + 1, occurredAtMs, requestId: "req-x", actor: "", data };
}

/** given a history, when an event, then the whole state after it. */
interface Row {
  readonly name: string;
  readonly given: keyof typeof HISTORY_TO;
  readonly when: DeliveryEventData;
  /** The fields that change besides version and updatedAtMs. */
  readonly changes: Partial<Delivery>;
}

// Given states: READY budget 1000; ACTIVE budget 1000; COLLECTED budget 500, 5 at 100.
const ROWS: readonly Row[] = [
  { name: "started: READY -> ACTIVE", given: "READY", when: { type: "started" }, changes: { status: "ACTIVE" } },
  {
    name: "productsPickedUp: ACTIVE -> COLLECTED, pays price x quantity",
    given: "ACTIVE",
    when: { type: "productsPickedUp", purchasePriceMinor: 30, quantity: 7 },
    changes: { status: "COLLECTED", budgetMinor: 1000 - 210, purchasePriceMinor: 30, quantity: 7 },
  },
  {
    name: "productsDelivered (part): stays COLLECTED, earns sell price x quantity",
    given: "COLLECTED",
    when: { type: "productsDelivered", sellPriceMinor: 160, quantity: 2 },
    changes: { budgetMinor: 500 + 320, sellPriceMinor: 160, quantity: 3, deliveredQuantity: 2 },
  },
  {
    name: "productsDelivered (the rest): COLLECTED -> COMPLETED",
    given: "COLLECTED",
    when: { type: "productsDelivered", sellPriceMinor: 160, quantity: 5 },
    changes: { status: "COMPLETED", budgetMinor: 500 + 800, sellPriceMinor: 160, quantity: 0, deliveredQuantity: 5 },
  },
  { name: "budgetIncreased in READY", given: "READY", when: { type: "budgetIncreased", amountMinor: 11 }, changes: { budgetMinor: 1011 } },
  { name: "budgetIncreased in ACTIVE", given: "ACTIVE", when: { type: "budgetIncreased", amountMinor: 11 }, changes: { budgetMinor: 1011 } },
  { name: "budgetIncreased in COLLECTED", given: "COLLECTED", when: { type: "budgetIncreased", amountMinor: 11 }, changes: { budgetMinor: 511 } },
  { name: "cancelled: READY -> CANCELLED", given: "READY", when: { type: "cancelled", reason: "r" }, changes: { status: "CANCELLED" } },
  { name: "cancelled: ACTIVE -> CANCELLED", given: "ACTIVE", when: { type: "cancelled", reason: "r" }, changes: { status: "CANCELLED" } },
  { name: "cancelled: COLLECTED -> CANCELLED", given: "COLLECTED", when: { type: "cancelled", reason: "r" }, changes: { status: "CANCELLED" } },
];

describe("evolve", () => {
  it("created: NONE -> READY with the budget and notes, nothing bought or sold, version 1", () => {
    const event = eventOn(initialState, { type: "created", budgetMinor: 1234, notes: "gate code 42" });
    expect(evolve(initialState, event)).toEqual({
      id: ID,
      status: "READY",
      budgetMinor: 1234,
      notes: "gate code 42",
      purchasePriceMinor: 0,
      sellPriceMinor: 0,
      quantity: 0,
      deliveredQuantity: 0,
      version: 1,
      createdAtMs: WHEN_MS,
      updatedAtMs: WHEN_MS,
    });
  });

  it.each(ROWS)("$name", ({ given, when, changes }) => {
    const state = existing(stateAfter(ID, HISTORY_TO[given]));
    const event = eventOn(state, when);
    expect(evolve(state, event)).toEqual({
      ...state,
      ...changes,
      version: state.version + 1,
      updatedAtMs: WHEN_MS,
    });
  });

  it("takes the version and updatedAt from the event, createdAt from the creation event", () => {
    const records = recordsOf(ID, [cmd.create(1000), cmd.start(), cmd.pickup(100, 2), cmd.increaseBudget(5)]);
    records.forEach(({ event, delivery }, i) => {
      expect(delivery.version).toBe(i + 1);
      expect(delivery.version).toBe(event.version);
      expect(delivery.updatedAtMs).toBe(event.occurredAtMs);
      expect(delivery.updatedAtMs).toBe(T0_MS + i * STEP_MS);
      expect(delivery.createdAtMs).toBe(T0_MS);
      expect(delivery.id).toBe(ID);
    });
  });

  it("trusts the event's version and time even when they are not state + 1 and later (the log is the truth)", () => {
    const state = existing(stateAfter(ID, HISTORY_TO.ACTIVE));
    const event: DeliveryEvent = { deliveryId: ID, version: 42, occurredAtMs: T0_MS - 5, requestId: "", actor: "", data: { type: "budgetIncreased", amountMinor: 1 } };
    const after = evolve(state, event);
    expect(after.version).toBe(42);
    expect(after.updatedAtMs).toBe(T0_MS - 5);
    expect(after.createdAtMs).toBe(state.createdAtMs);
  });

  it("does not change the state it is given", () => {
    const state = stateAfter(ID, HISTORY_TO.COLLECTED);
    expect(Object.isFrozen(state)).toBe(true);
    const snapshot = structuredClone(state);
    evolve(state, eventOn(state, { type: "productsDelivered", sellPriceMinor: 1, quantity: 1 }));
    expect(state).toEqual(snapshot);
  });

  it.each<DeliveryEventData>([
    { type: "started" },
    { type: "productsPickedUp", purchasePriceMinor: 1, quantity: 1 },
    { type: "productsDelivered", sellPriceMinor: 1, quantity: 1 },
    { type: "budgetIncreased", amountMinor: 1 },
    { type: "cancelled", reason: "" },
  ])("throws on $type before creation: a log like that is corrupt", (data) => {
    expect(() => evolve(initialState, eventOn(initialState, data))).toThrow();
  });

  it("replays a whole history to the state decide() saw at each step", () => {
    const records = recordsOf(ID, [...HISTORY_TO.COMPLETED]);
    let state: DeliveryState = initialState;
    for (const record of records) {
      state = evolve(state, record.event);
      expect(state).toEqual(record.delivery);
    }
    expect(state).toMatchObject({ status: "COMPLETED", budgetMinor: 1250, quantity: 0, deliveredQuantity: 5, version: 4 });
  });
});
