import type { DeliveryStatus } from "./delivery.js";

/**
 * Errors that carry a meaning, not a transport code. Exactly one function in
 * src/grpc/ turns them into gRPC status codes.
 */
export abstract class DomainError extends Error {
  abstract readonly kind: string;
}

/** Input the caller got wrong, independent of any delivery's state. */
export class InvalidInput extends DomainError {
  readonly kind = "InvalidInput";
}

export class DeliveryNotFound extends DomainError {
  readonly kind = "DeliveryNotFound";
  readonly deliveryId: string;
  constructor(deliveryId: string) {
    super(`delivery ${deliveryId} does not exist`);
    this.deliveryId = deliveryId;
  }
}

export class VersionNotFound extends DomainError {
  readonly kind = "VersionNotFound";
  readonly deliveryId: string;
  readonly version: number;
  readonly currentVersion: number;
  constructor(deliveryId: string, version: number, currentVersion: number) {
    super(`delivery ${deliveryId} has no version ${version} (its current version is ${currentVersion})`);
    this.deliveryId = deliveryId;
    this.version = version;
    this.currentVersion = currentVersion;
  }
}

export class DeliveryAlreadyExists extends DomainError {
  readonly kind = "DeliveryAlreadyExists";
  readonly deliveryId: string;
  constructor(deliveryId: string) {
    super(`delivery ${deliveryId} already exists`);
    this.deliveryId = deliveryId;
  }
}

export class InvalidTransition extends DomainError {
  readonly kind = "InvalidTransition";
  readonly command: string;
  readonly status: DeliveryStatus;
  constructor(command: string, status: DeliveryStatus, allowed: readonly DeliveryStatus[]) {
    super(`cannot ${command} a delivery in status ${status} (allowed from ${allowed.join(", ")})`);
    this.command = command;
    this.status = status;
  }
}

export class InsufficientBudget extends DomainError {
  readonly kind = "InsufficientBudget";
  readonly status: DeliveryStatus;
  readonly budgetMinor: number;
  readonly costMinor: number;
  constructor(status: DeliveryStatus, budgetMinor: number, costMinor: number) {
    super(`not enough budget: the products cost ${costMinor} and the budget is ${budgetMinor} (status ${status})`);
    this.status = status;
    this.budgetMinor = budgetMinor;
    this.costMinor = costMinor;
  }
}

export class InsufficientQuantity extends DomainError {
  readonly kind = "InsufficientQuantity";
  readonly status: DeliveryStatus;
  readonly available: number;
  readonly requested: number;
  constructor(status: DeliveryStatus, available: number, requested: number) {
    super(`not enough quantity: ${requested} requested and ${available} left to deliver (status ${status})`);
    this.status = status;
    this.available = available;
    this.requested = requested;
  }
}

/** A computed amount would pass 2^53-1, the largest integer the service keeps exact. */
export class AmountOutOfRange extends DomainError {
  readonly kind = "AmountOutOfRange";
  constructor(what: string) {
    super(`${what} would exceed ${Number.MAX_SAFE_INTEGER}`);
  }
}

/** The caller's expected_version is not the current one, or contention outlasted the retries. */
export class VersionConflict extends DomainError {
  readonly kind = "VersionConflict";
}

/** A request_id already used on this delivery for a different command. */
export class RequestIdReused extends DomainError {
  readonly kind = "RequestIdReused";
  readonly deliveryId: string;
  readonly requestId: string;
  constructor(deliveryId: string, requestId: string) {
    super(`request_id ${requestId} was already used on delivery ${deliveryId} for a different command`);
    this.deliveryId = deliveryId;
    this.requestId = requestId;
  }
}

/** The store cannot be reached. A command that timed out may still have been recorded: retry with the same request_id. */
export class StoreUnavailable extends DomainError {
  readonly kind = "StoreUnavailable";
}
