/**
 * Who is calling, and why a call is refused: plain data, no transport. The
 * gRPC layer turns an AuthFailure into UNAUTHENTICATED and an
 * AuthorizationDenied into PERMISSION_DENIED.
 */

/** Why a caller could not be identified. Stable: clients and alerts may match on them. */
export const UNAUTHENTICATED_REASONS = [
  /** Nothing to identify the caller: no authorization metadata and no client certificate. */
  "CREDENTIALS_MISSING",
  /** authorization metadata that is not one `Bearer <token>`. */
  "CREDENTIALS_MALFORMED",
  /** Not a JWT, a bad signature, an algorithm not accepted (none, HS with a JWKS...), no trusted key, a bad claim. */
  "TOKEN_INVALID",
  "TOKEN_EXPIRED",
  "TOKEN_NOT_YET_VALID",
  "WRONG_ISSUER",
  "WRONG_AUDIENCE",
  /** A client certificate with no usable identity: two SPIFFE IDs, a malformed one, no CN. */
  "CERTIFICATE_IDENTITY_INVALID",
] as const;
export type UnauthenticatedReason = (typeof UNAUTHENTICATED_REASONS)[number];

/** Why an identified caller may not call a method. */
export const PERMISSION_DENIED_REASONS = [
  /** No allow rule grants the method to this caller (or there is no caller). */
  "METHOD_NOT_ALLOWED",
  /** A deny rule matched; its name is in the metadata as `rule`. */
  "DENIED_BY_RULE",
] as const;
export type PermissionDeniedReason = (typeof PERMISSION_DENIED_REASONS)[number];

interface PrincipalBase {
  /** The identity policies match and events record: a JWT's sub, a SPIFFE ID or `CN=<cn>`. */
  readonly id: string;
  readonly scopes: readonly string[];
  /** When the credential stops being valid, in ms since the epoch (a JWT's exp, a certificate's notAfter). */
  readonly expiresAt?: number;
}

export interface JwtPrincipal extends PrincipalBase {
  readonly kind: "jwt";
  readonly sub: string;
}

export interface CertificatePrincipal extends PrincipalBase {
  readonly kind: "certificate";
  readonly sub?: undefined;
}

export type Principal = JwtPrincipal | CertificatePrincipal;

export interface AuthFailure {
  readonly ok: false;
  readonly code: "UNAUTHENTICATED";
  readonly reason: UnauthenticatedReason;
  /** Safe to send to the caller: never a token, a secret or a claim value. */
  readonly message: string;
  /** For the server's log only: the jose error code behind a TOKEN_INVALID, for instance. */
  readonly detail?: string;
}

export type AuthenticationResult = { readonly ok: true; readonly principal: Principal } | AuthFailure;

export interface AuthorizationDenied {
  readonly ok: false;
  readonly code: "PERMISSION_DENIED";
  readonly reason: PermissionDeniedReason;
  readonly message: string;
  /** `method` always; `rule` (the deny rule's name) for DENIED_BY_RULE. Suits google.rpc.ErrorInfo.metadata. */
  readonly metadata: Readonly<Record<string, string>>;
}

export type AuthorizationResult =
  /** rule: the allow rule that granted the call; undefined for an open method. */
  | { readonly ok: true; readonly rule: string | undefined }
  | AuthorizationDenied;

export function authFailure(reason: UnauthenticatedReason, message: string, detail?: string): AuthFailure {
  return detail === undefined ? { ok: false, code: "UNAUTHENTICATED", reason, message } : { ok: false, code: "UNAUTHENTICATED", reason, message, detail };
}

/** The actor recorded on an event: a JWT's sub as is; a certificate's SPIFFE ID, else `CN=<cn>`. */
export function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case "jwt":
      return principal.sub;
    case "certificate":
      return principal.id;
    default: {
      const unreachable: never = principal;
      return unreachable;
    }
  }
}
