/**
 * Keys, tokens and files for the auth tests: jose makes real RSA keys and
 * signed tokens; files go in a fresh directory under os.tmpdir(). The clock
 * is a number the test moves, never the wall clock.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import type { AuthRequest } from "../../src/auth/index.js";

export const ISSUER = "https://auth.example.test";
export const AUDIENCE = "delivery-service";
/** 2030-01-01T00:00:00Z, in ms: what the injected clock reads unless a test moves it. */
export const NOW_MS = Date.UTC(2030, 0, 1);
export const NOW_S = NOW_MS / 1000;

export const METHODS = {
  command: "delivery.v1.DeliveryService/CreateDelivery",
  read: "delivery.v1.DeliveryService/GetDelivery",
  watch: "delivery.v1.DeliveryService/WatchDelivery",
  health: "grpc.health.v1.Health/Check",
  reflection: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
} as const;
export type MethodKind = keyof typeof METHODS;

export interface SigningKey {
  readonly kid: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  /** The public key as PEM (SPKI): what an attacker would use as an HMAC secret. */
  readonly publicPem: string;
}

export async function rsaKey(kid: string): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" }, publicPem: await exportSPKI(publicKey) };
}

export function jwksOf(...keys: readonly SigningKey[]): string {
  return JSON.stringify({ keys: keys.map((key) => key.publicJwk) });
}

export interface Claims extends JWTPayload {
  readonly scope?: string;
}

/** Claims that pass every check at NOW: override what the test is about. */
export function claims(overrides: Claims = {}): Claims {
  return { sub: "alice", iss: ISSUER, aud: AUDIENCE, iat: NOW_S - 60, exp: NOW_S + 3600, ...overrides };
}

export function sign(key: SigningKey, payload: Claims, kid: string = key.kid): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: "RS256", kid, typ: "JWT" }).sign(key.privateKey);
}

export function signHmac(secret: Uint8Array | string, payload: Claims, alg = "HS256"): Promise<string> {
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(payload).setProtectedHeader({ alg, typ: "JWT" }).sign(bytes);
}

export function unsigned(payload: Claims): string {
  return new UnsecuredJWT(payload).encode();
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}

export function request(method: string, authorization?: string | readonly string[], peerCertificate?: AuthRequest["peerCertificate"]): AuthRequest {
  return { method, authorization, peerCertificate };
}

export interface TempDir {
  readonly dir: string;
  /** Writes a file (replacing it) and returns its path. */
  write(name: string, content: string | Uint8Array): string;
  remove(): void;
}

export function tempDir(): TempDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), "delivery-auth-"));
  return {
    dir,
    write(name, content) {
      const file = path.join(dir, name);
      writeFileSync(file, content);
      return file;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface TestClock {
  readonly now: () => number;
  advance(ms: number): void;
}

export function testClock(start = NOW_MS): TestClock {
  let at = start;
  return {
    now: () => at,
    advance: (ms) => {
      at += ms;
    },
  };
}

export const TEST_POLICY = {
  name: "delivery-service-test",
  deny_rules: [{ name: "no-mallory", principals: ["sub:mallory"], methods: ["*"] }],
  allow_rules: [
    { name: "writers", principals: ["scope:deliveries.write"], methods: ["delivery.v1.DeliveryService/*"] },
    {
      name: "readers",
      principals: ["scope:deliveries.read"],
      methods: [
        "delivery.v1.DeliveryService/GetDelivery",
        "delivery.v1.DeliveryService/ListDeliveries",
        "delivery.v1.DeliveryService/ListDeliveryEvents",
        "delivery.v1.DeliveryService/WatchDelivery",
        "delivery.v1.DeliveryService/WatchDeliveries",
      ],
    },
    { name: "dispatcher", principals: ["cert:spiffe://example.org/ns/ops/sa/dispatcher"], methods: ["delivery.v1.DeliveryService/*"] },
    { name: "reporting", principals: ["cert:CN=reporting"], methods: ["delivery.v1.DeliveryService/GetDelivery", "delivery.v1.DeliveryService/WatchDelivery"] },
  ],
};
