/**
 * The delivery aggregate: states, commands and events. Pure data, no I/O.
 *
 * Amounts are integer minor units kept as safe integers (<= 2^53-1); the edge
 * rejects anything larger and decide() rejects any total that would pass it.
 * Times are epoch milliseconds handed in with the command.
 */

export type DeliveryStatus = "READY" | "ACTIVE" | "COLLECTED" | "COMPLETED" | "CANCELLED";

export const TERMINAL_STATUSES: readonly DeliveryStatus[] = ["COMPLETED", "CANCELLED"];

interface DeliveryFields {
  readonly id: string;
  readonly budgetMinor: number;
  readonly notes: string;
  readonly purchasePriceMinor: number;
  readonly sellPriceMinor: number;
  /** Products collected and not yet delivered. */
  readonly quantity: number;
  readonly deliveredQuantity: number;
  readonly version: number;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
}

export interface ReadyDelivery extends DeliveryFields {
  readonly status: "READY";
}
export interface ActiveDelivery extends DeliveryFields {
  readonly status: "ACTIVE";
}
export interface CollectedDelivery extends DeliveryFields {
  readonly status: "COLLECTED";
}
export interface CompletedDelivery extends DeliveryFields {
  readonly status: "COMPLETED";
}
export interface CancelledDelivery extends DeliveryFields {
  readonly status: "CANCELLED";
}

export type Delivery = ReadyDelivery | ActiveDelivery | CollectedDelivery | CompletedDelivery | CancelledDelivery;

/** Before the first event. */
export interface NoDelivery {
  readonly status: "NONE";
  readonly version: 0;
}

export type DeliveryState = NoDelivery | Delivery;

export const initialState: NoDelivery = { status: "NONE", version: 0 };

export type DeliveryCommand =
  | { readonly type: "CreateDelivery"; readonly budgetMinor: number; readonly notes: string }
  | { readonly type: "StartDelivery" }
  | { readonly type: "PickupProducts"; readonly purchasePriceMinor: number; readonly quantity: number }
  | { readonly type: "DeliverProducts"; readonly sellPriceMinor: number; readonly quantity: number }
  | { readonly type: "IncreaseBudget"; readonly amountMinor: number }
  | { readonly type: "CancelDelivery"; readonly reason: string };

/** What happened; the case names match the proto's `oneof kind`. */
export type DeliveryEventData =
  | { readonly type: "created"; readonly budgetMinor: number; readonly notes: string }
  | { readonly type: "started" }
  | { readonly type: "productsPickedUp"; readonly purchasePriceMinor: number; readonly quantity: number }
  | { readonly type: "productsDelivered"; readonly sellPriceMinor: number; readonly quantity: number }
  | { readonly type: "budgetIncreased"; readonly amountMinor: number }
  | { readonly type: "cancelled"; readonly reason: string };

/** An event as recorded in a delivery's log. */
export interface DeliveryEvent {
  readonly deliveryId: string;
  readonly version: number;
  readonly occurredAtMs: number;
  readonly requestId: string;
  /** The principal that recorded it; "" when authentication is off. */
  readonly actor: string;
  readonly data: DeliveryEventData;
}

/** An event together with the state right after it: one log entry, one published update. */
export interface RecordedEvent {
  readonly event: DeliveryEvent;
  readonly delivery: Delivery;
}

export function isTerminal(status: DeliveryState["status"]): boolean {
  return status === "COMPLETED" || status === "CANCELLED";
}
