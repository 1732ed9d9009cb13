/** Authentication and per-method authorisation, free of any transport. */
export { parseAuthConfig, MIN_HMAC_SECRET_BYTES, type AuthConfig } from "./authConfig.js";
export { createAuthenticator, type AuthCheck, type AuthRequest, type Authenticator, type AuthenticatorDeps } from "./authenticator.js";
export { certificatePrincipal, parseSubjectAltNames, type PeerCertificateLike, type SubjectAltName } from "./certificateIdentity.js";
export { createJwksFileKeys, parseJwks, validateJwks, JwksError, ASYMMETRIC_ALGORITHMS, type JwksFileKeys, type JwksFileOptions } from "./jwksFile.js";
export { createJwtVerifier, secretBytes, HMAC_ALGORITHMS, MAX_TOKEN_LENGTH, type JwtConfig, type JwtKeySource, type JwtVerifier, type SecretBytes } from "./jwtVerifier.js";
export { evaluatePolicy, isOpenMethod, normalizeMethod, parsePolicy, validatePolicy, PolicyError, OPEN_SERVICES, type MethodMatcher, type Policy, type PolicyRule, type PrincipalMatcher } from "./policy.js";
export {
  actorOf,
  PERMISSION_DENIED_REASONS,
  UNAUTHENTICATED_REASONS,
  type AuthFailure,
  type AuthenticationResult,
  type AuthorizationDenied,
  type AuthorizationResult,
  type CertificatePrincipal,
  type JwtPrincipal,
  type PermissionDeniedReason,
  type Principal,
  type UnauthenticatedReason,
} from "./principal.js";
