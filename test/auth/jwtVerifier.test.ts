/**
 * Token checks one at a time: clock tolerance, required claims, scopes, HMAC
 * mode, other key types, several keys that fit. Verifier built from a config
 * object; the clock is injected.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { exportJWK, exportPKCS8, generateKeyPair, importPKCS8, SignJWT } from "jose";
import { createJwtVerifier, type JwtConfig, type JwtVerifier, MAX_TOKEN_LENGTH, secretBytes } from "../../src/auth/index.js";
import { AUDIENCE, claims, ISSUER, jwksOf, NOW_S, rsaKey, sign, signHmac, type SigningKey, type TempDir, tempDir, testClock } from "./authSupport.js";

const SECRET = "0123456789abcdef0123456789abcdef-test-only";

let files: TempDir;
let key: SigningKey;
let jwks: JwtVerifier;
let hmac: JwtVerifier;

function config(keys: JwtConfig["keys"]): JwtConfig {
  return { keys, issuer: ISSUER, audience: AUDIENCE, clockToleranceS: 30 };
}

beforeAll(async () => {
  files = tempDir();
  key = await rsaKey("key-a");
  const { now } = testClock();
  jwks = createJwtVerifier(config({ kind: "jwks", file: files.write("keys.json", jwksOf(key)), reloadIntervalMs: 10_000 }), { now });
  hmac = createJwtVerifier(config({ kind: "hmac", file: "secret", secret: secretBytes(new TextEncoder().encode(SECRET)) }), { now });
});

afterAll(() => files.remove());

async function reasonOf(verifier: JwtVerifier, token: string): Promise<string> {
  const result = await verifier.verify(token);
  return result.ok ? "ok" : result.reason;
}

describe("exp and nbf, with 30 s of tolerance", () => {
  it.each([
    ["expired 29 s ago", { exp: NOW_S - 29 }, "ok"],
    ["expired 31 s ago", { exp: NOW_S - 31 }, "TOKEN_EXPIRED"],
    ["valid from 29 s from now", { nbf: NOW_S + 29 }, "ok"],
    ["valid from 31 s from now", { nbf: NOW_S + 31 }, "TOKEN_NOT_YET_VALID"],
  ])("a token %s: %s", async (_name, overrides, expected) => {
    expect(await reasonOf(jwks, await sign(key, claims(overrides)))).toBe(expected);
  });

  it("reads the injected clock, not the wall clock", async () => {
    const clock = testClock();
    const verifier = createJwtVerifier(config({ kind: "jwks", file: files.write("clock.json", jwksOf(key)), reloadIntervalMs: 10_000 }), clock);
    const token = await sign(key, claims({ exp: NOW_S + 60 }));

    expect(await reasonOf(verifier, token)).toBe("ok");
    clock.advance(91_000);
    expect(await reasonOf(verifier, token)).toBe("TOKEN_EXPIRED");
  });
});

describe("claims", () => {
  it.each([
    ["without exp", { exp: undefined }, "TOKEN_INVALID"],
    ["without sub", { sub: undefined }, "TOKEN_INVALID"],
    ["with an empty sub", { sub: "" }, "TOKEN_INVALID"],
    ["without iss", { iss: undefined }, "WRONG_ISSUER"],
    ["without aud", { aud: undefined }, "WRONG_AUDIENCE"],
    ["with our audience among others", { aud: ["billing-service", AUDIENCE] }, "ok"],
    ["with a scope that is not a string", { scope: 7 as never }, "TOKEN_INVALID"],
    ["with an scp that is not strings", { scp: [1, 2] }, "TOKEN_INVALID"],
  ])("a token %s: %s", async (_name, overrides, expected) => {
    expect(await reasonOf(jwks, await sign(key, claims(overrides)))).toBe(expected);
  });

  it.each([
    ["a space-separated scope", { scope: "deliveries.read  deliveries.write" }, ["deliveries.read", "deliveries.write"]],
    ["an scp array", { scp: ["deliveries.read", "deliveries.write"] }, ["deliveries.read", "deliveries.write"]],
    ["an scp string", { scp: "deliveries.read" }, ["deliveries.read"]],
    ["both, overlapping", { scope: "deliveries.read", scp: ["deliveries.read", "deliveries.write"] }, ["deliveries.read", "deliveries.write"]],
    ["neither", {}, []],
  ])("reads scopes from %s", async (_name, overrides, scopes) => {
    const result = await jwks.verify(await sign(key, claims(overrides)));

    expect(result).toMatchObject({ ok: true, principal: { scopes } });
  });

  it("refuses a token longer than the limit before parsing it", async () => {
    const result = await jwks.verify("a".repeat(MAX_TOKEN_LENGTH + 1));

    expect(result).toMatchObject({ ok: false, reason: "TOKEN_INVALID" });
  });
});

describe("with an HMAC secret", () => {
  it.each(["HS256", "HS384", "HS512"])("accepts %s", async (alg) => {
    expect(await reasonOf(hmac, await signHmac(SECRET, claims(), alg))).toBe("ok");
  });

  it("refuses another secret's signature", async () => {
    expect(await reasonOf(hmac, await signHmac(`${SECRET}-other`, claims()))).toBe("TOKEN_INVALID");
  });

  it("refuses an RS256 token", async () => {
    expect(await reasonOf(hmac, await sign(key, claims()))).toBe("TOKEN_INVALID");
  });
});

describe("with a JWKS", () => {
  it("accepts an ES256 key and token", async () => {
    const { publicKey, privateKey } = await generateKeyPair("ES256");
    const file = files.write("ec.json", JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "ec" }] }));
    const verifier = createJwtVerifier(config({ kind: "jwks", file, reloadIntervalMs: 10_000 }), testClock());
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "ES256", kid: "ec" }).sign(privateKey);

    expect(await reasonOf(verifier, token)).toBe("ok");
  });

  it("refuses a PS256 token when the key says RS256", async () => {
    const sameKeyForPss = await importPKCS8(await exportPKCS8(key.privateKey), "PS256");
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "PS256", kid: key.kid }).sign(sameKeyForPss);

    expect(await jwks.verify(token)).toMatchObject({ ok: false, reason: "TOKEN_INVALID", detail: "ERR_JWKS_NO_MATCHING_KEY" });
  });

  it("tries each key that fits a token without kid", async () => {
    const other = await rsaKey("key-b");
    const strip = (k: SigningKey) => ({ ...k, publicJwk: { ...k.publicJwk, kid: undefined } });
    const file = files.write("two.json", jwksOf(strip(other), strip(key)));
    const verifier = createJwtVerifier(config({ kind: "jwks", file, reloadIntervalMs: 10_000 }), testClock());
    const token = await new SignJWT(claims()).setProtectedHeader({ alg: "RS256" }).sign(key.privateKey);
    const stranger = await new SignJWT(claims()).setProtectedHeader({ alg: "RS256" }).sign((await rsaKey("x")).privateKey);

    expect(await reasonOf(verifier, token)).toBe("ok");
    expect(await reasonOf(verifier, stranger)).toBe("TOKEN_INVALID");
  });
});
