/**
 * Messages shared by the load generator and the bare baseline server, shaped
 * like the real service's (same id length, notes, field values), so the bare
 * server answers with messages of about the size the real one sends.
 */
import { randomUUID } from "node:crypto";
import * as pb from "../../dist/gen/delivery/v1/delivery.js";

export const NOTES = "leave at the door, ring twice; fragile: glassware";
export const BUDGET = 1_000_000n;

/** A delivery id as the harness makes them: fixed length (43 characters). */
export const benchId = (tag = "d") => `${tag}-${randomUUID()}`.padEnd(43, "x").slice(0, 43);

export function sampleDelivery(id, version, status = pb.DeliveryStatus.DELIVERY_STATUS_ACTIVE) {
  const now = new Date();
  return {
    id,
    status,
    budget: BUDGET + BigInt(version) * 500n,
    notes: NOTES,
    purchasePrice: 0n,
    sellPrice: 0n,
    quantity: 0n,
    deliveredQuantity: 0n,
    version: BigInt(version),
    createdAt: now,
    updatedAt: now,
  };
}

/** requestId: as long as the fanout section's (`<43-character id>-<run>-<n>`). */
export function sampleEvent(id, version, requestId = `r-${randomUUID()}`.padEnd(47, "x")) {
  return {
    deliveryId: id,
    version: BigInt(version),
    occurredAt: new Date(),
    requestId,
    kind: { $case: "budgetIncreased", budgetIncreased: { amount: 500n } },
  };
}

/** A command response like the real one: the delivery after the event, and the event. */
export const sampleCommandResponse = (id, version) => ({ delivery: sampleDelivery(id, version), event: sampleEvent(id, version) });

/** Encoded WatchDeliveryResponse bytes (an update) of the same shape the real server pushes. */
export function encodeUpdate(id, version) {
  return Buffer.from(pb.WatchDeliveryResponse.encode(sampleCommandResponse(id, version)).finish());
}

export function encodeSnapshot(id, version) {
  return Buffer.from(pb.WatchDeliveryResponse.encode({ delivery: sampleDelivery(id, version), event: undefined }).finish());
}

/** Requests of one delivery's life, in order: create, start, increase budget, pick up, deliver (completes it). */
export function lifecycleRequests(id, requestPrefix) {
  return [
    ["createDelivery", { deliveryId: id, budget: BUDGET, notes: NOTES, requestId: `${requestPrefix}-c` }],
    ["startDelivery", { deliveryId: id, expectedVersion: undefined, requestId: `${requestPrefix}-s` }],
    ["increaseBudget", { deliveryId: id, expectedVersion: undefined, requestId: `${requestPrefix}-b`, amount: 500n }],
    ["pickupProducts", { deliveryId: id, expectedVersion: undefined, requestId: `${requestPrefix}-p`, purchasePrice: 300n, quantity: 10n }],
    ["deliverProducts", { deliveryId: id, expectedVersion: undefined, requestId: `${requestPrefix}-d`, sellPrice: 450n, quantity: 10n }],
  ];
}
