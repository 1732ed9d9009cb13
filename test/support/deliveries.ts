/**
 * Shortcuts for the DeliveryService calls tests make over and over, on top of
 * `call()` from ./testServer.ts (which fills in proto defaults and rejects
 * with the ServiceError).
 *
 *   const id = await createDelivery(client);                 // budget 1000
 *   await createDelivery(client, { deliveryId, budget: 100n });
 *   const version = await increaseBudget(client, id);
 */
import { randomUUID } from "node:crypto";
import { type ServiceError, status } from "@grpc/grpc-js";
import { expect } from "vitest";
import {
  type CreateDeliveryRequest,
  type DeliveryServiceClient,
  DeliveryStatus,
  type GetDeliveryResponse,
} from "../../src/gen/delivery/v1/delivery.js";
import { call } from "./testServer.js";

/** CreateDelivery with `request` as given (budget 1000 unless given, proto defaults for the rest); the new delivery's id. */
export async function createDelivery(client: DeliveryServiceClient, request: Partial<CreateDeliveryRequest> = {}): Promise<string> {
  const { delivery } = await call(client, "createDelivery", { budget: 1_000n, ...request });
  if (!delivery) throw new Error("CreateDelivery answered without a delivery");
  return delivery.id;
}

/** GetDelivery of the current version of `deliveryId`. */
export function getDelivery(client: DeliveryServiceClient, deliveryId: string, deadlineMs?: number): Promise<GetDeliveryResponse> {
  return call(client, "getDelivery", { deliveryId }, { deadlineMs });
}

/**
 * IncreaseBudget by `amount`; the version the command produced. Contention
 * that outlasts the service's own retries (ABORTED) is retried here with the
 * same request_id, as a client would: loaded 2-core machines make it possible.
 */
export async function increaseBudget(client: DeliveryServiceClient, deliveryId: string, amount = 1n): Promise<number> {
  const requestId = randomUUID();
  for (let attempt = 1; ; attempt++) {
    try {
      const { event } = await call(client, "increaseBudget", { deliveryId, amount, requestId });
      return Number(event?.version);
    } catch (error) {
      if (!isServiceError(error) || error.code !== status.ABORTED || attempt >= 5) throw error;
    }
  }
}

/** CancelDelivery, asserting the delivery ends CANCELLED; the version of the cancellation. */
export async function cancelDelivery(client: DeliveryServiceClient, deliveryId: string): Promise<number> {
  const { event, delivery } = await call(client, "cancelDelivery", { deliveryId, reason: "test over", requestId: randomUUID() });
  expect(delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_CANCELLED);
  return Number(event?.version);
}

/** Whether `error` is a gRPC call's error (has a status code and details). */
export function isServiceError(error: unknown): error is ServiceError {
  return typeof error === "object" && error !== null && "code" in error && "details" in error;
}
