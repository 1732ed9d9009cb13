import type {
  handleBidiStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServerDuplexStream,
  ServerWritableStream,
  ServiceDefinition,
  ServiceError,
  UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { Logger } from "../logger.js";
import type { AuthenticatedCall, CallAuth } from "./callAuth.js";
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
  /** Undefined: authentication is off and every call goes through. */
  readonly auth?: CallAuth | undefined;
}

/**
 * Wraps a service so that, for every method:
 * - a caller without valid credentials (UNAUTHENTICATED) or without the
 *   right (PERMISSION_DENIED) is answered first, before anything of its
 *   request is looked at: even undecodable bytes get that answer;
 * - request bytes that do not decode answer INVALID_ARGUMENT
 *   (MALFORMED_REQUEST) instead of grpc-js's INTERNAL, before any handler runs;
 * - every server stream is in the registry that shutdown ends, and ends
 *   UNAUTHENTICATED (TOKEN_EXPIRED) when its credential does.
 */
export function guardService(
  definition: ServiceDefinition,
  implementation: UntypedServiceImplementation,
  { registry, logger, auth }: GuardDeps,
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
    const gate = auth?.gateFor(method.path);
    /** Runs `go` once the caller is admitted (at once without a gate), else `refuse` with the status. */
    const admitted = (
      call: AuthenticatedCall & { readonly cancelled: boolean },
      go: () => void,
      refuse: (error: Partial<ServiceError>) => void,
      skipCancelled: boolean,
    ) => {
      if (!gate) return go();
      void gate.admit(call).then((refusal) => {
        // A stream cancelled during the check is gone: nothing to start, nothing to register.
        if (skipCancelled && call.cancelled) return;
        if (refusal) refuse(refusal);
        else go();
      });
    };
    /** Registers an admitted stream, and ends it when its credential expires. */
    const open = (call: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>) => {
      registry.track(call);
      gate?.expire(call, (expired) => registry.end(call, expired));
    };

    if (!method.requestStream && !method.responseStream) {
      const unary = handler as handleUnaryCall<unknown, unknown>;
      guarded[name] = ((call, callback) => {
        const go = () => {
          if (call.request === MALFORMED) callback(malformed());
          else unary(call, callback);
        };
        admitted(call, go, (refusal) => callback(refusal), false);
      }) as handleUnaryCall<unknown, unknown>;
    } else if (!method.requestStream) {
      const stream = handler as handleServerStreamingCall<unknown, unknown>;
      guarded[name] = ((call) => {
        const go = () => {
          if (call.request === MALFORMED) {
            call.emit("error", malformed());
            return;
          }
          open(call);
          stream(call);
        };
        admitted(call, go, (refusal) => call.emit("error", refusal), true);
      }) as handleServerStreamingCall<unknown, unknown>;
    } else if (method.responseStream) {
      const bidi = handler as handleBidiStreamingCall<unknown, unknown>;
      guarded[name] = ((call) => {
        // Until admitted nothing listens for 'data': requests wait, unread, in the stream.
        const go = () => {
          open(call);
          // Runs before the handler's own listener; the handler skips the marker (isMalformed).
          call.prependListener("data", (request: unknown) => {
            if (request === MALFORMED) call.emit("error", malformed());
          });
          bidi(call);
        };
        admitted(call, go, (refusal) => call.emit("error", refusal), true);
      }) as handleBidiStreamingCall<unknown, unknown>;
    } else {
      throw new Error(`guardService: client-streaming ${method.path} is not supported`);
    }
  }
  return { definition: guardedDefinition, implementation: guarded };
}
