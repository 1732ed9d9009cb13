/**
 * The auth core (src/auth/) at the gRPC edge: reads a call's credentials
 * (the `authorization` metadata, the verified client certificate), asks the
 * authenticator, turns a refusal into a status through the error table, and
 * remembers who the caller is for the handlers (the actor of events) and the
 * instrumentation (the log line). Streams end when their credential does.
 */
import type { EventEmitter } from "node:events";
import type { Metadata, ServerUnaryCall, ServiceError } from "@grpc/grpc-js";
import { actorOf, type AuthConfig, type Authenticator, isOpenMethod, normalizeMethod, type Principal } from "../auth/index.js";
import type { Logger } from "../logger.js";
import { PermissionDenied, type StreamLimit, StreamCredentialsExpired, Unauthenticated } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";
import { whenStreamEnds } from "./streamEnd.js";

/** Time for credential checks and stream expiry; tests inject one they move by hand. */
export interface AuthClock {
  /** ms since the epoch. */
  now(): number;
  /** Calls back once the clock reads `timeMs` or later; cancel() stops it. */
  at(timeMs: number, callback: () => void): { cancel(): void };
}

/** setTimeout accepts at most 2^31-1 ms (about 24.8 days); a certificate often lives longer. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export const systemClock: AuthClock = {
  now: () => Date.now(),
  at(timeMs, callback) {
    let timer: NodeJS.Timeout;
    const arm = (): void => {
      const wait = timeMs - Date.now();
      if (wait <= 0) return callback();
      timer = setTimeout(arm, Math.min(wait, MAX_TIMER_MS));
      timer.unref();
    };
    // Never synchronously: the caller finishes setting up first.
    timer = setTimeout(arm, 0);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

/** What the gate learnt about one call. */
export interface CallIdentity {
  /** Set when the caller was identified (allowed, or denied by the policy). */
  readonly principal?: Principal;
  /** Set when the call was refused: the reason, and for the log only the core's detail (a jose error code). */
  readonly refusal?: { readonly reason: string; readonly detail?: string };
}

/** The parts of a grpc-js server call the gate reads. */
export interface AuthenticatedCall {
  readonly metadata: Metadata;
  getAuthContext(): ReturnType<ServerUnaryCall<unknown, unknown>["getAuthContext"]>;
  on: EventEmitter["on"];
}

// Keyed by the call object, so nothing gRPC-specific travels below the handlers.
const identities = new WeakMap<object, CallIdentity>();

export function identityOf(call: object): CallIdentity | undefined {
  return identities.get(call);
}

/** The actor to record on the events a call appends: "" when authentication is off. */
export function actorOfCall(call: object): string {
  const principal = identities.get(call)?.principal;
  return principal ? actorOf(principal) : "";
}

/** The check of one method. */
export interface MethodGate {
  /** Resolves with undefined when the call may go on (its identity remembered), else with the status to answer. Never rejects. */
  admit(call: AuthenticatedCall): Promise<Partial<ServiceError> | undefined>;
  /** For an admitted stream: calls `end` when its credential expires (or AUTH_STREAM_MAX_MS is over), unless it ends first. */
  expire(call: AuthenticatedCall, end: (condition: StreamCredentialsExpired) => void): void;
}

export interface CallAuth {
  /** The gate of a method (its gRPC path); undefined when the method needs none (an open method: health, reflection). */
  gateFor(path: string): MethodGate | undefined;
}

export interface CallAuthDeps {
  readonly config: Extract<AuthConfig, { enabled: true }>;
  readonly authenticator: Authenticator;
  readonly clock: AuthClock;
  readonly logger: Logger;
  /** One refused call, by the core's reason (metrics). */
  readonly onRefused: (reason: string) => void;
}

function authorizationOf(metadata: Metadata): string[] {
  return metadata.get("authorization").map((value) => (typeof value === "string" ? value : value.toString("utf8")));
}

export function createCallAuth({ config, authenticator, clock, logger, onRefused }: CallAuthDeps): CallAuth {
  const toleranceMs = (config.jwt?.clockToleranceS ?? 0) * 1000;

  /** When a stream opened now on `principal` must end, and why; undefined: never. */
  function deadlineOf(principal: Principal, startedAt: number): { at: number; limit: StreamLimit } | undefined {
    // A token is accepted up to exp + the tolerance: the stream lives as long as a new call could.
    const expiry = principal.expiresAt === undefined ? undefined : principal.expiresAt + (principal.kind === "jwt" ? toleranceMs : 0);
    const maxAge = config.streamMaxMs > 0 ? startedAt + config.streamMaxMs : undefined;
    if (maxAge !== undefined && (expiry === undefined || maxAge < expiry)) return { at: maxAge, limit: "STREAM_MAX_AGE" };
    return expiry === undefined ? undefined : { at: expiry, limit: "CREDENTIAL_EXPIRY" };
  }

  return {
    gateFor(path) {
      if (isOpenMethod(config.policy, path)) return undefined;
      const method = normalizeMethod(path);
      return {
        async admit(call) {
          try {
            const check = await authenticator.check({
              method,
              authorization: authorizationOf(call.metadata),
              peerCertificate: call.getAuthContext()?.sslPeerCertificate,
            });
            switch (check.outcome) {
              case "open":
                return undefined;
              case "allowed":
                identities.set(call, { principal: check.principal });
                return undefined;
              case "unauthenticated":
                identities.set(call, { refusal: check.detail === undefined ? { reason: check.reason } : { reason: check.reason, detail: check.detail } });
                onRefused(check.reason);
                return toServiceError(new Unauthenticated(check.reason, check.message, method), logger);
              case "denied":
                identities.set(call, { principal: check.principal, refusal: { reason: check.reason } });
                onRefused(check.reason);
                return toServiceError(new PermissionDenied(check.reason, check.message, check.metadata), logger);
              default: {
                const unreachable: never = check;
                throw new Error(`unknown auth outcome ${JSON.stringify(unreachable)}`);
              }
            }
          } catch (error) {
            // The core never throws; should it, the call fails closed with a generic INTERNAL.
            return toServiceError(error, logger);
          }
        },

        expire(call, end) {
          const principal = identities.get(call)?.principal;
          const deadline = principal && deadlineOf(principal, clock.now());
          if (!deadline) return;
          const timer = clock.at(deadline.at, () => end(new StreamCredentialsExpired(method, deadline.limit)));
          whenStreamEnds(call, () => timer.cancel());
        },
      };
    },
  };
}
