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

export type AnyServiceCondition = TooManyWatchers | ShuttingDown | MalformedRequest | UnknownHealthService;
