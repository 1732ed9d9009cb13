import type {
  handleBidiStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServiceDefinition,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import { MalformedRequest } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import type { StreamRegistry } from "./streamRegistry.js";

/** What a request that does not decode becomes; handlers never see it. */
const MALFORMED: unique symbol = Symbol("malformed request");

export function isMalformed(request: unknown): boolean {
  return request === MALFORMED;
}

export interface GuardDeps {
  readonly registry: StreamRegistry;
  readonly logger: Logger;
}

/**
 * Wraps a service so that, for every method:
 * - request bytes that do not decode answer INVALID_ARGUMENT
 *   (MALFORMED_REQUEST) instead of grpc-js's INTERNAL, before any handler runs;
 * - every server stream is in the registry that shutdown ends.
 */
export function guardService(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  { registry, logger }: GuardDeps,
): { definition: ServiceDefinition; implementation: UntypedServiceImplementation } {
  const guardedDefinition: { [name: string]: ServiceDefinition[string] } = {};
  const guarded: UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    guardedDefinition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch {
          return MALFORMED;
        }
      },
    };
    const handler = implementation[name] ?? (method.originalName ? implementation[method.originalName] : undefined);
    if (!handler) throw new Error(`guardService: no handler for ${method.path}`);
    const malformed = () => toServiceError(new MalformedRequest(method.path), logger);

    if (!method.requestStream && !method.responseStream) {
      const unary = handler as handleUnaryCall<unknown, unknown>;
      guarded[name] = ((call, callback) => {
        if (call.request === MALFORMED) callback(malformed());
        else unary(call, callback);
      }) as handleUnaryCall<unknown, unknown>;
    } else if (!method.requestStream) {
      const stream = handler as handleServerStreamingCall<unknown, unknown>;
      guarded[name] = ((call) => {
        if (call.request === MALFORMED) {
          call.emit("error", malformed());
          return;
        }
        registry.track(call);
        stream(call);
      }) as handleServerStreamingCall<unknown, unknown>;
    } else if (method.responseStream) {
      const bidi = handler as handleBidiStreamingCall<unknown, unknown>;
      guarded[name] = ((call) => {
        registry.track(call);
        // Runs before the handler's own listener; the handler skips the marker (isMalformed).
        call.prependListener("data", (request: unknown) => {
          if (request === MALFORMED) call.emit("error", malformed());
        });
        bidi(call);
      }) as handleBidiStreamingCall<unknown, unknown>;
    } else {
      throw new Error(`guardService: client-streaming ${method.path} is not supported`);
    }
  }
  return { definition: guardedDefinition, implementation: guarded };
}
