/**
 * Decodes google.rpc.Status from a gRPC error's `grpc-status-details-bin`
 * trailer, as a client would: the typed details it knows, by type URL.
 */
import type { Metadata, ServiceError, StatusObject } from "@grpc/grpc-js";
import {
  BadRequest,
  ErrorInfo,
  PreconditionFailure,
  ResourceInfo,
  RetryInfo,
} from "../../src/gen/google/rpc/error_details.js";
import { Status } from "../../src/gen/google/rpc/status.js";

export interface DecodedStatus {
  readonly code: number;
  readonly message: string;
  readonly typeUrls: readonly string[];
  readonly errorInfo?: ErrorInfo;
  readonly badRequest?: BadRequest;
  readonly preconditionFailure?: PreconditionFailure;
  readonly resourceInfo?: ResourceInfo;
  readonly retryInfo?: RetryInfo;
  /** RetryInfo's delay in milliseconds. */
  readonly retryDelayMs?: number;
}

const PREFIX = "type.googleapis.com/";

/** The decoded details, or undefined when the trailer is absent. */
export function statusDetailsOf(error: Pick<ServiceError, "metadata"> | Pick<StatusObject, "metadata">): DecodedStatus | undefined {
  const metadata = error.metadata as Metadata | undefined;
  const [bytes] = metadata?.get("grpc-status-details-bin") ?? [];
  if (bytes === undefined) return undefined;
  const status = Status.decode(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
  const decoded: { -readonly [K in keyof DecodedStatus]: DecodedStatus[K] } = {
    code: status.code,
    message: status.message,
    typeUrls: status.details.map((d) => d.typeUrl),
  };
  for (const { typeUrl, value } of status.details) {
    switch (typeUrl.startsWith(PREFIX) ? typeUrl.slice(PREFIX.length) : typeUrl) {
      case "google.rpc.ErrorInfo":
        decoded.errorInfo = ErrorInfo.decode(value);
        break;
      case "google.rpc.BadRequest":
        decoded.badRequest = BadRequest.decode(value);
        break;
      case "google.rpc.PreconditionFailure":
        decoded.preconditionFailure = PreconditionFailure.decode(value);
        break;
      case "google.rpc.ResourceInfo":
        decoded.resourceInfo = ResourceInfo.decode(value);
        break;
      case "google.rpc.RetryInfo": {
        decoded.retryInfo = RetryInfo.decode(value);
        const delay = decoded.retryInfo.retryDelay;
        decoded.retryDelayMs = delay ? Number(delay.seconds) * 1000 + delay.nanos / 1e6 : 0;
        break;
      }
      default:
        throw new Error(`unexpected detail type ${typeUrl}`);
    }
  }
  return decoded;
}

/** The field paths of a BadRequest, in order. */
export function violatedFields(details: DecodedStatus | undefined): string[] {
  return details?.badRequest?.fieldViolations.map((v) => v.field) ?? [];
}
