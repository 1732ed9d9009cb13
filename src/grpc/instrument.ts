import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import type { Metrics } from "../metrics.js";
import { identityOf } from "./callAuth.js";
import { whenStreamEnds } from "./streamEnd.js";
import { LIMITS } from "./parse.js";

export interface InstrumentDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
}

interface StartedStream {
  readonly call: { readonly request: unknown };
  readonly at: bigint;
}

/** Ids the service chose for a call whose request names none (a create without an id). */
const chosenIds = new WeakMap<object, string>();

/** The delivery a call is about when its request does not name it: for the call's log line. */
export function noteDeliveryOf(call: object, deliveryId: string): void {
  chosenIds.set(call, deliveryId);
}

/** The delivery an RPC was about: from the request, else the one the service chose for it; only valid ids. */
function deliveryIdOf(call: { readonly request: unknown }): string | undefined {
  const id = (call.request as { deliveryId?: unknown } | undefined)?.deliveryId || chosenIds.get(call);
  return typeof id === "string" && LIMITS.idPattern.test(id) ? id : undefined;
}

/**
 * Wraps every handler of a service: one log line and one metrics sample per
 * finished RPC (method, status code, duration, delivery id, the caller's
 * principal; for a refused call the auth reason, and the core's detail such as
 * a jose error code). Request payloads and credentials are not logged.
 */
export function instrumentService<T extends UntypedServiceImplementation>(
  definition: ServiceDefinition,
  implementation: T,
  { logger, metrics }: InstrumentDeps,
): T {
  const wrapped: UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(implementation)) {
    const method = definition[name]?.path.split("/").pop() ?? name;
    const record = (started: bigint, code: status, call: { readonly request: unknown }, details?: string) => {
      const identity = identityOf(call);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const codeName = status[code] ?? String(code);
      metrics.rpcs.inc({ method, code: codeName });
      metrics.rpcSeconds.observe({ method }, seconds);
      const line = {
        method,
        code: codeName,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        deliveryId: deliveryIdOf(call),
        principal: identity?.principal?.id,
        authReason: identity?.refusal?.reason,
        authDetail: identity?.refusal?.detail,
      };
      if (code === status.INTERNAL || code === status.UNKNOWN) logger.error({ ...line, details }, "rpc failed");
      else logger.info(line, "rpc");
    };

    if (definition[name]?.responseStream) {
      const stream = handler as handleServerStreamingCall<unknown, unknown>;
      // A shared listener and one small object per stream (a process holds one per watcher).
      const recordStream = (code: status, details: string | undefined, started: StartedStream) => record(started.at, code, started.call, details);
      wrapped[name] = ((call: ServerWritableStream<unknown, unknown>) => {
        whenStreamEnds(call, recordStream, { call, at: process.hrtime.bigint() });
        stream(call);
      }) as handleServerStreamingCall<unknown, unknown>;
    } else {
      const unary = handler as handleUnaryCall<unknown, unknown>;
      wrapped[name] = ((call, callback) => {
        const started = process.hrtime.bigint();
        unary(call, (error, value, ...rest) => {
          record(started, error?.code ?? status.OK, call, error?.details);
          callback(error, value, ...rest);
        });
      }) as handleUnaryCall<unknown, unknown>;
    }
  }
  return wrapped as T;
}
