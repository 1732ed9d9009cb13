import { readFileSync } from "node:fs";
import { type Env, flag, integer, present } from "../settings.js";
import { ConfigError } from "../configError.js";
import { JwksError, parseJwks } from "./jwksFile.js";
import { secretBytes, type JwtConfig, type JwtKeySource } from "./jwtVerifier.js";
import { parsePolicy, PolicyError, type Policy } from "./policy.js";

/**
 * Authentication and authorisation settings, off unless a way to identify
 * callers is set. Every file is read and checked here, so a bad one stops
 * start-up with one line naming the variable, the problem and the path.
 *
 *   AUTH_JWKS_FILE                 public keys (JWKS) that verify bearer JWTs; re-read when it changes
 *   AUTH_JWKS_RELOAD_INTERVAL_MS   how often the JWKS file is looked at (default 10000)
 *   AUTH_HMAC_SECRET_FILE          or: a shared secret (HS256/384/512), at least 32 bytes; one final newline is dropped
 *   AUTH_ISSUER, AUTH_AUDIENCE     required with either: the exact iss, and an aud the token must carry
 *   AUTH_CLOCK_TOLERANCE_S         leeway on exp and nbf (default 30)
 *   AUTH_CLIENT_CERTIFICATES       true: a client certificate (mutual TLS) identifies the caller
 *   AUTH_POLICY_FILE               required when any of the above is on: who may call what (see policy.ts)
 *   AUTH_STREAM_MAX_MS             longest a stream lives on one credential (default 0: until the credential
 *                                  expires); either way it then ends UNAUTHENTICATED (TOKEN_EXPIRED)
 */

export type AuthConfig =
  | { readonly enabled: false }
  | {
      readonly enabled: true;
      /** Set: bearer JWTs in the authorization metadata identify callers. */
      readonly jwt: JwtConfig | undefined;
      /** True: a verified client certificate identifies callers that send no bearer token. */
      readonly clientCertificates: boolean;
      readonly policyFile: string;
      readonly policy: Policy;
      /**
       * A server stream ends at its credential's expiry (a JWT's exp plus the
       * clock tolerance, a certificate's notAfter), or this long after it
       * started if that comes first; 0: at the expiry only.
       */
      readonly streamMaxMs: number;
    };

export const MIN_HMAC_SECRET_BYTES = 32;




function read(name: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(`${name} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message} (${path})`);
  }
}

function needs(env: Env, names: readonly string[], what: string): void {
  for (const name of names) if (present(env, name) !== undefined) throw new ConfigError(`${name} needs ${what}`);
}

/** `AUTH_POLICY_FILE is invalid at allow_rules[0].methods[1]: ... (/etc/policy.json)` */
function documentError(name: string, error: { readonly at: string; readonly problem: string }, path: string): ConfigError {
  return new ConfigError(error.at === "" ? `${name} ${error.problem} (${path})` : `${name} is invalid at ${error.at}: ${error.problem} (${path})`);
}

function hmacSecret(path: string): JwtKeySource {
  let bytes = read("AUTH_HMAC_SECRET_FILE", path);
  // `echo secret > file` leaves a newline that is not meant as part of the secret.
  if (bytes.at(-1) === 0x0a) bytes = bytes.subarray(0, bytes.at(-2) === 0x0d ? -2 : -1);
  if (bytes.length < MIN_HMAC_SECRET_BYTES) {
    // The length only, never the content.
    throw new ConfigError(`AUTH_HMAC_SECRET_FILE must hold at least ${MIN_HMAC_SECRET_BYTES} bytes, it holds ${bytes.length} (${path})`);
  }
  return { kind: "hmac", file: path, secret: secretBytes(bytes) };
}

function jwks(env: Env, path: string): JwtKeySource {
  try {
    parseJwks(read("AUTH_JWKS_FILE", path).toString("utf8"));
  } catch (error) {
    if (error instanceof JwksError) throw documentError("AUTH_JWKS_FILE", error, path);
    throw error;
  }
  return { kind: "jwks", file: path, reloadIntervalMs: integer(env, "AUTH_JWKS_RELOAD_INTERVAL_MS", 10_000, 0, 3_600_000, " ms") };
}

function jwt(env: Env): JwtConfig | undefined {
  const jwksFile = present(env, "AUTH_JWKS_FILE");
  const hmacFile = present(env, "AUTH_HMAC_SECRET_FILE");
  if (jwksFile && hmacFile) throw new ConfigError("AUTH_JWKS_FILE and AUTH_HMAC_SECRET_FILE cannot both be set: choose public keys or a shared secret");
  if (!jwksFile) needs(env, ["AUTH_JWKS_RELOAD_INTERVAL_MS"], "AUTH_JWKS_FILE");
  if (!jwksFile && !hmacFile) {
    needs(env, ["AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_CLOCK_TOLERANCE_S"], "AUTH_JWKS_FILE or AUTH_HMAC_SECRET_FILE");
    return undefined;
  }
  const issuer = present(env, "AUTH_ISSUER");
  const audience = present(env, "AUTH_AUDIENCE");
  const keysName = jwksFile ? "AUTH_JWKS_FILE" : "AUTH_HMAC_SECRET_FILE";
  if (!issuer) throw new ConfigError(`AUTH_ISSUER is required with ${keysName}: the exact iss of trusted tokens`);
  if (!audience) throw new ConfigError(`AUTH_AUDIENCE is required with ${keysName}: the aud tokens for this service carry`);
  return {
    keys: jwksFile ? jwks(env, jwksFile) : hmacSecret(hmacFile!),
    issuer,
    audience,
    clockToleranceS: integer(env, "AUTH_CLOCK_TOLERANCE_S", 30, 0, 300, " s"),
  };
}

function policy(path: string): Policy {
  const text = read("AUTH_POLICY_FILE", path).toString("utf8");
  try {
    return parsePolicy(text);
  } catch (error) {
    if (error instanceof PolicyError) throw documentError("AUTH_POLICY_FILE", error, path);
    throw error;
  }
}

/** Reads the AUTH_* settings; throws a ConfigError with one clear line for anything it cannot use. */
export function parseAuthConfig(env: Env): AuthConfig {
  const jwtConfig = jwt(env);
  const clientCertificates = flag(env, "AUTH_CLIENT_CERTIFICATES");
  if (clientCertificates && present(env, "TLS_CLIENT_CA_FILE") === undefined) {
    throw new ConfigError("AUTH_CLIENT_CERTIFICATES=true needs mutual TLS: set TLS_CLIENT_CA_FILE (with TLS_CERT_FILE and TLS_KEY_FILE)");
  }
  const policyFile = present(env, "AUTH_POLICY_FILE");
  if (!jwtConfig && !clientCertificates) {
    needs(env, ["AUTH_POLICY_FILE", "AUTH_STREAM_MAX_MS"], "a way to identify callers: AUTH_JWKS_FILE, AUTH_HMAC_SECRET_FILE or AUTH_CLIENT_CERTIFICATES=true");
    return { enabled: false };
  }
  if (!policyFile) throw new ConfigError("AUTH_POLICY_FILE is required when authentication is on: without it no method could be allowed");
  const streamMaxMs = integer(env, "AUTH_STREAM_MAX_MS", 0, 0, 7 * 24 * 3_600_000, " ms");
  return { enabled: true, jwt: jwtConfig, clientCertificates, policyFile, policy: policy(policyFile), streamMaxMs };
}
