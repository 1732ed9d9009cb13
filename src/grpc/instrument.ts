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

/** The delivery an RPC was about: from the request, else (a create without an id) from the response; only valid ids. */
function deliveryIdOf(request: unknown, response?: unknown): string | undefined {
  const fromRequest = (request as { deliveryId?: unknown } | undefined)?.deliveryId;
  const id = fromRequest || (response as { delivery?: { id?: unknown } } | undefined)?.delivery?.id;
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
    const record = (started: bigint, code: status, call: { readonly request: unknown }, details?: string, response?: unknown) => {
      const { request } = call;
      const identity = identityOf(call);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const codeName = status[code] ?? String(code);
      metrics.rpcs.inc({ method, code: codeName });
      metrics.rpcSeconds.observe({ method }, seconds);
      const line = {
        method,
        code: codeName,
        durationMs: Math.round(seconds * 1e6) / 1e3,
        deliveryId: deliveryIdOf(request, response),
        principal: identity?.principal?.id,
        authReason: identity?.refusal?.reason,
        authDetail: identity?.refusal?.detail,
      };
      if (code === status.INTERNAL || code === status.UNKNOWN) logger.error({ ...line, details }, "rpc failed");
      else logger.info(line, "rpc");
    };

    if (definition[name]?.responseStream) {
      const stream = handler as handleServerStreamingCall<unknown, unknown>;
      wrapped[name] = ((call: ServerWritableStream<unknown, unknown>) => {
        const started = process.hrtime.bigint();
        whenStreamEnds(call, (code, details) => record(started, code, call, details));
        stream(call);
      }) as handleServerStreamingCall<unknown, unknown>;
    } else {
      const unary = handler as handleUnaryCall<unknown, unknown>;
      wrapped[name] = ((call, callback) => {
        const started = process.hrtime.bigint();
        unary(call, (error, value, ...rest) => {
          record(started, error?.code ?? status.OK, call, error?.details, value);
          callback(error, value, ...rest);
        });
      }) as handleUnaryCall<unknown, unknown>;
    }
  }
  return wrapped as T;
}
