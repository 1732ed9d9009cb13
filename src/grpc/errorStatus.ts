/**
 * The one place where errors become gRPC statuses (AIP-193): a code, the
 * message, and google.rpc.Status details in `grpc-status-details-bin` —
 * ErrorInfo always (domain delivery.v1, a stable reason, metadata), plus
 * BadRequest, PreconditionFailure, ResourceInfo or RetryInfo where they apply.
 *
 * STATUS_OF has one row per error kind, checked by the compiler: a new kind
 * without a row does not build. Anything that is not a known error becomes
 * INTERNAL with a generic message, logged with its stack; nothing of it
 * reaches the client.
 */
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { type AnyDomainError, DomainError } from "../domain/index.js";
import type { Any } from "../gen/google/protobuf/any.js";
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  ResourceInfo,
  RetryInfo,
} from "../gen/google/rpc/error_details.js";
import { Status } from "../gen/google/rpc/status.js";
import type { Logger } from "../logger.js";
import { type AnyServiceCondition, ServiceCondition } from "./conditions.js";

export const ERROR_DOMAIN = "delivery.v1";
const DETAILS_KEY = "grpc-status-details-bin";
const DELIVERY_TYPE = "delivery.v1.Delivery";

/** How long a client should wait before retrying, per cause. */
export const RETRY_DELAY_MS = {
  storeUnavailable: 1_000,
  contention: 50,
  tooManyWatchers: 5_000,
  shuttingDown: 0,
} as const;

export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

export interface PreconditionViolation {
  readonly type: string;
  readonly subject: string;
  readonly description: string;
}

/** What one error says on the wire, before encoding. */
export interface ErrorSpec {
  readonly code: status;
  /** Stable UPPER_SNAKE cause; never changes meaning once released. */
  readonly reason: string;
  readonly metadata?: { readonly [key: string]: string | number | undefined };
  readonly fieldViolations?: readonly FieldViolation[];
  readonly preconditionViolations?: readonly PreconditionViolation[];
  readonly resourceName?: string;
  readonly retryDelayMs?: number;
}

type KnownError = AnyDomainError | AnyServiceCondition;
type Row<K extends KnownError["kind"]> = (error: Extract<KnownError, { kind: K }>) => ErrorSpec;

const subject = (deliveryId: string) => `deliveries/${deliveryId}`;

/** The fields whose values made a computed amount overflow, per command. */
const AMOUNT_FIELDS = {
  PickupProducts: ["purchase_price", "quantity"],
  DeliverProducts: ["sell_price", "quantity"],
  IncreaseBudget: ["amount"],
} as const;

const STATUS_OF: { readonly [K in KnownError["kind"]]: Row<K> } = {
  InvalidInput: (e) => ({
    code: status.INVALID_ARGUMENT,
    reason: e.reason,
    metadata: { fields: e.violations.map((v) => v.field).join(",") || undefined },
    fieldViolations: e.violations,
  }),
  AmountOutOfRange: (e) => ({
    code: status.INVALID_ARGUMENT,
    reason: "AMOUNT_OUT_OF_RANGE",
    metadata: { limit: Number.MAX_SAFE_INTEGER },
    fieldViolations: AMOUNT_FIELDS[e.command].map((field) => ({ field, description: e.message })),
  }),
  RequestIdReused: (e) => ({
    code: status.INVALID_ARGUMENT,
    reason: "REQUEST_ID_REUSED",
    metadata: { deliveryId: e.deliveryId, requestId: e.requestId },
    fieldViolations: [{ field: "request_id", description: e.message }],
  }),
  DeliveryNotFound: (e) => ({
    code: status.NOT_FOUND,
    reason: "DELIVERY_NOT_FOUND",
    metadata: { deliveryId: e.deliveryId },
    resourceName: subject(e.deliveryId),
  }),
  VersionNotFound: (e) => ({
    code: status.NOT_FOUND,
    reason: "VERSION_NOT_FOUND",
    metadata: { deliveryId: e.deliveryId, version: e.version, currentVersion: e.currentVersion },
    resourceName: subject(e.deliveryId),
  }),
  DeliveryAlreadyExists: (e) => ({
    code: status.ALREADY_EXISTS,
    reason: "DELIVERY_EXISTS",
    metadata: { deliveryId: e.deliveryId },
    resourceName: subject(e.deliveryId),
  }),
  InvalidTransition: (e) => ({
    code: status.FAILED_PRECONDITION,
    reason: "INVALID_TRANSITION",
    metadata: {
      deliveryId: e.at.deliveryId,
      status: e.at.status,
      currentVersion: e.at.version,
      allowedStatuses: e.allowed.join(","),
    },
    preconditionViolations: [{ type: "STATUS", subject: subject(e.at.deliveryId), description: e.message }],
  }),
  InsufficientBudget: (e) => ({
    code: status.FAILED_PRECONDITION,
    reason: "INSUFFICIENT_BUDGET",
    metadata: {
      deliveryId: e.at.deliveryId,
      status: e.at.status,
      currentVersion: e.at.version,
      budget: e.budgetMinor,
      required: e.costMinor,
    },
    preconditionViolations: [{ type: "BUDGET", subject: subject(e.at.deliveryId), description: e.message }],
  }),
  InsufficientQuantity: (e) => ({
    code: status.FAILED_PRECONDITION,
    reason: "INSUFFICIENT_QUANTITY",
    metadata: {
      deliveryId: e.at.deliveryId,
      status: e.at.status,
      currentVersion: e.at.version,
      quantity: e.available,
      requested: e.requested,
    },
    preconditionViolations: [{ type: "QUANTITY", subject: subject(e.at.deliveryId), description: e.message }],
  }),
  VersionConflict: (e) =>
    e.expectedVersion === undefined
      ? {
          code: status.ABORTED,
          reason: "CONTENTION",
          metadata: { deliveryId: e.deliveryId, currentVersion: e.currentVersion },
          preconditionViolations: [{ type: "VERSION", subject: subject(e.deliveryId), description: e.message }],
          retryDelayMs: RETRY_DELAY_MS.contention,
        }
      : {
          code: status.ABORTED,
          reason: "VERSION_MISMATCH",
          metadata: { deliveryId: e.deliveryId, currentVersion: e.currentVersion, expectedVersion: e.expectedVersion },
          preconditionViolations: [{ type: "VERSION", subject: subject(e.deliveryId), description: e.message }],
        },
  StoreUnavailable: () => ({
    code: status.UNAVAILABLE,
    reason: "STORE_UNAVAILABLE",
    retryDelayMs: RETRY_DELAY_MS.storeUnavailable,
  }),
  TooManyWatchers: (e) => ({
    code: status.RESOURCE_EXHAUSTED,
    reason: "TOO_MANY_WATCHERS",
    metadata: { maxWatchers: e.maxWatchers },
    retryDelayMs: RETRY_DELAY_MS.tooManyWatchers,
  }),
  ResumeTokenExpired: (e) => ({
    code: status.OUT_OF_RANGE,
    reason: "RESUME_TOKEN_EXPIRED",
    metadata: { retentionMs: e.retentionMs },
    fieldViolations: [{ field: "resume_token", description: e.message }],
  }),
  ShuttingDown: () => ({
    code: status.UNAVAILABLE,
    reason: "SHUTTING_DOWN",
    retryDelayMs: RETRY_DELAY_MS.shuttingDown,
  }),
  UnknownHealthService: (e) => ({
    code: status.NOT_FOUND,
    reason: "SERVICE_NOT_FOUND",
    metadata: { service: e.service },
  }),
  MalformedRequest: (e) => ({
    code: status.INVALID_ARGUMENT,
    reason: "MALFORMED_REQUEST",
    metadata: { method: e.method },
  }),
  Unauthenticated: (e) => ({
    code: status.UNAUTHENTICATED,
    reason: e.reason,
    metadata: { method: e.method },
  }),
  PermissionDenied: (e) => ({
    code: status.PERMISSION_DENIED,
    reason: e.reason,
    metadata: e.metadata,
  }),
  // The reason a client already handles for an expired token: get a fresh one, call again.
  StreamCredentialsExpired: (e) => ({
    code: status.UNAUTHENTICATED,
    reason: "TOKEN_EXPIRED",
    metadata: { method: e.method, limit: e.limit },
  }),
};

