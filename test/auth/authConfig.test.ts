/**
 * parseAuthConfig(env): off by default, every file read and checked at once,
 * and one ConfigError line naming the variable (and the file) for anything
 * it cannot use.
 */
import { generateKeyPairSync } from "node:crypto";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { createAuthenticator, parseAuthConfig } from "../../src/auth/index.js";
import { AUDIENCE, bearer, claims, ISSUER, jwksOf, METHODS, request, rsaKey, signHmac, type SigningKey, type TempDir, TEST_POLICY, tempDir, testClock } from "./authSupport.js";

const SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";

let files: TempDir;
let key: SigningKey;
let jwksFile: string;
let policyFile: string;
let hmacFile: string;

beforeAll(async () => {
  files = tempDir();
  key = await rsaKey("key-a");
  jwksFile = files.write("keys.json", jwksOf(key));
  policyFile = files.write("policy.json", JSON.stringify(TEST_POLICY));
  hmacFile = files.write("secret", `${SECRET}\n`);
});

afterAll(() => files.remove());

function jwksEnv(overrides: Record<string, string | undefined> = {}) {
  return { AUTH_JWKS_FILE: jwksFile, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, AUTH_POLICY_FILE: policyFile, ...overrides };
}

function messageOf(env: Record<string, string | undefined>): string {
  try {
    parseAuthConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    expect(error.message).not.toContain("\n");
    return error.message;
  }
  throw new Error("the configuration was accepted");
}

describe("parseAuthConfig: off by default", () => {
  it("is off with nothing set", () => {
    expect(parseAuthConfig({})).toEqual({ enabled: false });
  });

  it("treats empty variables as unset", () => {
    expect(parseAuthConfig({ AUTH_JWKS_FILE: "", AUTH_ISSUER: "", AUTH_POLICY_FILE: "", AUTH_CLIENT_CERTIFICATES: "" })).toEqual({ enabled: false });
  });

  it("is off with AUTH_CLIENT_CERTIFICATES=false", () => {
    expect(parseAuthConfig({ AUTH_CLIENT_CERTIFICATES: "false" })).toEqual({ enabled: false });
  });
});

describe("parseAuthConfig accepts", () => {
  it("a JWKS file, with the defaults", () => {
    expect(parseAuthConfig(jwksEnv())).toMatchObject({
      enabled: true,
      jwt: { keys: { kind: "jwks", file: jwksFile, reloadIntervalMs: 10_000 }, issuer: ISSUER, audience: AUDIENCE, clockToleranceS: 30 },
      clientCertificates: false,
      policyFile,
      policy: { name: TEST_POLICY.name },
      streamMaxMs: 0,
    });
  });

  it("a longest stream life", () => {
    expect(parseAuthConfig(jwksEnv({ AUTH_STREAM_MAX_MS: "600000" }))).toMatchObject({ streamMaxMs: 600_000 });
  });

  it("as part of loadConfig, off by default", () => {
    expect(loadConfig({}).auth).toEqual({ enabled: false });
    expect(loadConfig(jwksEnv()).auth).toMatchObject({ enabled: true, policyFile });
  });

  it("tolerance and reload interval", () => {
    expect(parseAuthConfig(jwksEnv({ AUTH_CLOCK_TOLERANCE_S: "5", AUTH_JWKS_RELOAD_INTERVAL_MS: "0" }))).toMatchObject({
      jwt: { clockToleranceS: 5, keys: { reloadIntervalMs: 0 } },
    });
  });

  it("client certificates alone, with mutual TLS", () => {
    expect(parseAuthConfig({ AUTH_CLIENT_CERTIFICATES: "true", TLS_CLIENT_CA_FILE: "/ca.pem", AUTH_POLICY_FILE: policyFile })).toMatchObject({
      enabled: true,
      jwt: undefined,
      clientCertificates: true,
    });
  });

  it("an HMAC secret file, dropping its final newline", async () => {
    const config = parseAuthConfig({ AUTH_HMAC_SECRET_FILE: hmacFile, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, AUTH_POLICY_FILE: policyFile });
    const authenticator = createAuthenticator(config, { now: testClock().now });
    const token = await signHmac(SECRET, claims({ scope: "deliveries.read" }));

    expect(await authenticator.check(request(METHODS.read, bearer(token)))).toMatchObject({ outcome: "allowed" });
  });

  it("keeps the HMAC secret out of logs and JSON", () => {
    const config = parseAuthConfig({ AUTH_HMAC_SECRET_FILE: hmacFile, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, AUTH_POLICY_FILE: policyFile });

    expect(JSON.stringify(config)).not.toContain(SECRET);
    expect(inspect(config, { depth: 10 })).not.toContain(SECRET);
  });
});

