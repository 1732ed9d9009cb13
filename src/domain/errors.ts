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
  constructor(readonly deliveryId: string) {
    super(`delivery ${deliveryId} does not exist`);
  }
}

export class VersionNotFound extends DomainError {
  readonly kind = "VersionNotFound";
  constructor(
    readonly deliveryId: string,
    readonly version: number,
    readonly currentVersion: number,
  ) {
    super(`delivery ${deliveryId} has no version ${version} (its current version is ${currentVersion})`);
  }
}

export class DeliveryAlreadyExists extends DomainError {
  readonly kind = "DeliveryAlreadyExists";
  constructor(readonly deliveryId: string) {
    super(`delivery ${deliveryId} already exists`);
  }
}

export class InvalidTransition extends DomainError {
  readonly kind = "InvalidTransition";
  constructor(
    readonly command: string,
    readonly status: DeliveryStatus,
    allowed: readonly DeliveryStatus[],
  ) {
    super(`cannot ${command} a delivery in status ${status} (allowed from ${allowed.join(", ")})`);
  }
}

export class InsufficientBudget extends DomainError {
  readonly kind = "InsufficientBudget";
  constructor(
    readonly status: DeliveryStatus,
    readonly budgetMinor: number,
    readonly costMinor: number,
  ) {
    super(`not enough budget: the products cost ${costMinor} and the budget is ${budgetMinor} (status ${status})`);
  }
}

export class InsufficientQuantity extends DomainError {
  readonly kind = "InsufficientQuantity";
  constructor(
    readonly status: DeliveryStatus,
    readonly available: number,
    readonly requested: number,
  ) {
    super(`not enough quantity: ${requested} requested and ${available} left to deliver (status ${status})`);
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
  constructor(
    readonly deliveryId: string,
    readonly requestId: string,
  ) {
    super(`request_id ${requestId} was already used on delivery ${deliveryId} for a different command`);
  }
}

/** The store cannot be reached; nothing was recorded by this call (a retry is safe). */
export class StoreUnavailable extends DomainError {
  readonly kind = "StoreUnavailable";
}
