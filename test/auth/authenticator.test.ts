/**
 * createAuthenticator(...).check(): every kind of credential against a
 * command, a read, a watch, health and reflection, with the exact outcome and
 * reason. Real RSA keys and tokens; a JWKS file and client certificates both on.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { actorOf, type AuthCheck, type Authenticator, createAuthenticator, parseAuthConfig } from "../../src/auth/index.js";
import type { PeerCertificateLike } from "../../src/auth/index.js";
import {
  AUDIENCE,
  bearer,
  claims,
  ISSUER,
  METHODS,
  type MethodKind,
  NOW_S,
  request,
  rsaKey,
  sign,
  signHmac,
  type SigningKey,
  type TempDir,
  TEST_POLICY,
  tempDir,
  testClock,
  unsigned,
  jwksOf,
} from "./authSupport.js";

/** One line per outcome, so a table row states exactly what is expected. */
function summary(check: AuthCheck): string {
  switch (check.outcome) {
    case "open":
      return "open";
    case "allowed":
      return `allowed by ${check.rule}`;
    case "unauthenticated":
      return `unauthenticated ${check.reason}`;
    case "denied":
      return `denied ${check.reason}${check.metadata.rule ? ` by ${check.metadata.rule}` : ""}`;
  }
}

const DISPATCHER_SPIFFE = "spiffe://example.org/ns/ops/sa/dispatcher";

interface Credential {
  readonly authorization?: string;
  readonly peerCertificate?: PeerCertificateLike;
}

let files: TempDir;
let key: SigningKey;
let authenticator: Authenticator;
const credentials = new Map<string, Credential>();

beforeAll(async () => {
  files = tempDir();
  key = await rsaKey("key-a");
  const impostor = await rsaKey("key-a");
  const env = {
    AUTH_JWKS_FILE: files.write("keys.json", jwksOf(key)),
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_CLIENT_CERTIFICATES: "true",
    TLS_CLIENT_CA_FILE: "/not/read/here/ca.pem",
    AUTH_POLICY_FILE: files.write("policy.json", JSON.stringify(TEST_POLICY)),
  };
  authenticator = createAuthenticator(parseAuthConfig(env), { now: testClock().now });

  const write = "deliveries.write";
  const read = "deliveries.read";
  credentials.set("no credential", {});
  credentials.set("malformed header", { authorization: "Basic YWxpY2U6c2VjcmV0" });
  credentials.set("expired", { authorization: bearer(await sign(key, claims({ scope: write, exp: NOW_S - 31 }))) });
  credentials.set("not yet valid", { authorization: bearer(await sign(key, claims({ scope: write, nbf: NOW_S + 31 }))) });
  credentials.set("wrong audience", { authorization: bearer(await sign(key, claims({ scope: write, aud: "billing-service" }))) });
  credentials.set("wrong issuer", { authorization: bearer(await sign(key, claims({ scope: write, iss: "https://evil.example.test" }))) });
  credentials.set("bad signature", { authorization: bearer(await sign(impostor, claims({ scope: write }))) });
  credentials.set("alg none", { authorization: bearer(unsigned(claims({ scope: write }))) });
  credentials.set("HS256 signed with the RSA public key", { authorization: bearer(await signHmac(key.publicPem, claims({ scope: write }))) });
  credentials.set("reader", { authorization: bearer(await sign(key, claims({ sub: "rita", scope: read }))) });
  credentials.set("writer", { authorization: bearer(await sign(key, claims({ sub: "walt", scope: `${read} ${write}` }))) });
  credentials.set("denied principal", { authorization: bearer(await sign(key, claims({ sub: "mallory", scope: write }))) });
  credentials.set("certificate SPIFFE identity", {
    peerCertificate: { subject: { CN: "dispatcher" }, subjectaltname: `DNS:dispatcher.ops.svc, URI:${DISPATCHER_SPIFFE}` },
  });
  credentials.set("certificate CN", { peerCertificate: { subject: { CN: "reporting" }, subjectaltname: "DNS:reporting.example.test" } });
  credentials.set("two SPIFFE SANs", {
    peerCertificate: { subject: { CN: "dispatcher" }, subjectaltname: `URI:${DISPATCHER_SPIFFE}, URI:spiffe://example.org/ns/ops/sa/other` },
  });
});

afterAll(() => files.remove());

