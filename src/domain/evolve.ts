import type { Delivery, DeliveryEvent, DeliveryState } from "./delivery.js";

/**
 * The state after an event. Total over the events decide() can produce for a
 * state; an event that cannot apply means a corrupt log, so it throws.
 */
export function evolve(state: DeliveryState, event: DeliveryEvent): Delivery {
  const { data } = event;
  const touched = { version: event.version, updatedAtMs: event.occurredAtMs };
  if (data.type === "created") {
    return {
      id: event.deliveryId,
      status: "READY",
      budgetMinor: data.budgetMinor,
      notes: data.notes,
      purchasePriceMinor: 0,
      sellPriceMinor: 0,
      quantity: 0,
      deliveredQuantity: 0,
      createdAtMs: event.occurredAtMs,
      ...touched,
    };
  }
  if (state.status === "NONE") throw new Error(`event ${data.type} at version ${event.version} before creation`);
  switch (data.type) {
    case "started":
      return { ...state, ...touched, status: "ACTIVE" };
    case "productsPickedUp":
      return {
        ...state,
        ...touched,
        status: "COLLECTED",
        budgetMinor: state.budgetMinor - data.purchasePriceMinor * data.quantity,
        purchasePriceMinor: data.purchasePriceMinor,
        quantity: data.quantity,
      };
    case "productsDelivered": {
      const quantity = state.quantity - data.quantity;
      return {
        ...state,
        ...touched,
        status: quantity === 0 ? "COMPLETED" : "COLLECTED",
        budgetMinor: state.budgetMinor + data.sellPriceMinor * data.quantity,
        sellPriceMinor: data.sellPriceMinor,
        quantity,
        deliveredQuantity: state.deliveredQuantity + data.quantity,
      };
    }
    case "budgetIncreased":
      return { ...state, ...touched, budgetMinor: state.budgetMinor + data.amountMinor };
    case "cancelled":
      return { ...state, ...touched, status: "CANCELLED" };
    default: {
      const unhandled: never = data;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
}
