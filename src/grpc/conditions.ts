import type { PermissionDeniedReason, UnauthenticatedReason } from "../auth/index.js";

/**
 * Conditions of the service, not of a delivery: limits, shutdown, requests
 * that do not decode. They go through the same error table as domain errors
 * (errorStatus.ts), so every status the service returns has its details.
 */
export abstract class ServiceCondition extends Error {
  abstract readonly kind: string;
}

/** This replica holds as many open watches as MAX_WATCHERS allows. */
export class TooManyWatchers extends ServiceCondition {
  readonly kind = "TooManyWatchers";
  readonly maxWatchers: number;
  constructor(maxWatchers: number) {
    super(`this replica already has ${maxWatchers} open watches; retry later or on another replica`);
    this.maxWatchers = maxWatchers;
  }
}

/** The process is stopping: the client resumes on another replica. */
export class ShuttingDown extends ServiceCondition {
  readonly kind = "ShuttingDown";
  constructor(message = "the server is shutting down; retry on another replica (watches: resume from the last message received)") {
    super(message);
  }
}

/** The request's bytes do not decode as the method's message: the client's fault. */
export class MalformedRequest extends ServiceCondition {
  readonly kind = "MalformedRequest";
  readonly method: string;
  constructor(method: string) {
    super(`the request does not decode as the request message of ${method}`);
    this.method = method;
  }
}

/** Health/Check for a service name this server does not report on. */
export class UnknownHealthService extends ServiceCondition {
  readonly kind = "UnknownHealthService";
  readonly service: string;
  constructor(service: string) {
    super(`no health status for service "${service}"; known: "" (the whole server) and delivery.v1.DeliveryService`);
    this.service = service;
  }
}

/** The caller could not be identified; reason and message are the auth core's (never a token or a claim). */
export class Unauthenticated extends ServiceCondition {
  readonly kind = "Unauthenticated";
  readonly reason: UnauthenticatedReason;
  /** `delivery.v1.DeliveryService/GetDelivery`. */
  readonly method: string;
  constructor(reason: UnauthenticatedReason, message: string, method: string) {
    super(message);
    this.reason = reason;
    this.method = method;
  }
}

/** An identified caller without the right to call the method. */
export class PermissionDenied extends ServiceCondition {
  readonly kind = "PermissionDenied";
  readonly reason: PermissionDeniedReason;
  /** The auth core's: `method` always, `rule` for DENIED_BY_RULE. */
  readonly metadata: Readonly<Record<string, string>>;
  constructor(reason: PermissionDeniedReason, message: string, metadata: Readonly<Record<string, string>>) {
    super(message);
    this.reason = reason;
    this.metadata = metadata;
  }
}

/** Why a stream's credentials ran out: the credential's own expiry, or AUTH_STREAM_MAX_MS. */
export type StreamLimit = "CREDENTIAL_EXPIRY" | "STREAM_MAX_AGE";

/** A stream that was opened with a credential now expired: the client opens it again with a fresh one. */
export class StreamCredentialsExpired extends ServiceCondition {
  readonly kind = "StreamCredentialsExpired";
  readonly method: string;
  readonly limit: StreamLimit;
  constructor(method: string, limit: StreamLimit) {
    super(
      limit === "CREDENTIAL_EXPIRY"
        ? "the credentials this stream was opened with have expired; open it again with fresh ones (watches: after_version = the last version received)"
        : "this stream has lived as long as AUTH_STREAM_MAX_MS allows on one credential; open it again with a fresh one (watches: after_version = the last version received)",
    );
    this.method = method;
    this.limit = limit;
  }
}

export type AnyServiceCondition =
  | TooManyWatchers
  | ShuttingDown
  | MalformedRequest
  | UnknownHealthService
  | Unauthenticated
  | PermissionDenied
  | StreamCredentialsExpired;