const OPEN = { health: "open", reflection: "open" } as const;
const everywhere = (outcome: string) => ({ command: outcome, read: outcome, watch: outcome, ...OPEN });

const TABLE: Record<string, Record<MethodKind, string>> = {
  "no credential": everywhere("unauthenticated CREDENTIALS_MISSING"),
  "malformed header": everywhere("unauthenticated CREDENTIALS_MALFORMED"),
  expired: everywhere("unauthenticated TOKEN_EXPIRED"),
  "not yet valid": everywhere("unauthenticated TOKEN_NOT_YET_VALID"),
  "wrong audience": everywhere("unauthenticated WRONG_AUDIENCE"),
  "wrong issuer": everywhere("unauthenticated WRONG_ISSUER"),
  "bad signature": everywhere("unauthenticated TOKEN_INVALID"),
  "alg none": everywhere("unauthenticated TOKEN_INVALID"),
  "HS256 signed with the RSA public key": everywhere("unauthenticated TOKEN_INVALID"),
  reader: { command: "denied METHOD_NOT_ALLOWED", read: "allowed by readers", watch: "allowed by readers", ...OPEN },
  writer: everywhere("allowed by writers"),
  "denied principal": everywhere("denied DENIED_BY_RULE by no-mallory"),
  "certificate SPIFFE identity": everywhere("allowed by dispatcher"),
  "certificate CN": { command: "denied METHOD_NOT_ALLOWED", read: "allowed by reporting", watch: "allowed by reporting", ...OPEN },
  "two SPIFFE SANs": everywhere("unauthenticated CERTIFICATE_IDENTITY_INVALID"),
};

const ROWS = Object.entries(TABLE).flatMap(([credential, outcomes]) =>
  (Object.keys(METHODS) as MethodKind[]).map((kind) => ({ credential, kind, expected: outcomes[kind]! })),
);

describe("check: credential × method", () => {
  it.each(ROWS)("$credential calling a $kind: $expected", async ({ credential, kind, expected }) => {
    const { authorization, peerCertificate } = credentials.get(credential)!;

    const check = await authenticator.check(request(METHODS[kind], authorization, peerCertificate));

    expect(summary(check)).toBe(expected);
  });
});

describe("check: refusals for the right cause", () => {
  it.each([
    ["bad signature", "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"],
    ["alg none", "ERR_JOSE_ALG_NOT_ALLOWED"],
    ["HS256 signed with the RSA public key", "ERR_JOSE_ALG_NOT_ALLOWED"],
  ])("%s: %s", async (credential, detail) => {
    const check = await authenticator.check(request(METHODS.read, credentials.get(credential)!.authorization));

    expect(check).toMatchObject({ outcome: "unauthenticated", reason: "TOKEN_INVALID", detail });
  });
});

describe("check: what the outcomes carry", () => {
  it("gives an allowed JWT caller's sub, scopes and expiry", async () => {
    const check = await authenticator.check(request(METHODS.read, credentials.get("writer")!.authorization));

    expect(check).toEqual({
      outcome: "allowed",
      rule: "writers",
      principal: { kind: "jwt", id: "walt", sub: "walt", scopes: ["deliveries.read", "deliveries.write"], expiresAt: (NOW_S + 3600) * 1000 },
    });
  });

  it("names the deny rule and the method in the metadata", async () => {
    const check = await authenticator.check(request(METHODS.command, credentials.get("denied principal")!.authorization));

    expect(check).toMatchObject({ outcome: "denied", metadata: { rule: "no-mallory", method: METHODS.command }, principal: { sub: "mallory" } });
  });

  it("gives a certificate caller its SPIFFE ID and no scopes", async () => {
    const check = await authenticator.check(request(METHODS.command, undefined, credentials.get("certificate SPIFFE identity")!.peerCertificate));

    expect(check).toMatchObject({ outcome: "allowed", principal: { kind: "certificate", id: DISPATCHER_SPIFFE, scopes: [] } });
  });

  it.each([...credentials.entries()].filter(([, c]) => c.authorization?.startsWith("Bearer ")))(
    "repeats nothing of the token in a refusal (%s)",
    async (_name, { authorization }) => {
      const check = await authenticator.check(request(METHODS.command, authorization));
      const token = authorization!.slice("Bearer ".length);
      const said = JSON.stringify(check);

      for (const part of token.split(".").filter((p) => p.length > 8)) expect(said).not.toContain(part);
    },
  );
});