const INTERNAL: ErrorSpec = { code: status.INTERNAL, reason: "INTERNAL" };

function isKnown(error: unknown): error is KnownError {
  return (error instanceof DomainError || error instanceof ServiceCondition) && error.kind in STATUS_OF;
}

/** The spec of an error and the message that goes with it. */
export function specOf(error: unknown): { spec: ErrorSpec; message: string } {
  if (!isKnown(error)) return { spec: INTERNAL, message: "internal error" };
  const row = STATUS_OF[error.kind] as (e: KnownError) => ErrorSpec;
  return { spec: row(error), message: error.message };
}

function pack(typeName: string, value: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) };
}

function durationOf(ms: number) {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 };
}

/** google.rpc.Status for a spec, encoded. */
export function encodeStatus(spec: ErrorSpec, message: string): Buffer {
  const metadata: { [key: string]: string } = {};
  for (const [key, value] of Object.entries(spec.metadata ?? {})) if (value !== undefined) metadata[key] = String(value);
  const details: Any[] = [
    pack("google.rpc.ErrorInfo", ErrorInfo.encode({ reason: spec.reason, domain: ERROR_DOMAIN, metadata }).finish()),
  ];
  if (spec.fieldViolations?.length) {
    const fieldViolations = spec.fieldViolations.map((v) => ({ ...v, reason: "", localizedMessage: undefined }));
    details.push(pack("google.rpc.BadRequest", BadRequest.encode({ fieldViolations }).finish()));
  }
  if (spec.preconditionViolations?.length) {
    const violations = spec.preconditionViolations.map((v) => ({ ...v }));
    details.push(pack("google.rpc.PreconditionFailure", PreconditionFailure.encode({ violations }).finish()));
  }
  if (spec.resourceName) {
    const resource = { resourceType: DELIVERY_TYPE, resourceName: spec.resourceName, owner: "", description: "" };
    details.push(pack("google.rpc.ResourceInfo", ResourceInfo.encode(resource).finish()));
  }
  if (spec.retryDelayMs !== undefined) {
    details.push(pack("google.rpc.RetryInfo", RetryInfo.encode({ retryDelay: durationOf(spec.retryDelayMs) }).finish()));
  }
  return Buffer.from(Status.encode({ code: spec.code, message, details }).finish());
}

/** A grpc-js error object (code, message, trailers with the details) for a spec. */
export function serviceErrorOf(spec: ErrorSpec, message: string): Partial<ServiceError> {
  const metadata = new Metadata();
  metadata.set(DETAILS_KEY, encodeStatus(spec, message));
  return { code: spec.code, details: message, metadata };
}

/**
 * Any thrown value -> the status the client gets. Unknown errors are logged
 * with their stack and become a generic INTERNAL.
 */
export function toServiceError(error: unknown, logger: Logger): Partial<ServiceError> {
  const { spec, message } = specOf(error);
  if (spec === INTERNAL) logger.error({ err: error }, "unexpected error");
  else if (spec.code === status.UNAVAILABLE) logger.warn({ err: error, reason: spec.reason }, "unavailable");
  return serviceErrorOf(spec, message);
}
