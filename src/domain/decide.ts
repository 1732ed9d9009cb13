import type { DeliveryCommand, DeliveryEventData, DeliveryState, DeliveryStatus } from "./delivery.js";
import {
  AmountOutOfRange,
  DeliveryAlreadyExists,
  DeliveryNotFound,
  type DomainError,
  InsufficientBudget,
  InsufficientQuantity,
  InvalidTransition,
} from "./errors.js";

const ALLOWED_FROM: { readonly [K in Exclude<DeliveryCommand["type"], "CreateDelivery">]: readonly DeliveryStatus[] } = {
  StartDelivery: ["READY"],
  PickupProducts: ["ACTIVE"],
  DeliverProducts: ["COLLECTED"],
  IncreaseBudget: ["READY", "ACTIVE", "COLLECTED"],
  CancelDelivery: ["READY", "ACTIVE", "COLLECTED"],
};

const VERBS: { readonly [K in DeliveryCommand["type"]]: string } = {
  CreateDelivery: "create",
  StartDelivery: "start",
  PickupProducts: "pick up products for",
  DeliverProducts: "deliver products for",
  IncreaseBudget: "increase the budget of",
  CancelDelivery: "cancel",
};

/** a × b, or an error when the exact product would pass 2^53-1 (floating point rounds up past it, never below). */
function safeProduct(a: number, b: number, command: AmountOutOfRange["command"], what: string): number | AmountOutOfRange {
  const product = a * b;
  return Number.isSafeInteger(product) ? product : new AmountOutOfRange(command, what);
}

function safeSum(a: number, b: number, command: AmountOutOfRange["command"], what: string): number | AmountOutOfRange {
  const sum = a + b;
  return Number.isSafeInteger(sum) ? sum : new AmountOutOfRange(command, what);
}

/**
 * Decides what a command means for a delivery in a given state: the one event
 * to record, or why it is rejected. Business rules live here and nowhere else.
 */
export function decide(deliveryId: string, command: DeliveryCommand, state: DeliveryState): DeliveryEventData | DomainError {
  if (command.type === "CreateDelivery") {
    if (state.status !== "NONE") return new DeliveryAlreadyExists(deliveryId);
    return { type: "created", budgetMinor: command.budgetMinor, notes: command.notes };
  }
  if (state.status === "NONE") return new DeliveryNotFound(deliveryId);
  const allowed = ALLOWED_FROM[command.type];
  const at = { deliveryId, status: state.status, version: state.version };
  if (!allowed.includes(state.status)) return new InvalidTransition(command.type, VERBS[command.type], at, allowed);

  switch (command.type) {
    case "StartDelivery":
      return { type: "started" };
    case "PickupProducts": {
      const cost = safeProduct(command.purchasePriceMinor, command.quantity, command.type, "purchase_price × quantity");
      if (cost instanceof AmountOutOfRange) return cost;
      if (cost > state.budgetMinor) return new InsufficientBudget(at, state.budgetMinor, cost);
      return { type: "productsPickedUp", purchasePriceMinor: command.purchasePriceMinor, quantity: command.quantity };
    }
    case "DeliverProducts": {
      if (command.quantity > state.quantity) return new InsufficientQuantity(at, state.quantity, command.quantity);
      const revenue = safeProduct(command.sellPriceMinor, command.quantity, command.type, "sell_price × quantity");
      if (revenue instanceof AmountOutOfRange) return revenue;
      const budget = safeSum(state.budgetMinor, revenue, command.type, "the budget after the sale");
      if (budget instanceof AmountOutOfRange) return budget;
      return { type: "productsDelivered", sellPriceMinor: command.sellPriceMinor, quantity: command.quantity };
    }
    case "IncreaseBudget": {
      const budget = safeSum(state.budgetMinor, command.amountMinor, command.type, "the increased budget");
      if (budget instanceof AmountOutOfRange) return budget;
      return { type: "budgetIncreased", amountMinor: command.amountMinor };
    }
    case "CancelDelivery":
      return { type: "cancelled", reason: command.reason };
    default: {
      const unhandled: never = command;
      throw new Error(`unhandled command ${JSON.stringify(unhandled)}`);
    }
  }
}