describe("check: the authorization metadata", () => {
  it("accepts the gRPC path form of a method, with its leading slash", async () => {
    const check = await authenticator.check(request(`/${METHODS.read}`, credentials.get("reader")!.authorization));

    expect(summary(check)).toBe("allowed by readers");
  });

  it("reads the Bearer scheme in any case", async () => {
    const token = credentials.get("reader")!.authorization!.slice("Bearer ".length);

    expect(summary(await authenticator.check(request(METHODS.read, `bearer ${token}`)))).toBe("allowed by readers");
  });

  it("refuses two authorization values", async () => {
    const reader = credentials.get("reader")!.authorization!;

    expect(summary(await authenticator.check(request(METHODS.read, [reader, reader])))).toBe("unauthenticated CREDENTIALS_MALFORMED");
  });

  it("takes a single-element list like the string", async () => {
    expect(summary(await authenticator.check(request(METHODS.read, [credentials.get("reader")!.authorization!])))).toBe("allowed by readers");
  });

  it("lets the bearer token decide when a certificate is also presented", async () => {
    const { peerCertificate } = credentials.get("certificate SPIFFE identity")!;

    const check = await authenticator.check(request(METHODS.command, credentials.get("reader")!.authorization, peerCertificate));

    expect(summary(check)).toBe("denied METHOD_NOT_ALLOWED");
  });

  it("does not fall back to the certificate when the token is invalid", async () => {
    const { peerCertificate } = credentials.get("certificate SPIFFE identity")!;

    const check = await authenticator.check(request(METHODS.command, credentials.get("expired")!.authorization, peerCertificate));

    expect(summary(check)).toBe("unauthenticated TOKEN_EXPIRED");
  });

  it("refuses a certificate past its notAfter (a connection opened before it expired)", async () => {
    // Node's rendering of notAfter; the clock reads 2030-01-01T00:00:00Z.
    const peerCertificate = { subject: { CN: "reporting" }, valid_to: "Dec 31 23:59:59 2029 GMT" };

    expect(summary(await authenticator.check(request(METHODS.read, undefined, peerCertificate)))).toBe("unauthenticated TOKEN_EXPIRED");
  });

  it("accepts a certificate until its notAfter, and gives it as the principal's expiry", async () => {
    const notAfter = "Jan  1 00:00:01 2030 GMT";
    const check = await authenticator.check(request(METHODS.read, undefined, { subject: { CN: "reporting" }, valid_to: notAfter }));

    expect(check).toMatchObject({ outcome: "allowed", principal: { id: "CN=reporting", expiresAt: Date.parse(notAfter) } });
  });

  it("treats Node's empty certificate object as no certificate", async () => {
    expect(summary(await authenticator.check(request(METHODS.read, undefined, {})))).toBe("unauthenticated CREDENTIALS_MISSING");
  });
});

describe("authenticate and authorize, one at a time", () => {
  it("authenticate gives the principal whatever the method", async () => {
    const result = await authenticator.authenticate(request(METHODS.health, credentials.get("reader")!.authorization));

    expect(result).toMatchObject({ ok: true, principal: { sub: "rita" } });
  });

  it("authorize without a principal refuses a closed method", () => {
    expect(authenticator.authorize(undefined, METHODS.read)).toMatchObject({ ok: false, code: "PERMISSION_DENIED", reason: "METHOD_NOT_ALLOWED" });
  });

  it("authorize without a principal allows an open method", () => {
    expect(authenticator.authorize(undefined, METHODS.health)).toEqual({ ok: true, rule: undefined });
  });
});

describe("actorOf", () => {
  it("is a JWT caller's sub", () => {
    expect(actorOf({ kind: "jwt", id: "walt", sub: "walt", scopes: [] })).toBe("walt");
  });

  it("is a certificate's SPIFFE ID", () => {
    expect(actorOf({ kind: "certificate", id: DISPATCHER_SPIFFE, scopes: [] })).toBe(DISPATCHER_SPIFFE);
  });

  it("is CN=<cn> for a certificate without one", () => {
    expect(actorOf({ kind: "certificate", id: "CN=reporting", scopes: [] })).toBe("CN=reporting");
  });
});

describe("with authentication off", () => {
  const off = createAuthenticator(parseAuthConfig({}));

  it.each(Object.values(METHODS))("every call is open (%s)", async (method) => {
    expect(await off.check(request(method))).toEqual({ outcome: "open" });
  });
});