describe("parseAuthConfig refuses", () => {
  const missing = "/nonexistent/delivery-auth/file.json";

  it.each([
    ["a policy with no way to identify callers", () => ({ AUTH_POLICY_FILE: policyFile }), "AUTH_POLICY_FILE needs a way to identify callers: AUTH_JWKS_FILE, AUTH_HMAC_SECRET_FILE or AUTH_CLIENT_CERTIFICATES=true"],
    ["an issuer without keys", () => ({ AUTH_ISSUER: ISSUER }), "AUTH_ISSUER needs AUTH_JWKS_FILE or AUTH_HMAC_SECRET_FILE"],
    ["a reload interval without a JWKS", () => ({ AUTH_HMAC_SECRET_FILE: hmacFile, AUTH_JWKS_RELOAD_INTERVAL_MS: "5" }), "AUTH_JWKS_RELOAD_INTERVAL_MS needs AUTH_JWKS_FILE"],
    ["both a JWKS and a secret", () => jwksEnv({ AUTH_HMAC_SECRET_FILE: hmacFile }), "AUTH_JWKS_FILE and AUTH_HMAC_SECRET_FILE cannot both be set: choose public keys or a shared secret"],
    ["a JWKS without issuer", () => jwksEnv({ AUTH_ISSUER: undefined }), "AUTH_ISSUER is required with AUTH_JWKS_FILE: the exact iss of trusted tokens"],
    ["a secret without audience", () => ({ AUTH_HMAC_SECRET_FILE: hmacFile, AUTH_ISSUER: ISSUER }), "AUTH_AUDIENCE is required with AUTH_HMAC_SECRET_FILE: the aud tokens for this service carry"],
    ["a tolerance that is not a number", () => jwksEnv({ AUTH_CLOCK_TOLERANCE_S: "30s" }), 'AUTH_CLOCK_TOLERANCE_S must be an integer from 0 to 300 s, got "30s"'],
    ["a tolerance too large", () => jwksEnv({ AUTH_CLOCK_TOLERANCE_S: "301" }), 'AUTH_CLOCK_TOLERANCE_S must be an integer from 0 to 300 s, got "301"'],
    ["a certificate switch that is not a boolean", () => ({ AUTH_CLIENT_CERTIFICATES: "yes" }), 'AUTH_CLIENT_CERTIFICATES must be true or false, got "yes"'],
    ["certificates without mutual TLS", () => ({ AUTH_CLIENT_CERTIFICATES: "true", AUTH_POLICY_FILE: policyFile }), "AUTH_CLIENT_CERTIFICATES=true needs mutual TLS: set TLS_CLIENT_CA_FILE (with TLS_CERT_FILE and TLS_KEY_FILE)"],
    ["authentication without a policy", () => jwksEnv({ AUTH_POLICY_FILE: undefined }), "AUTH_POLICY_FILE is required when authentication is on: without it no method could be allowed"],
    ["an unreadable JWKS file", () => jwksEnv({ AUTH_JWKS_FILE: missing }), `AUTH_JWKS_FILE cannot be read: ENOENT (${missing})`],
    ["an unreadable secret file", () => jwksEnv({ AUTH_JWKS_FILE: undefined, AUTH_HMAC_SECRET_FILE: missing }), `AUTH_HMAC_SECRET_FILE cannot be read: ENOENT (${missing})`],
    ["an unreadable policy file", () => jwksEnv({ AUTH_POLICY_FILE: missing }), `AUTH_POLICY_FILE cannot be read: ENOENT (${missing})`],
    ["a stream limit without authentication", () => ({ AUTH_STREAM_MAX_MS: "1000" }), "AUTH_STREAM_MAX_MS needs a way to identify callers: AUTH_JWKS_FILE, AUTH_HMAC_SECRET_FILE or AUTH_CLIENT_CERTIFICATES=true"],
    ["a stream limit that is not a number", () => jwksEnv({ AUTH_STREAM_MAX_MS: "10m" }), 'AUTH_STREAM_MAX_MS must be an integer from 0 to 604800000 ms, got "10m"'],
  ])("%s", (_name, env, message) => {
    expect(messageOf(env())).toBe(message);
  });

  it("a short secret, saying its length and not its content", () => {
    const file = files.write("short-secret", "hunter2");

    expect(messageOf(jwksEnv({ AUTH_JWKS_FILE: undefined, AUTH_HMAC_SECRET_FILE: file }))).toBe(`AUTH_HMAC_SECRET_FILE must hold at least 32 bytes, it holds 7 (${file})`);
  });

  it("a policy file that is not JSON", () => {
    const file = files.write("broken-policy.json", '{ "name": "p",\n "allow_rules": [ }');

    expect(messageOf(jwksEnv({ AUTH_POLICY_FILE: file }))).toMatch(new RegExp(`^AUTH_POLICY_FILE is not valid JSON: .+ \\(${file}\\)$`));
  });

  it("a policy file with a bad part, naming where", () => {
    const file = files.write("bad-policy.json", JSON.stringify({ name: "p", allow_rules: [{ name: "r", principals: ["*"], methods: ["GetDelivery"] }] }));

    expect(messageOf(jwksEnv({ AUTH_POLICY_FILE: file }))).toBe(
      `AUTH_POLICY_FILE is invalid at allow_rules[0].methods[0]: "GetDelivery" is not a method: expected "*", "<package.Service>/*" or "<package.Service>/<Method>" (${file})`,
    );
  });

  it("a JWKS file that is not JSON", () => {
    const file = files.write("broken.json", "{");

    expect(messageOf(jwksEnv({ AUTH_JWKS_FILE: file }))).toMatch(new RegExp(`^AUTH_JWKS_FILE is not valid JSON: .+ \\(${file}\\)$`));
  });

  const weakRsa = () => generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "jwk" });
  const ecPublic = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });

  it.each([
    ["no keys array", () => ({}), "keys: must be an array"],
    ["no keys", () => ({ keys: [] }), "keys: must hold at least one key"],
    ["a shared secret", () => ({ keys: [key.publicJwk, { kty: "oct", k: "c2VjcmV0" }] }), 'keys[1].kty: a shared secret (kty "oct") cannot be in a JWKS; use AUTH_HMAC_SECRET_FILE for HMAC'],
    ["a private key", () => ({ keys: [generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" })] }), "keys[0]: is a private key; the JWKS file must hold public keys only"],
    ["an RSA key under 2048 bits", () => ({ keys: [weakRsa()] }), "keys[0]: RSA keys must have at least 2048 bits, got 1024"],
    ["an HS algorithm on an RSA key", () => ({ keys: [{ ...key.publicJwk, alg: "HS256" }] }), 'keys[0].alg: must be one of RS256, RS384, RS512, PS256, PS384, PS512 for kty RSA, got "HS256"'],
    ["an alg that does not fit the curve", () => ({ keys: [{ ...ecPublic(), alg: "ES384" }] }), 'keys[0].alg: P-256 keys sign with ES256, got "ES384"'],
    ["an encryption key", () => ({ keys: [{ ...key.publicJwk, use: "enc" }] }), 'keys[0].use: must be "sig" for a signing key, got "enc"'],
    ["a broken RSA key", () => ({ keys: [{ kty: "RSA", e: "AQAB" }] }), "keys[0]: is not a valid RSA public key"],
    ["an X25519 key", () => ({ keys: [generateKeyPairSync("x25519").publicKey.export({ format: "jwk" })] }), 'keys[0].crv: must be Ed25519 for an OKP signing key, got "X25519"'],
  ])("a JWKS with %s, naming where", (_name, document, problem) => {
    const file = files.write("bad-keys.json", JSON.stringify(document()));

    expect(messageOf(jwksEnv({ AUTH_JWKS_FILE: file }))).toBe(`AUTH_JWKS_FILE is invalid at ${problem} (${file})`);
  });
});
