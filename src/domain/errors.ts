import type { DeliveryCommand, DeliveryStatus } from "./delivery.js";

/**
 * Errors that carry a meaning, not a transport code, and the data a program
 * needs to act on them. Exactly one table in src/grpc/ (errorStatus.ts) turns
 * each kind into a status, a stable reason and details; a kind without a row
 * there is a compile error.
 */
export abstract class DomainError extends Error {
  abstract readonly kind: string;
}

/** Why an input was refused; each is a stable ErrorInfo reason. */
export type InvalidInputReason =
  | "INVALID_FIELD"
  | "PAGE_TOKEN_INVALID"
  | "PAGE_TOKEN_MISMATCH"
  | "RESUME_TOKEN_INVALID"
  | "RESUME_TOKEN_MISMATCH";

export interface FieldViolation {
  /** The request field at fault, as named in the proto (snake_case path). */
  readonly field: string;
  readonly description: string;
}

/** Input the caller got wrong, independent of any delivery's state: one violation per bad field. */
export class InvalidInput extends DomainError {
  readonly kind = "InvalidInput";
  readonly violations: readonly FieldViolation[];
  readonly reason: InvalidInputReason;
  /** `at`: the one field at fault, or every violation. */
  constructor(message: string, at?: string | readonly FieldViolation[], reason: InvalidInputReason = "INVALID_FIELD") {
    super(message);
    this.violations = at === undefined ? [] : typeof at === "string" ? [{ field: at, description: message }] : at;
    this.reason = reason;
  }

  /** Several refusals of one request as one error (the first one's reason). */
  static combine(errors: readonly InvalidInput[]): InvalidInput {
    const [first, ...rest] = errors;
    if (!first) throw new Error("InvalidInput.combine needs at least one error");
    if (rest.length === 0) return first;
    return new InvalidInput(errors.map((e) => e.message).join("; "), errors.flatMap((e) => e.violations), first.reason);
  }
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

/** Where a delivery stood when a command was refused. */
export interface DeliveryPosition {
  readonly deliveryId: string;
  readonly status: DeliveryStatus;
  readonly version: number;
}

export class InvalidTransition extends DomainError {
  readonly kind = "InvalidTransition";
  readonly command: DeliveryCommand["type"];
  readonly at: DeliveryPosition;
  readonly allowed: readonly DeliveryStatus[];
  constructor(command: DeliveryCommand["type"], verb: string, at: DeliveryPosition, allowed: readonly DeliveryStatus[]) {
    super(`cannot ${verb} a delivery in status ${at.status} (allowed from ${allowed.join(", ")})`);
    this.command = command;
    this.at = at;
    this.allowed = allowed;
  }
}

export class InsufficientBudget extends DomainError {
  readonly kind = "InsufficientBudget";
  readonly at: DeliveryPosition;
  readonly budgetMinor: number;
  readonly costMinor: number;
  constructor(at: DeliveryPosition, budgetMinor: number, costMinor: number) {
    super(`not enough budget: the products cost ${costMinor} and the budget is ${budgetMinor} (status ${at.status})`);
    this.at = at;
    this.budgetMinor = budgetMinor;
    this.costMinor = costMinor;
  }
}

export class InsufficientQuantity extends DomainError {
  readonly kind = "InsufficientQuantity";
  readonly at: DeliveryPosition;
  readonly available: number;
  readonly requested: number;
  constructor(at: DeliveryPosition, available: number, requested: number) {
    super(`not enough quantity: ${requested} requested and ${available} left to deliver (status ${at.status})`);
    this.at = at;
    this.available = available;
    this.requested = requested;
  }
}

/** A computed amount would pass 2^53-1, the largest integer the service keeps exact. */
export class AmountOutOfRange extends DomainError {
  readonly kind = "AmountOutOfRange";
  /** The command whose inputs produced it (they name the fields at fault). */
  readonly command: Exclude<DeliveryCommand["type"], "CreateDelivery" | "StartDelivery" | "CancelDelivery">;
  constructor(command: AmountOutOfRange["command"], what: string) {
    super(`${what} would exceed ${Number.MAX_SAFE_INTEGER}`);
    this.command = command;
  }
}

/**
 * The caller's expected_version is not the current one (expectedVersion set),
 * or contention outlasted the retries (expectedVersion undefined).
 */
export class VersionConflict extends DomainError {
  readonly kind = "VersionConflict";
  readonly deliveryId: string;
  readonly currentVersion: number;
  readonly expectedVersion: number | undefined;
  constructor(deliveryId: string, currentVersion: number, expectedVersion?: number) {
    super(
      expectedVersion === undefined
        ? `delivery ${deliveryId} is changing too fast (now at version ${currentVersion}); retry`
        : `delivery ${deliveryId} is at version ${currentVersion}, not the expected version ${expectedVersion}`,
    );
    this.deliveryId = deliveryId;
    this.currentVersion = currentVersion;
    this.expectedVersion = expectedVersion;
  }
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

/**
 * The store cannot be reached. A command that timed out may still have been
 * recorded: retry with the same request_id. The message is safe to show; the
 * cause (for logs) is not.
 */
export class StoreUnavailable extends DomainError {
  readonly kind = "StoreUnavailable";
  constructor(cause?: unknown) {
    super("the event store is unavailable; retry (with the same request_id for a command)", { cause });
  }
}

/** A change-feed position older than the feed keeps: the client starts over with a snapshot. */
export class ResumeTokenExpired extends DomainError {
  readonly kind = "ResumeTokenExpired";
  readonly retentionMs: number;
  constructor(retentionMs: number, message = "resume_token is older than the change feed keeps; watch again with include_snapshot") {
    super(message);
    this.retentionMs = retentionMs;
  }
}

/** Every domain error, for tables that must have a row per kind. */
export type AnyDomainError =
  | InvalidInput
  | DeliveryNotFound
  | VersionNotFound
  | DeliveryAlreadyExists
  | InvalidTransition
  | InsufficientBudget
  | InsufficientQuantity
  | AmountOutOfRange
  | VersionConflict
  | RequestIdReused
  | ResumeTokenExpired
  | StoreUnavailable;
