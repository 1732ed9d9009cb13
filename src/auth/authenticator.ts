import type { AuthConfig } from "./authConfig.js";
import { certificatePrincipal, hasCertificate, type PeerCertificateLike } from "./certificateIdentity.js";
import { createJwtVerifier, type JwtVerifier } from "./jwtVerifier.js";
import { evaluatePolicy, isOpenMethod } from "./policy.js";
import {
  authFailure,
  type AuthFailure,
  type AuthenticationResult,
  type AuthorizationResult,
  type PermissionDeniedReason,
  type Principal,
  type UnauthenticatedReason,
} from "./principal.js";

/** What the transport knows about a call; nothing gRPC-specific. */
export interface AuthRequest {
  /** `delivery.v1.DeliveryService/GetDelivery`, or the gRPC path `/delivery.v1.DeliveryService/GetDelivery`. */
  readonly method: string;
  /** The `authorization` metadata: its one value, or every value sent (more than one is refused). */
  readonly authorization: string | readonly string[] | undefined;
  /** The verified client certificate, as grpc-js's call.getAuthContext().sslPeerCertificate gives it. */
  readonly peerCertificate?: PeerCertificateLike | undefined;
}

export type AuthCheck =
  /** No credentials needed: authentication is off, or the method is open (health, reflection). */
  | { readonly outcome: "open" }
  | { readonly outcome: "allowed"; readonly principal: Principal; readonly rule: string | undefined }
  | { readonly outcome: "unauthenticated"; readonly reason: UnauthenticatedReason; readonly message: string; readonly detail?: string }
  | {
      readonly outcome: "denied";
      readonly reason: PermissionDeniedReason;
      readonly message: string;
      readonly metadata: Readonly<Record<string, string>>;
      readonly principal: Principal;
    };

export interface AuthenticatorDeps {
  /** ms since the epoch; Date.now by default. Token expiry and the JWKS reload interval read it. */
  readonly now?: () => number;
  /** The JWKS file changed and its keys are in use. */
  readonly onJwksReload?: (keyCount: number) => void;
  /** The JWKS file changed but cannot be used: the previous keys stay in use. */
  readonly onJwksReloadError?: (error: Error) => void;
}

export interface Authenticator {
  /** Who is calling, from a bearer token or else a client certificate. Never throws. */
  authenticate(request: AuthRequest): Promise<AuthenticationResult>;
  /** May this caller (undefined: none) call this method? */
  authorize(principal: Principal | undefined, method: string): AuthorizationResult;
  /** Both, in order, for one call: what the transport should do. Never throws. */
  check(request: AuthRequest): Promise<AuthCheck>;
}

const BEARER = /^Bearer +(\S+) *$/i;

/** The token in `Bearer <token>`; undefined when no authorization was sent. */
function bearerToken(authorization: AuthRequest["authorization"]): { readonly token: string } | AuthFailure | undefined {
  const values = typeof authorization === "string" ? [authorization] : (authorization ?? []);
  if (values.length === 0) return undefined;
  if (values.length > 1) return authFailure("CREDENTIALS_MALFORMED", "send one authorization metadata value, not several");
  const match = BEARER.exec(values[0]!);
  if (!match) return authFailure("CREDENTIALS_MALFORMED", 'the authorization metadata must be "Bearer <token>"');
  return { token: match[1]! };
}

/**
 * One object for a server's whole life: it holds the JWKS keys and their
 * reload state. With authentication off every call is open.
 *
 * A bearer token, when sent, decides who the caller is (an invalid one is
 * refused, without falling back to the certificate); without one, the client
 * certificate does, if AUTH_CLIENT_CERTIFICATES is on.
 */
export function createAuthenticator(config: AuthConfig, deps: AuthenticatorDeps = {}): Authenticator {
  const now = deps.now ?? Date.now;
  if (!config.enabled) {
    return {
      authenticate: async () => authFailure("CREDENTIALS_MISSING", "authentication is not configured on this server"),
      authorize: () => ({ ok: true, rule: undefined }),
      check: async () => ({ outcome: "open" }),
    };
  }

  const { policy, clientCertificates } = config;
  const verifier: JwtVerifier | undefined = config.jwt
    ? createJwtVerifier(config.jwt, { now, onJwksReload: deps.onJwksReload, onJwksReloadError: deps.onJwksReloadError })
    : undefined;
  const accepted = [verifier ? '"authorization: Bearer <token>"' : undefined, clientCertificates ? "a client certificate" : undefined].filter(Boolean);
  const missing = `no credentials: send ${accepted.join(" or ")}`;

  async function authenticate(request: AuthRequest): Promise<AuthenticationResult> {
    if (verifier) {
      const bearer = bearerToken(request.authorization);
      if (bearer && "token" in bearer) return verifier.verify(bearer.token);
      if (bearer) return bearer;
    }
    if (clientCertificates && hasCertificate(request.peerCertificate)) {
      const identity = certificatePrincipal(request.peerCertificate);
      // TLS checked the certificate at the handshake; an HTTP/2 connection can outlive it.
      const expiresAt = identity.ok ? identity.principal.expiresAt : undefined;
      if (expiresAt !== undefined && expiresAt <= now()) {
        return authFailure("TOKEN_EXPIRED", "the client certificate has expired; connect again with a valid one");
      }
      return identity;
    }
    return authFailure("CREDENTIALS_MISSING", missing);
  }

  function authorize(principal: Principal | undefined, method: string): AuthorizationResult {
    return evaluatePolicy(policy, principal, method);
  }

  return {
    authenticate,
    authorize,
    async check(request) {
      if (isOpenMethod(policy, request.method)) return { outcome: "open" };
      const identity = await authenticate(request);
      if (!identity.ok) {
        const { reason, message, detail } = identity;
        return detail === undefined ? { outcome: "unauthenticated", reason, message } : { outcome: "unauthenticated", reason, message, detail };
      }
      const decision = authorize(identity.principal, request.method);
      if (!decision.ok) {
        const { reason, message, metadata } = decision;
        return { outcome: "denied", reason, message, metadata, principal: identity.principal };
      }
      return { outcome: "allowed", principal: identity.principal, rule: decision.rule };
    },
  };
}
