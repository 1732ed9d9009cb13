import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { DomainError } from "../domain/index.js";
import type { Logger } from "../logger.js";

const CODES: { readonly [kind: string]: status } = {
  InvalidInput: status.INVALID_ARGUMENT,
  AmountOutOfRange: status.INVALID_ARGUMENT,
  RequestIdReused: status.INVALID_ARGUMENT,
  DeliveryNotFound: status.NOT_FOUND,
  VersionNotFound: status.NOT_FOUND,
  DeliveryAlreadyExists: status.ALREADY_EXISTS,
  InvalidTransition: status.FAILED_PRECONDITION,
  InsufficientBudget: status.FAILED_PRECONDITION,
  InsufficientQuantity: status.FAILED_PRECONDITION,
  VersionConflict: status.ABORTED,
  StoreUnavailable: status.UNAVAILABLE,
};

/**
 * The one place where errors become gRPC statuses. Domain errors keep their
 * message; anything else is INTERNAL with a generic message, logged with its
 * stack, and nothing of it reaches the client.
 */
export function toServiceError(error: unknown, logger: Logger): Partial<ServiceError> {
  if (error instanceof DomainError) {
    const code = CODES[error.kind];
    if (code !== undefined) {
      if (code === status.UNAVAILABLE) logger.warn({ err: error }, "store unavailable");
      return { code, details: error.message, metadata: new Metadata() };
    }
  }
  logger.error({ err: error }, "unexpected error");
  return { code: status.INTERNAL, details: "internal error", metadata: new Metadata() };
}
