import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from "jose";
import { ASYMMETRIC_ALGORITHMS, createJwksFileKeys } from "./jwksFile.js";
import { authFailure, type AuthenticationResult, type AuthFailure } from "./principal.js";

/** Where the keys that verify tokens come from. */
export type JwtKeySource =
  /** Public keys in a JWKS file, re-read when it changes: asymmetric algorithms only. */
  | { readonly kind: "jwks"; readonly file: string; readonly reloadIntervalMs: number }
  /** One shared secret: HS256, HS384 or HS512 only. For tests and small setups. */
  | { readonly kind: "hmac"; readonly file: string; readonly secret: SecretBytes };

/** A secret that does not show up when its holder is logged or printed. */
export interface SecretBytes {
  reveal(): Uint8Array;
}

export function secretBytes(bytes: Uint8Array): SecretBytes {
  const copy = Uint8Array.from(bytes);
  return { reveal: () => copy };
}

export interface JwtConfig {
  readonly keys: JwtKeySource;
  /** The token's iss must be exactly this. */
  readonly issuer: string;
  /** The token's aud must be, or contain, this. */
  readonly audience: string;
  /** Leeway for exp and nbf, for clocks that drift apart. */
  readonly clockToleranceS: number;
}

export const HMAC_ALGORITHMS: readonly string[] = ["HS256", "HS384", "HS512"];

export interface JwtVerifierDeps {
  /** ms since the epoch: expiry checks and the JWKS file's reload interval read it. */
  readonly now: () => number;
  readonly onJwksReload?: ((keyCount: number) => void) | undefined;
  readonly onJwksReloadError?: ((error: Error) => void) | undefined;
}

export interface JwtVerifier {
  /** A compact JWT (without "Bearer ") to a JWT principal or an AuthFailure. Never throws. */
  verify(token: string): Promise<AuthenticationResult>;
}

/** Longest token looked at; anything longer is refused before parsing. */
export const MAX_TOKEN_LENGTH = 8192;

/** Turns what jose throws into a reason and a message that repeats nothing of the token. */
function failureOf(error: unknown): AuthFailure {
  const code = error instanceof errors.JOSEError ? error.code : undefined;
  if (error instanceof errors.JWTExpired) return authFailure("TOKEN_EXPIRED", "the token has expired", code);
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "iss") return authFailure("WRONG_ISSUER", "the token is not from the issuer this service trusts", code);
    if (error.claim === "aud") return authFailure("WRONG_AUDIENCE", "the token is not meant for this service (its audience does not match)", code);
    if (error.claim === "nbf" && error.reason === "check_failed") return authFailure("TOKEN_NOT_YET_VALID", "the token is not valid yet", code);
    // claim names come from jose (exp, nbf, iat, sub...), never from the token.
    return authFailure("TOKEN_INVALID", `the token's ${error.claim} claim is missing or not valid`, `${code}:${error.claim}:${error.reason}`);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return authFailure("TOKEN_INVALID", "the token's signing algorithm is not accepted", code);
  if (error instanceof errors.JWSSignatureVerificationFailed) return authFailure("TOKEN_INVALID", "the token's signature does not verify", code);
  if (error instanceof errors.JWKSNoMatchingKey) return authFailure("TOKEN_INVALID", "no trusted key matches the token's kid and alg", code);
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return authFailure("TOKEN_INVALID", "the token is not a well-formed JWT", code);
  if (error instanceof errors.JOSENotSupported) return authFailure("TOKEN_INVALID", "the token uses an algorithm or header this service does not support", code);
  return authFailure("TOKEN_INVALID", "the token cannot be verified", code ?? (error instanceof Error ? error.name : undefined));
}

/** `scope` is space-separated (RFC 8693); `scp` is an array, or a space-separated string as some issuers send. */
function scopesOf(payload: JWTPayload): string[] | AuthFailure {
  const scopes = new Set<string>();
  for (const claim of ["scope", "scp"] as const) {
    const value = payload[claim];
    if (value === undefined) continue;
    if (typeof value === "string") {
      for (const scope of value.split(" ")) if (scope !== "") scopes.add(scope);
    } else if (claim === "scp" && Array.isArray(value) && value.every((scope) => typeof scope === "string")) {
      for (const scope of value as string[]) if (scope !== "") scopes.add(scope);
    } else {
      return authFailure("TOKEN_INVALID", `the token's ${claim} claim must be ${claim === "scp" ? "an array of strings or a string" : "a string"}`);
    }
  }
  return [...scopes];
}

export function createJwtVerifier(config: JwtConfig, deps: JwtVerifierDeps): JwtVerifier {
  const { keys } = config;
  let getKey: JWTVerifyGetKey | Uint8Array;
  let algorithms: readonly string[];
  switch (keys.kind) {
    case "jwks":
      getKey = createJwksFileKeys({
        file: keys.file,
        reloadIntervalMs: keys.reloadIntervalMs,
        now: deps.now,
        onReload: deps.onJwksReload,
        onReloadError: deps.onJwksReloadError,
      }).getKey;
      algorithms = ASYMMETRIC_ALGORITHMS;
      break;
    case "hmac":
      getKey = keys.secret.reveal();
      algorithms = HMAC_ALGORITHMS;
      break;
    default: {
      const unreachable: never = keys;
      throw new Error(`unknown key source ${JSON.stringify(unreachable)}`);
    }
  }

  const options = (): JWTVerifyOptions => ({
    // jose refuses "none" whatever this says; the list also keeps HS* away from public keys and RS* away from a secret.
    algorithms: [...algorithms],
    issuer: config.issuer,
    audience: config.audience,
    clockTolerance: config.clockToleranceS,
    currentDate: new Date(deps.now()),
    requiredClaims: ["exp", "sub"],
  });

  async function verified(token: string): Promise<JWTPayload> {
    const verifyOptions = options();
    try {
      // Two calls only because jwtVerify's overloads take a key or a key function, not the union.
      return (await (typeof getKey === "function" ? jwtVerify(token, getKey, verifyOptions) : jwtVerify(token, getKey, verifyOptions))).payload;
    } catch (error) {
      // Several keys fit the header (no kid, mid-rotation): jose hands them over to try in turn.
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error;
      for await (const key of error) {
        try {
          return (await jwtVerify(token, key, verifyOptions)).payload;
        } catch (inner) {
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
        }
      }
      throw new errors.JWSSignatureVerificationFailed();
    }
  }

  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_LENGTH) return authFailure("TOKEN_INVALID", `the token is longer than ${MAX_TOKEN_LENGTH} characters`);
      let payload: JWTPayload;
      try {
        payload = await verified(token);
      } catch (error) {
        return failureOf(error);
      }
      const { sub, exp } = payload;
      if (typeof sub !== "string" || sub === "") return authFailure("TOKEN_INVALID", "the token's sub claim must be a non-empty string");
      const scopes = scopesOf(payload);
      if (!Array.isArray(scopes)) return scopes;
      return { ok: true, principal: { kind: "jwt", id: sub, sub, scopes, ...(exp === undefined ? {} : { expiresAt: exp * 1000 }) } };
    },
  };
}
