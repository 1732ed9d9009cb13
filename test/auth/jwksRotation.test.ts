/**
 * The JWKS file is re-read once the reload interval has passed on the
 * injected clock: a rotated key takes over, the old one stops working, and a
 * broken rewrite leaves the keys in use alone.
 */
import { writeFileSync } from "node:fs";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAuthenticator, JwksError, parseAuthConfig, type Authenticator } from "../../src/auth/index.js";
import {
  AUDIENCE,
  bearer,
  claims,
  ISSUER,
  jwksOf,
  METHODS,
  request,
  rsaKey,
  sign,
  type SigningKey,
  type TempDir,
  TEST_POLICY,
  tempDir,
  type TestClock,
  testClock,
} from "./authSupport.js";

const RELOAD_INTERVAL_MS = 5_000;

let files: TempDir;
let jwksFile: string;
let clock: TestClock;
let keyA: SigningKey;
let keyB: SigningKey;
let tokenA: string;
let tokenB: string;
let reloads: number[];
let reloadErrors: Error[];
let authenticator: Authenticator;

async function outcome(token: string): Promise<string> {
  const check = await authenticator.check(request(METHODS.read, bearer(token)));
  return check.outcome === "unauthenticated" ? check.reason : check.outcome;
}

beforeAll(async () => {
  [keyA, keyB] = await Promise.all([rsaKey("key-a"), rsaKey("key-b")]);
  tokenA = await sign(keyA, claims({ scope: "deliveries.read" }));
  tokenB = await sign(keyB, claims({ scope: "deliveries.read" }));
});

beforeEach(() => {
  files = tempDir();
  clock = testClock();
  jwksFile = files.write("keys.json", jwksOf(keyA));
  reloads = [];
  reloadErrors = [];
  const config = parseAuthConfig({
    AUTH_JWKS_FILE: jwksFile,
    AUTH_JWKS_RELOAD_INTERVAL_MS: String(RELOAD_INTERVAL_MS),
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_POLICY_FILE: files.write("policy.json", JSON.stringify(TEST_POLICY)),
  });
  authenticator = createAuthenticator(config, {
    now: clock.now,
    onJwksReload: (count) => reloads.push(count),
    onJwksReloadError: (error) => reloadErrors.push(error),
  });
});

afterEach(() => files.remove());

describe("JWKS rotation", () => {
  it("trusts key A before the rotation", async () => {
    expect([await outcome(tokenA), await outcome(tokenB)]).toEqual(["allowed", "TOKEN_INVALID"]);
  });

  it("trusts key B and no longer key A once the interval has passed", async () => {
    writeFileSync(jwksFile, jwksOf(keyB));
    clock.advance(RELOAD_INTERVAL_MS);

    expect([await outcome(tokenB), await outcome(tokenA)]).toEqual(["allowed", "TOKEN_INVALID"]);
    expect(reloads).toEqual([1]);
  });

  it("keeps key A until the interval has passed", async () => {
    writeFileSync(jwksFile, jwksOf(keyB));
    clock.advance(RELOAD_INTERVAL_MS - 1);

    expect([await outcome(tokenA), await outcome(tokenB)]).toEqual(["allowed", "TOKEN_INVALID"]);
    expect(reloads).toEqual([]);
  });

  it("trusts both during an overlap, when the file holds both", async () => {
    writeFileSync(jwksFile, jwksOf(keyA, keyB));
    clock.advance(RELOAD_INTERVAL_MS);

    expect([await outcome(tokenA), await outcome(tokenB)]).toEqual(["allowed", "allowed"]);
    expect(reloads).toEqual([2]);
  });

  it("does not count an unchanged file as a reload", async () => {
    clock.advance(RELOAD_INTERVAL_MS);

    expect(await outcome(tokenA)).toBe("allowed");
    expect(reloads).toEqual([]);
  });

  it("keeps the keys in use when the rewritten file is broken, and says why", async () => {
    writeFileSync(jwksFile, '{"keys": [');
    clock.advance(RELOAD_INTERVAL_MS);

    expect(await outcome(tokenA)).toBe("allowed");
    expect(reloadErrors).toHaveLength(1);
    expect(reloadErrors[0]).toBeInstanceOf(JwksError);
  });

  it("reports a broken file once, not on every interval", async () => {
    writeFileSync(jwksFile, "not json");
    clock.advance(RELOAD_INTERVAL_MS);
    await outcome(tokenA);
    clock.advance(RELOAD_INTERVAL_MS);
    await outcome(tokenA);

    expect(reloadErrors).toHaveLength(1);
  });

  it("takes the file once it is fixed after a broken write", async () => {
    writeFileSync(jwksFile, "not json");
    clock.advance(RELOAD_INTERVAL_MS);
    await outcome(tokenA);
    writeFileSync(jwksFile, jwksOf(keyB));
    clock.advance(RELOAD_INTERVAL_MS);

    expect([await outcome(tokenB), await outcome(tokenA)]).toEqual(["allowed", "TOKEN_INVALID"]);
  });

  it("keeps the keys in use while the file is missing", async () => {
    files.remove();
    clock.advance(RELOAD_INTERVAL_MS);

    expect(await outcome(tokenA)).toBe("allowed");
    expect(reloadErrors).toHaveLength(1);
  });

  it("looks at the file once for concurrent calls", async () => {
    writeFileSync(jwksFile, jwksOf(keyB));
    clock.advance(RELOAD_INTERVAL_MS);

    const outcomes = await Promise.all([outcome(tokenB), outcome(tokenB), outcome(tokenB)]);

    expect(outcomes).toEqual(["allowed", "allowed", "allowed"]);
    expect(reloads).toEqual([1]);
  });
});
