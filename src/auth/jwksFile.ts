import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createLocalJWKSet, type JSONWebKeySet, type JWK, type JWTVerifyGetKey } from "jose";

/**
 * A JWKS file of public signing keys, re-read when it changes. Only
 * asymmetric keys are accepted: a shared secret in a JWKS would let anyone
 * holding the (public) file sign tokens, which is the algorithm-confusion
 * attack in another form.
 */

/** The algorithms each key type may verify; a key's own `alg`, when set, must be one of them. */
export const JWKS_ALGORITHMS = {
  RSA: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
  EC: ["ES256", "ES384", "ES512"],
  OKP: ["EdDSA", "Ed25519"],
} as const;
export const ASYMMETRIC_ALGORITHMS: readonly string[] = Object.values(JWKS_ALGORITHMS).flat();

const EC_CURVES: Readonly<Record<string, string>> = { "P-256": "ES256", "P-384": "ES384", "P-521": "ES512" };
const MIN_RSA_BITS = 2048;

/** A problem in a JWKS document; `at` is where, such as `keys[1].alg`. */
export class JwksError extends Error {
  readonly at: string;
  readonly problem: string;
  constructor(at: string, problem: string) {
    super(at === "" ? `the JWKS ${problem}` : `${at}: ${problem}`);
    this.at = at;
    this.problem = problem;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function validateKey(key: unknown, at: string): JWK {
  if (!isObject(key)) throw new JwksError(at, "must be a JSON object");
  const { kty, alg, use, crv, kid } = key;
  if (kty === "oct") throw new JwksError(`${at}.kty`, 'a shared secret (kty "oct") cannot be in a JWKS; use AUTH_HMAC_SECRET_FILE for HMAC');
  if (kty !== "RSA" && kty !== "EC" && kty !== "OKP") throw new JwksError(`${at}.kty`, `must be "RSA", "EC" or "OKP", got ${JSON.stringify(kty)}`);
  if ("d" in key) throw new JwksError(at, "is a private key; the JWKS file must hold public keys only");
  if (kid !== undefined && typeof kid !== "string") throw new JwksError(`${at}.kid`, "must be a string");
  if (use !== undefined && use !== "sig") throw new JwksError(`${at}.use`, `must be "sig" for a signing key, got ${JSON.stringify(use)}`);
  const algorithms: readonly string[] = JWKS_ALGORITHMS[kty];
  if (alg !== undefined && (typeof alg !== "string" || !algorithms.includes(alg))) {
    throw new JwksError(`${at}.alg`, `must be one of ${algorithms.join(", ")} for kty ${kty}, got ${JSON.stringify(alg)}`);
  }
  if (kty === "EC") {
    const curveAlg = typeof crv === "string" ? EC_CURVES[crv] : undefined;
    if (curveAlg === undefined) throw new JwksError(`${at}.crv`, `must be P-256, P-384 or P-521, got ${JSON.stringify(crv)}`);
    if (alg !== undefined && alg !== curveAlg) throw new JwksError(`${at}.alg`, `${crv} keys sign with ${curveAlg}, got ${JSON.stringify(alg)}`);
  }
  if (kty === "OKP" && crv !== "Ed25519") throw new JwksError(`${at}.crv`, `must be Ed25519 for an OKP signing key, got ${JSON.stringify(crv)}`);
  let modulusLength: number | undefined;
  try {
    modulusLength = createPublicKey({ key: key as JWK & { kty: string }, format: "jwk" }).asymmetricKeyDetails?.modulusLength;
  } catch {
    throw new JwksError(at, `is not a valid ${kty} public key`);
  }
  if (kty === "RSA" && (modulusLength === undefined || modulusLength < MIN_RSA_BITS)) {
    throw new JwksError(at, `RSA keys must have at least ${MIN_RSA_BITS} bits, got ${modulusLength ?? "unknown"}`);
  }
  return key as JWK;
}

/** Checks a parsed JWKS document: at least one key, each an asymmetric public signing key. */
export function validateJwks(value: unknown): JSONWebKeySet {
  if (!isObject(value)) throw new JwksError("", 'must be a JSON object with a "keys" array');
  const { keys } = value;
  if (!Array.isArray(keys)) throw new JwksError("keys", "must be an array");
  if (keys.length === 0) throw new JwksError("keys", "must hold at least one key");
  return { keys: keys.map((key, index) => validateKey(key, `keys[${index}]`)) };
}

/** Parses and checks the text of a JWKS file; a JwksError says what is wrong and where. */
export function parseJwks(text: string): JSONWebKeySet {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new JwksError("", `is not valid JSON: ${(error as Error).message.replace(/\s+/g, " ")}`);
  }
  return validateJwks(value);
}

export interface JwksFileOptions {
  readonly file: string;
  /** The file is looked at (one small read) at most this often; 0 looks on every verification. */
  readonly reloadIntervalMs: number;
  readonly now: () => number;
  readonly onReload?: ((keyCount: number) => void) | undefined;
  /** A changed file that cannot be used: the keys in use stay. */
  readonly onReloadError?: ((error: Error) => void) | undefined;
}

export interface JwksFileKeys {
  /** For jose's jwtVerify: looks at the file first if the interval has passed. */
  readonly getKey: JWTVerifyGetKey;
  /** Looks at the file now, whatever the interval. */
  refresh(): Promise<void>;
}

/**
 * Reads the file at once (a bad file throws here, at start-up), then looks at
 * it again lazily, on a token's verification, once the interval has passed
 * on the injected clock: changed content is parsed and, if valid, replaces
 * the keys. Concurrent verifications share one look.
 *
 * The look compares content, not mtime and size: file times move in coarse
 * steps (a few ms), so a key rewritten to the same size right after the last
 * look could keep both, and a JWKS is small enough to read every time.
 */
export function createJwksFileKeys(options: JwksFileOptions): JwksFileKeys {
  const { file, reloadIntervalMs, now } = options;
  let text = readFileSync(file, "utf8");
  let keys = createLocalJWKSet(parseJwks(text));
  let lookedAt = now();
  let looking: Promise<void> | undefined;

  async function look(): Promise<void> {
    lookedAt = now();
    try {
      const seen = await readFile(file, "utf8");
      if (seen === text) return;
      // Remember the text even if it is bad: a file caught half-written changes again when complete.
      text = seen;
      const jwks = parseJwks(seen);
      keys = createLocalJWKSet(jwks);
      options.onReload?.(jwks.keys.length);
    } catch (error) {
      options.onReloadError?.(error instanceof Error ? error : new Error(String(error)));
    }
  }

  function refresh(): Promise<void> {
    looking ??= look().finally(() => {
      looking = undefined;
    });
    return looking;
  }

  return {
    getKey: async (header, token) => {
      // A look under way counts as due: calls arriving during it wait for its keys.
      if (looking !== undefined || now() - lookedAt >= reloadIntervalMs) await refresh();
      return keys(header, token);
    },
    refresh,
  };
}
