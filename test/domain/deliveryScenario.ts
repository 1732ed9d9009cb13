/**
 * Test helpers for the delivery decider: commands by name, and histories
 * folded through the real decide() and evolve(), so every state and record a
 * test uses is one the service could actually produce.
 */
import {
  decide,
  type Delivery,
  type DeliveryCommand,
  type DeliveryEvent,
  type DeliveryEventData,
  type DeliveryState,
  DomainError,
  evolve,
  initialState,
  type RecordedEvent,
} from "../../src/domain/index.js";

export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** 2025-01-01T00:00:00Z; event n of a history happens STEP_MS after event n-1. */
export const T0_MS = Date.UTC(2025, 0, 1);
export const STEP_MS = 60_000;

export const cmd = {
  create: (budgetMinor: number, notes = ""): DeliveryCommand => ({ type: "CreateDelivery", budgetMinor, notes }),
  start: (): DeliveryCommand => ({ type: "StartDelivery" }),
  pickup: (purchasePriceMinor: number, quantity: number): DeliveryCommand => ({
    type: "PickupProducts",
    purchasePriceMinor,
    quantity,
  }),
  deliver: (sellPriceMinor: number, quantity: number): DeliveryCommand => ({ type: "DeliverProducts", sellPriceMinor, quantity }),
  increaseBudget: (amountMinor: number): DeliveryCommand => ({ type: "IncreaseBudget", amountMinor }),
  cancel: (reason = ""): DeliveryCommand => ({ type: "CancelDelivery", reason }),
};

export type StateName = DeliveryState["status"];

export const STATE_NAMES: readonly StateName[] = ["NONE", "READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"];

/**
 * The shortest history that reaches each state. Budget 1000, then 5 products
 * at 100 (budget 500), delivered at 150 each (budget 1250).
 */
export const HISTORY_TO: { readonly [S in StateName]: readonly DeliveryCommand[] } = {
  NONE: [],
  READY: [cmd.create(1000, "leave at the door")],
  ACTIVE: [cmd.create(1000, "leave at the door"), cmd.start()],
  COLLECTED: [cmd.create(1000, "leave at the door"), cmd.start(), cmd.pickup(100, 5)],
  COMPLETED: [cmd.create(1000, "leave at the door"), cmd.start(), cmd.pickup(100, 5), cmd.deliver(150, 5)],
  CANCELLED: [cmd.create(1000, "leave at the door"), cmd.cancel("customer changed their mind")],
};

/** An event at a version, as the application would stamp it. */
export function eventAt(deliveryId: string, version: number, data: DeliveryEventData, requestId = "", startMs = T0_MS): DeliveryEvent {
  return { deliveryId, version, occurredAtMs: startMs + (version - 1) * STEP_MS, requestId, actor: "", data };
}

/** Decides a command and records it on top of a state; throws if the command is rejected. */
export function recordOn(deliveryId: string, state: DeliveryState, command: DeliveryCommand, requestId = "", startMs = T0_MS): RecordedEvent {
  const decided = decide(deliveryId, command, state);
  if (decided instanceof DomainError) throw new Error(`test history rejected ${command.type}: ${decided.message}`);
  const event = eventAt(deliveryId, state.version + 1, decided, requestId, startMs);
  return { event, delivery: evolve(state, event) };
}

/** The records a history of commands produces, from the initial state; the first at startMs, then one a STEP_MS. */
export function recordsOf(deliveryId: string, commands: readonly DeliveryCommand[], startMs = T0_MS): RecordedEvent[] {
  const records: RecordedEvent[] = [];
  let state: DeliveryState = initialState;
  for (const command of commands) {
    const record = recordOn(deliveryId, state, command, "", startMs);
    records.push(record);
    state = record.delivery;
  }
  return records;
}

/** The state after a history, deeply frozen so a decide/evolve that mutates it fails loudly. */
export function stateAfter(deliveryId: string, commands: readonly DeliveryCommand[]): DeliveryState {
  return deepFreeze(recordsOf(deliveryId, commands).at(-1)?.delivery ?? initialState);
}

/** Narrows a state to an existing delivery, for assertions on its fields. */
export function existing(state: DeliveryState): Delivery {
  if (state.status === "NONE") throw new Error("expected an existing delivery");
  return state;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
