/**
 * Authentication and authorisation end to end: real servers on real ports,
 * real gRPC clients, the real Redis. Every RPC (the ten DeliveryService
 * methods, Health/Check, reflection) against every kind of credential, with
 * the exact code, reason and ErrorInfo metadata, and for every refused
 * command a Redis snapshot that shows nothing was written. Then the actor on
 * every read path, request_id reuse across principals, a JWKS rotation, a
 * watch that outlives its token, the example policy, logs and metrics.
 *
 * Tokens are signed for 2030 and the servers check them on a clock the test
 * moves (manualClock), so expiry needs no sleeping; the example-policy server
 * runs on the real clock with tokens from examples/auth/make-token.mjs.
 */
import { execFile } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Metadata, type ServiceError, status, type StatusObject } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAuthConfig } from "../../src/auth/index.js";
import { ConfigError, configWith } from "../../src/config.js";
import { silentLogger } from "../../src/logger.js";
import { startServer } from "../../src/server.js";
import { type DeliveryServiceClient, DeliveryServiceService } from "../../src/gen/delivery/v1/delivery.js";
import {
  AUDIENCE,
  bearer,
  claims,
  type Claims,
  ISSUER,
  jwksOf,
  NOW_MS,
  NOW_S,
  rsaKey,
  sign,
  signHmac,
  type SigningKey,
  type TempDir,
  TEST_POLICY,
  tempDir,
  unsigned,
} from "../auth/authSupport.js";
import { createTestPki, type Pem, type TestPki } from "../ops/certificates.js";
import { within, waitUntil } from "../support/async.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { statusDetailsOf } from "../support/statusDetails.js";
import { call } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import {
  type AuthService,
  clientCertificate,
  type Credential,
  healthCheck,
  manualClock,
  type ManualClock,
  OK,
  type Outcome,
  outcomeOf,
  reflectionList,
  startAuthService,
  watchDeliveries,
} from "./e2e.auth.support.js";
import { deliveryIn, expectStatus, redisSnapshot, STATUS, type StatusName } from "./e2e.support.js";

const SERVICE = "delivery.v1.DeliveryService";
const WATCH_METHOD = `${SERVICE}/WatchDelivery`;
const SPIFFE_DISPATCHER = "spiffe://example.org/ns/ops/sa/dispatcher";

let files: TempDir;
let redis: Redis;
let keyA: SigningKey;
/** Same kid as keyA, another key pair: a signature that does not verify. */
let impostor: SigningKey;
let keyB: SigningKey;
let pki: TestPki;
let certs: { dispatcher: Pem; reporting: Pem; clerk: Pem; unlisted: Pem; twoSpiffe: Pem; expired: Pem };

const newId = (label: string) => `${label}-${randomBytes(4).toString("hex")}`;
const writerClaims = (sub = "walt", overrides: Claims = {}) => claims({ sub, scope: "deliveries.read deliveries.write", ...overrides });

/** Tokens of the matrix, signed once. */
const tokens: Record<string, string> = {};

beforeAll(async () => {
  files = tempDir();
  redis = connectRedis(testRedisUrl());
  [keyA, impostor, keyB, pki] = await Promise.all([rsaKey("key-a"), rsaKey("key-a"), rsaKey("key-b"), createTestPki()]);
  const [dispatcher, reporting, clerk, unlisted, twoSpiffe, expired] = await Promise.all([
    clientCertificate(pki, "dispatcher", "dispatcher", [`URI:${SPIFFE_DISPATCHER}`], NOW_MS),
    clientCertificate(pki, "reporting", "reporting", [], NOW_MS),
    clientCertificate(pki, "clerk", "clerk", [], NOW_MS),
    clientCertificate(pki, "unlisted", "unlisted", [], NOW_MS),
    clientCertificate(pki, "two-spiffe", "two", ["URI:spiffe://example.org/a", "URI:spiffe://example.org/b"], NOW_MS),
    // Valid for the TLS handshake today, expired on the servers' clock (2030).
    clientCertificate(pki, "expired", "clerk", [], Date.now()),
  ]);
  certs = { dispatcher, reporting, clerk, unlisted, twoSpiffe, expired };
  Object.assign(tokens, {
    writer: await sign(keyA, writerClaims("walt")),
    secondWriter: await sign(keyA, writerClaims("wendy")),
    reader: await sign(keyA, claims({ sub: "rita", scope: "deliveries.read" })),
    mallory: await sign(keyA, writerClaims("mallory")),
    // Past exp by more than the 30 s tolerance.
    expired: await sign(keyA, writerClaims("walt", { iat: NOW_S - 7200, exp: NOW_S - 3600 })),
    wrongAudience: await sign(keyA, writerClaims("walt", { aud: "another-service" })),
    wrongIssuer: await sign(keyA, writerClaims("walt", { iss: "https://auth.elsewhere.test" })),
    badSignature: await sign(impostor, writerClaims("walt")),
    algNone: unsigned(writerClaims("walt")),
    // The algorithm-confusion attack: HS256 with the (public) RSA key as the secret.
    hsWithPublicKey: await signHmac(keyA.publicPem, writerClaims("walt")),
  });
});

afterAll(async () => {
  redis?.disconnect();
  files?.remove();
  await pki?.remove();
});

/** A JWKS-verified configuration, as parseAuthConfig reads it from the environment. */
function jwtAuth(policy: object, extra: Record<string, string> = {}, jwks = jwksOf(keyA)) {
  const dir = newId("cfg");
  return parseAuthConfig({
    AUTH_JWKS_FILE: files.write(`${dir}-keys.json`, jwks),
    AUTH_ISSUER: ISSUER,
    AUTH_AUDIENCE: AUDIENCE,
    AUTH_POLICY_FILE: files.write(`${dir}-policy.json`, JSON.stringify(policy)),
    ...extra,
  });
}

// ---------------------------------------------------------------------------
// Every RPC, as a probe
// ---------------------------------------------------------------------------

type Kind = "command" | "read" | "open";

interface Target {
  /** A fresh delivery in a status (commands that succeed) or a shared one that must stay as it is (refused commands). */
  delivery(needs: StatusName): Promise<string>;
}

interface Rpc {
  readonly name: string;
  readonly kind: Kind;
  /** The policy's method name. */
  readonly method: string;
  probe(service: AuthService, credential: Credential, target: Target): Promise<Outcome>;
}

async function unaryOutcome(promise: Promise<unknown>): Promise<Outcome> {
  try {
    await promise;
    return OK;
  } catch (error) {
    return outcomeOf(error as never);
  }
}

async function watchOutcome(client: DeliveryServiceClient, deliveryId: string): Promise<Outcome> {
  const w = watch(client, { deliveryId });
  try {
    await within(w.first, "the first message of the watch", 5_000);
    w.cancel();
    return OK;
  } catch {
    return outcomeOf(await within(w.ended, "the end of the refused watch", 5_000));
  }
}

/** OK once the snapshot's first message (or caught_up) arrives. */
async function feedOutcome(client: DeliveryServiceClient): Promise<Outcome> {
  const feed = watchDeliveries(client, { includeSnapshot: true, statuses: [STATUS.CANCELLED] });
  try {
    await within(feed.first, "the first message of WatchDeliveries", 5_000);
    feed.cancel();
    return OK;
  } catch {
    return outcomeOf(await within(feed.ended, "the end of the refused WatchDeliveries", 5_000));
  }
}

function command(name: string, needs: StatusName | undefined, run: (client: DeliveryServiceClient, deliveryId: string) => Promise<unknown>): Rpc {
  return {
    name,
    kind: "command",
    method: `${SERVICE}/${name}`,
    probe: async (service, credential, target) => {
      const deliveryId = needs ? await target.delivery(needs) : newId("create");
      return unaryOutcome(run(service.delivery(credential), deliveryId));
    },
  };
}

function read(name: string, run: (client: DeliveryServiceClient, deliveryId: string) => Promise<Outcome>): Rpc {
  return {
    name,
    kind: "read",
    method: `${SERVICE}/${name}`,
    probe: async (service, credential, target) => run(service.delivery(credential), await target.delivery("READY")),
  };
}

const RPCS: readonly Rpc[] = [
  command("CreateDelivery", undefined, (c, deliveryId) => call(c, "createDelivery", { deliveryId, budget: 100n })),
  command("StartDelivery", "READY", (c, deliveryId) => call(c, "startDelivery", { deliveryId })),
  command("PickupProducts", "ACTIVE", (c, deliveryId) => call(c, "pickupProducts", { deliveryId, purchasePrice: 1n, quantity: 1n })),
  command("DeliverProducts", "COLLECTED", (c, deliveryId) => call(c, "deliverProducts", { deliveryId, sellPrice: 1n, quantity: 1n })),
  command("IncreaseBudget", "READY", (c, deliveryId) => call(c, "increaseBudget", { deliveryId, amount: 1n })),
  command("CancelDelivery", "READY", (c, deliveryId) => call(c, "cancelDelivery", { deliveryId, reason: "probe" })),
  read("GetDelivery", (c, deliveryId) => unaryOutcome(call(c, "getDelivery", { deliveryId }))),
  read("ListDeliveries", (c) => unaryOutcome(call(c, "listDeliveries", { pageSize: 5 }))),
  read("ListDeliveryEvents", (c, deliveryId) => unaryOutcome(call(c, "listDeliveryEvents", { deliveryId }))),
  read("WatchDelivery", (c, deliveryId) => watchOutcome(c, deliveryId)),
  read("WatchDeliveries", (c) => feedOutcome(c)),
  { name: "Health/Check", kind: "open", method: "grpc.health.v1.Health/Check", probe: (s, credential) => healthCheck(s.health(credential)) },
  {
    name: "ServerReflectionInfo (list)",
    kind: "open",
    method: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    probe: (s, credential) => reflectionList(s.reflection(credential)),
  },
];

// ---------------------------------------------------------------------------
// Credentials, and what each may do
// ---------------------------------------------------------------------------

interface Row {
  readonly name: string;
  readonly credential: () => Credential;
  readonly expect: (rpc: Rpc) => Outcome;
}

const unauthenticated = (reason: string) => (rpc: Rpc): Outcome =>
  rpc.kind === "open" ? OK : { code: "UNAUTHENTICATED", reason, metadata: { method: rpc.method } };
const notAllowed = (rpc: Rpc): Outcome => ({ code: "PERMISSION_DENIED", reason: "METHOD_NOT_ALLOWED", metadata: { method: rpc.method } });
const allowedOnly = (names: readonly string[]) => (rpc: Rpc): Outcome => (rpc.kind === "open" || names.includes(rpc.name) ? OK : notAllowed(rpc));
const READS = RPCS.filter((rpc) => rpc.kind === "read").map((rpc) => rpc.name);

const token = (name: string) => (): Credential => ({ authorization: bearer(tokens[name]!) });

const JWT_ROWS: readonly Row[] = [
  { name: "no credential", credential: () => ({}), expect: unauthenticated("CREDENTIALS_MISSING") },
  { name: "Basic credentials", credential: () => ({ authorization: "Basic d2FsdDpwYXNzd29yZA==" }), expect: unauthenticated("CREDENTIALS_MALFORMED") },
  { name: "an expired token", credential: token("expired"), expect: unauthenticated("TOKEN_EXPIRED") },
  { name: "a token for another audience", credential: token("wrongAudience"), expect: unauthenticated("WRONG_AUDIENCE") },
  { name: "a token from another issuer", credential: token("wrongIssuer"), expect: unauthenticated("WRONG_ISSUER") },
  { name: "a bad signature", credential: token("badSignature"), expect: unauthenticated("TOKEN_INVALID") },
  { name: "alg none", credential: token("algNone"), expect: unauthenticated("TOKEN_INVALID") },
  { name: "HS256 signed with the public key", credential: token("hsWithPublicKey"), expect: unauthenticated("TOKEN_INVALID") },
  { name: "a reader", credential: token("reader"), expect: allowedOnly(READS) },
  { name: "a writer", credential: token("writer"), expect: () => OK },
  {
    name: "a denied principal",
    credential: token("mallory"),
    expect: (rpc) => (rpc.kind === "open" ? OK : { code: "PERMISSION_DENIED", reason: "DENIED_BY_RULE", metadata: { method: rpc.method, rule: "no-mallory" } }),
  },
];

/** The outcome as compared: code, reason, ErrorInfo metadata and domain. */
function shapeOf(outcome: Outcome): Outcome {
  return outcome.code === "OK" ? OK : { code: outcome.code, reason: outcome.reason, metadata: outcome.metadata, domain: outcome.domain };
}

interface MatrixContext {
  readonly service: AuthService;
  /** Makes fixtures; allowed to run every command. */
  readonly setup: DeliveryServiceClient;
  /** Deliveries refused commands aim at: each command would succeed on them, so a write would show. */
  readonly shared: Readonly<Record<StatusName, string>>;
}

async function sharedFixtures(setup: DeliveryServiceClient): Promise<Record<StatusName, string>> {
  const shared = {} as Record<StatusName, string>;
  for (const state of ["READY", "ACTIVE", "COLLECTED"] as const) {
    shared[state] = newId(`shared-${state.toLowerCase()}`);
    await deliveryIn(setup, state, shared[state]);
  }
  return shared;
}

/** One test per row and RPC: the exact outcome, no token in the message, and nothing written by a refused command. */
function describeMatrix(title: string, context: () => MatrixContext, rows: readonly Row[]) {
  describe(title, () => {
    const cases = rows.flatMap((row) => RPCS.map((rpc) => [row.name, rpc.name, row, rpc] as const));

    it.each(cases)("%s calling %s", async (_rowName, _rpcName, row, rpc) => {
      const { service, setup, shared } = context();
      const expected = row.expect(rpc);
      const allowed = expected.code === "OK";
      const target: Target = {
        delivery: async (needs) => {
          if (!allowed || rpc.kind !== "command") return shared[needs];
          const id = newId("fresh");
          await deliveryIn(setup, needs, id);
          return id;
        },
      };
      const credential = row.credential();
      const before = rpc.kind === "command" && !allowed ? await redisSnapshot(redis, service.keyPrefix) : undefined;

      const outcome = await rpc.probe(service, credential, target);

      expect(shapeOf(outcome)).toEqual(allowed ? OK : { ...expected, domain: "delivery.v1" });
      if (credential.authorization) expect(outcome.message ?? "").not.toContain(credential.authorization.slice(-20));
      if (before) expect(await redisSnapshot(redis, service.keyPrefix)).toEqual(before);
    });
  });
}

// ---------------------------------------------------------------------------
// Bearer tokens (JWKS) with the test policy
// ---------------------------------------------------------------------------

describe("bearer tokens", () => {
  let service: AuthService;
  let clock: ManualClock;
  let writer: DeliveryServiceClient;
  let shared: Record<StatusName, string>;

  beforeAll(async () => {
    clock = manualClock(NOW_MS);
    service = await startAuthService({ redisUrl: testRedisUrl(), config: { auth: jwtAuth(TEST_POLICY) }, authClock: clock });
    writer = service.delivery(token("writer")());
    shared = await sharedFixtures(writer);
  });

  afterAll(async () => {
    await service?.stop();
  });

  describeMatrix("every RPC with every token", () => ({ service, setup: writer, shared }), JWT_ROWS);

  describe("the actor of every event", () => {
    it("is the writer's sub, in the command's response", async () => {
      const response = await call(writer, "createDelivery", { deliveryId: newId("actor"), budget: 100n });

      expect(response.event?.actor).toBe("walt");
    });

    it("is each event's own writer in ListDeliveryEvents and WatchDelivery, replayed and live", async () => {
      const deliveryId = newId("actors");
      const wendy = service.delivery(token("secondWriter")());
      await call(writer, "createDelivery", { deliveryId, budget: 100n });
      await call(wendy, "startDelivery", { deliveryId });
      const w = watch(service.delivery(token("reader")()), { deliveryId, afterVersion: 0 });
      await within(w.first, "the replay");
      const feed = watchDeliveries(service.delivery(token("reader")()), { includeSnapshot: true, statuses: [STATUS.ACTIVE] });
      await within(feed.first, "the feed's snapshot");

      await call(writer, "pickupProducts", { deliveryId, purchasePrice: 1n, quantity: 1n });

      const { events } = await call(service.delivery(token("reader")()), "listDeliveryEvents", { deliveryId });
      expect(events.map((e) => e.actor)).toEqual(["walt", "wendy", "walt"]);
      await waitUntil(() => w.messages.length === 3, "the live event on the watch");
      w.cancel();
      expect(w.messages.map((m) => m.event?.actor)).toEqual(["walt", "wendy", "walt"]);
      const change = await waitUntil(
        () => feed.messages.find((m) => m.kind?.$case === "change" && m.kind.change.delivery?.id === deliveryId),
        "the change on WatchDeliveries",
      );
      feed.cancel();
      expect(change.kind?.$case === "change" && change.kind.change.event?.actor).toBe("walt");
    });

    it("makes a request_id another principal used REQUEST_ID_REUSED, and writes nothing", async () => {
      const deliveryId = newId("reuse");
      await call(writer, "createDelivery", { deliveryId, budget: 100n });
      const first = await call(writer, "increaseBudget", { deliveryId, amount: 5n, requestId: "reuse-1" });
      const before = await redisSnapshot(redis, service.keyPrefix);

      const error = await expectStatus(
        call(service.delivery(token("secondWriter")()), "increaseBudget", { deliveryId, amount: 5n, requestId: "reuse-1" }),
        status.INVALID_ARGUMENT,
      );

      expect(error.status.errorInfo?.reason).toBe("REQUEST_ID_REUSED");
      expect(await redisSnapshot(redis, service.keyPrefix)).toEqual(before);
      // The first principal's retry is still the same request: the same event, its actor.
      const retry = await call(writer, "increaseBudget", { deliveryId, amount: 5n, requestId: "reuse-1" });
      expect(retry.event).toEqual(first.event);
      expect(retry.event?.actor).toBe("walt");
    });
  });

  describe("before the request is looked at", () => {
    /** Bytes that no message decodes. */
    const MALFORMED = Buffer.from([0x0a, 0x7f, 0x61]);
    const rawOutcome = (credential: Credential, method: "createDelivery" | "watchDelivery") =>
      new Promise<Outcome>((resolve) => {
        const raw = service.raw(DeliveryServiceService, credential);
        if (method === "watchDelivery") {
          const stream = raw[method]!(MALFORMED, new Metadata()) as NodeJS.EventEmitter;
          stream.on("data", () => {});
          stream.on("error", () => {});
          stream.on("status", (s: StatusObject) => resolve(outcomeOf(s)));
        } else {
          raw[method]!(MALFORMED, new Metadata(), (error: ServiceError) => resolve(outcomeOf(error)));
        }
      });

    it.each([
      ["no credential", () => ({}), "createDelivery", "UNAUTHENTICATED", "CREDENTIALS_MISSING"],
      ["no credential", () => ({}), "watchDelivery", "UNAUTHENTICATED", "CREDENTIALS_MISSING"],
      ["a reader", token("reader"), "createDelivery", "PERMISSION_DENIED", "METHOD_NOT_ALLOWED"],
      ["a writer", token("writer"), "createDelivery", "INVALID_ARGUMENT", "MALFORMED_REQUEST"],
      ["a writer", token("writer"), "watchDelivery", "INVALID_ARGUMENT", "MALFORMED_REQUEST"],
    ] as const)("undecodable bytes from %s to %s: %s", async (_who, credential, method, code, reason) => {
      expect(await rawOutcome(credential(), method)).toMatchObject({ code, reason });
    });
  });

  describe("logs and metrics", () => {
    it("logs the principal of every RPC, the reason and detail of a refusal, and never a token", async () => {
      const deliveryId = newId("logged");
      await call(writer, "createDelivery", { deliveryId, budget: 100n });
      await unaryOutcome(call(service.delivery(token("expired")()), "getDelivery", { deliveryId }));
      await unaryOutcome(call(service.delivery(token("mallory")()), "getDelivery", { deliveryId }));

      const lines = service.logs.lines().filter((line) => line.msg === "rpc" && line.deliveryId === deliveryId);
      expect(lines.map(({ method, code, principal, authReason, authDetail }) => ({ method, code, principal, authReason, authDetail }))).toEqual([
        { method: "CreateDelivery", code: "OK", principal: "walt", authReason: undefined, authDetail: undefined },
        { method: "GetDelivery", code: "UNAUTHENTICATED", principal: undefined, authReason: "TOKEN_EXPIRED", authDetail: "ERR_JWT_EXPIRED" },
        { method: "GetDelivery", code: "PERMISSION_DENIED", principal: "mallory", authReason: "DENIED_BY_RULE", authDetail: undefined },
      ]);
      const everything = service.logs.raw.join("\n");
      for (const sent of Object.values(tokens)) expect(everything).not.toContain(sent.split(".")[2] || sent.split(".")[1]);
    });

    it("counts refusals by reason in delivery_auth_denied_total", async () => {
      const count = async (reason: string) =>
        (await service.server.metrics.authDenied.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
      const [wrongIssuer, denied] = [await count("WRONG_ISSUER"), await count("DENIED_BY_RULE")];

      await unaryOutcome(call(service.delivery(token("wrongIssuer")()), "getDelivery", { deliveryId: shared.READY }));
      await unaryOutcome(call(service.delivery(token("mallory")()), "getDelivery", { deliveryId: shared.READY }));

      expect([await count("WRONG_ISSUER"), await count("DENIED_BY_RULE")]).toEqual([wrongIssuer + 1, denied + 1]);
    });
  });
});

// ---------------------------------------------------------------------------
// Client certificates (mutual TLS), with bearer tokens on the same port
// ---------------------------------------------------------------------------

describe("client certificates", () => {
  const CERT_POLICY = {
    ...TEST_POLICY,
    allow_rules: [...TEST_POLICY.allow_rules, { name: "clerks", principals: ["cert:CN=clerk"], methods: [`${SERVICE}/*`] }],
  };
  let service: AuthService;
  let clock: ManualClock;
  let dispatcher: DeliveryServiceClient;
  let shared: Record<StatusName, string>;

  beforeAll(async () => {
    clock = manualClock(NOW_MS);
    const auth = jwtAuth(CERT_POLICY, { AUTH_CLIENT_CERTIFICATES: "true", TLS_CLIENT_CA_FILE: pki.ca.certFile });
    service = await startAuthService({
      redisUrl: testRedisUrl(),
      config: { auth, tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile } },
      authClock: clock,
      pki,
    });
    dispatcher = service.delivery({ certificate: certs.dispatcher });
    shared = await sharedFixtures(dispatcher);
  });

  afterAll(async () => {
    await service?.stop();
  });

  describeMatrix("every RPC with every certificate", () => ({ service, setup: dispatcher, shared }), [
    { name: "a SPIFFE ID the policy allows", credential: () => ({ certificate: certs.dispatcher }), expect: () => OK },
    { name: "CN=reporting", credential: () => ({ certificate: certs.reporting }), expect: allowedOnly(["GetDelivery", "WatchDelivery"]) },
    { name: "a CN no rule names", credential: () => ({ certificate: certs.unlisted }), expect: allowedOnly([]) },
    { name: "two SPIFFE IDs", credential: () => ({ certificate: certs.twoSpiffe }), expect: unauthenticated("CERTIFICATE_IDENTITY_INVALID") },
    { name: "a certificate past its notAfter", credential: () => ({ certificate: certs.expired }), expect: unauthenticated("TOKEN_EXPIRED") },
    {
      name: "CN=reporting with a writer's token (the token decides)",
      credential: () => ({ certificate: certs.reporting, authorization: bearer(tokens.writer!) }),
      expect: () => OK,
    },
    {
      name: "a SPIFFE ID with an expired token (no fallback to the certificate)",
      credential: () => ({ certificate: certs.dispatcher, authorization: bearer(tokens.expired!) }),
      expect: unauthenticated("TOKEN_EXPIRED"),
    },
  ]);

  it.each([
    ["the SPIFFE ID", () => certs.dispatcher, SPIFFE_DISPATCHER],
    ["CN=<cn> without a SPIFFE ID", () => certs.clerk, "CN=clerk"],
  ])("records %s as the actor", async (_what, certificate, actor) => {
    const client = service.delivery({ certificate: certificate() });
    const deliveryId = newId("cert-actor");

    const response = await call(client, "createDelivery", { deliveryId, budget: 100n });

    expect(response.event?.actor).toBe(actor);
    const { events } = await call(client, "listDeliveryEvents", { deliveryId });
    expect(events.map((e) => e.actor)).toEqual([actor]);
  });

  // Last in this block: it moves the server's clock past the certificates' notAfter.
  it("ends a watch at the certificate's notAfter", async () => {
    const w = watch(dispatcher, { deliveryId: shared.READY });
    await within(w.first, "the snapshot");

    clock.advance(Date.parse(new X509Certificate(certs.dispatcher.cert).validTo) - clock.now());

    const end = await within(w.ended, "the end of the watch");
    expect(statusDetailsOf(end)?.errorInfo).toMatchObject({ reason: "TOKEN_EXPIRED", metadata: { method: WATCH_METHOD, limit: "CREDENTIAL_EXPIRY" } });
  });
});

// ---------------------------------------------------------------------------
// A JWKS rotation, and a policy that names health
// ---------------------------------------------------------------------------

describe("a JWKS file rewritten while the service runs", () => {
  const RELOAD_MS = 1_000;
  const HEALTH_POLICY = {
    ...TEST_POLICY,
    allow_rules: [
      ...TEST_POLICY.allow_rules,
      { name: "probes", principals: ["scope:ops"], methods: ["grpc.health.v1.Health/Check", "grpc.reflection.v1.ServerReflection/*"] },
    ],
  };
  let service: AuthService;
  let clock: ManualClock;
  let jwksFile: string;
  let signedByA: string;
  let signedByB: string;

  beforeAll(async () => {
    clock = manualClock(NOW_MS);
    const auth = jwtAuth(HEALTH_POLICY, { AUTH_JWKS_RELOAD_INTERVAL_MS: String(RELOAD_MS) });
    if (!auth.enabled || auth.jwt?.keys.kind !== "jwks") throw new Error("expected a JWKS configuration");
    jwksFile = auth.jwt.keys.file;
    service = await startAuthService({ redisUrl: testRedisUrl(), config: { auth }, authClock: clock });
    [signedByA, signedByB] = await Promise.all([sign(keyA, claims({ scope: "deliveries.read" })), sign(keyB, claims({ scope: "deliveries.read" }))]);
  });

  afterAll(async () => {
    await service?.stop();
  });

  /** NOT_FOUND: the call got through authentication to the service. */
  const outcome = async (signed: string) =>
    shapeOf(await unaryOutcome(call(service.delivery({ authorization: bearer(signed) }), "getDelivery", { deliveryId: "rotation-unknown" })));
  const rewrite = (jwks: string) => {
    files.write(path.basename(jwksFile), jwks);
    clock.advance(RELOAD_MS);
  };
  const NOT_FOUND = { code: "NOT_FOUND", reason: "DELIVERY_NOT_FOUND", metadata: { deliveryId: "rotation-unknown" }, domain: "delivery.v1" };
  const INVALID = { code: "UNAUTHENTICATED", reason: "TOKEN_INVALID", metadata: { method: `${SERVICE}/GetDelivery` }, domain: "delivery.v1" };

  it("trusts the new key next to the old one, then only the new one, and keeps the keys when the file is broken", async () => {
    expect([await outcome(signedByA), await outcome(signedByB)]).toEqual([NOT_FOUND, INVALID]);

    rewrite(jwksOf(keyA, keyB));
    expect([await outcome(signedByA), await outcome(signedByB)]).toEqual([NOT_FOUND, NOT_FOUND]);

    rewrite(jwksOf(keyB));
    expect([await outcome(signedByA), await outcome(signedByB)]).toEqual([INVALID, NOT_FOUND]);

    rewrite("{ half written");
    expect([await outcome(signedByA), await outcome(signedByB)]).toEqual([INVALID, NOT_FOUND]);
    expect(service.logs.lines().some((line) => line.msg.startsWith("AUTH_JWKS_FILE changed but cannot be used"))).toBe(true);
  });

  it("checks health and reflection when a rule names them", async () => {
    rewrite(jwksOf(keyA, keyB));
    const ops = bearer(await sign(keyA, claims({ sub: "prober", scope: "ops" })));
    const method = "grpc.health.v1.Health/Check";

    expect(shapeOf(await healthCheck(service.health()))).toEqual({ code: "UNAUTHENTICATED", reason: "CREDENTIALS_MISSING", metadata: { method }, domain: "delivery.v1" });
    expect(shapeOf(await healthCheck(service.health({ authorization: bearer(signedByA) })))).toEqual({
      code: "PERMISSION_DENIED",
      reason: "METHOD_NOT_ALLOWED",
      metadata: { method },
      domain: "delivery.v1",
    });
    expect(await healthCheck(service.health({ authorization: ops }))).toEqual(OK);
    // A bidi stream: checked once at its start, before any request is read.
    expect(shapeOf(await reflectionList(service.reflection()))).toEqual({
      code: "UNAUTHENTICATED",
      reason: "CREDENTIALS_MISSING",
      metadata: { method: "grpc.reflection.v1.ServerReflection/ServerReflectionInfo" },
      domain: "delivery.v1",
    });
    expect(await reflectionList(service.reflection({ authorization: ops }))).toEqual(OK);
  });
});

// ---------------------------------------------------------------------------
// Streams end with their credential
// ---------------------------------------------------------------------------

describe("a watch that outlives its credential", () => {
  const STREAM_MAX_MS = 600_000;
  const TOLERANCE_MS = 30_000;
  let service: AuthService;
  let clock: ManualClock;
  let writer: DeliveryServiceClient;

  beforeAll(async () => {
    clock = manualClock(NOW_MS);
    service = await startAuthService({
      redisUrl: testRedisUrl(),
      config: { auth: jwtAuth(TEST_POLICY, { AUTH_STREAM_MAX_MS: String(STREAM_MAX_MS) }) },
      authClock: clock,
    });
    // Valid for as long as this block moves the clock.
    writer = service.delivery({ authorization: bearer(await sign(keyA, writerClaims("walt", { exp: NOW_S + 30 * 86_400 }))) });
  });

  afterAll(async () => {
    await service?.stop();
  });

  /** A reader's token that expires `ttlS` seconds from the clock's now. */
  const readerFor = async (ttlS: number) => {
    const nowS = Math.floor(clock.now() / 1000);
    return service.delivery({ authorization: bearer(await sign(keyA, claims({ sub: "rita", scope: "deliveries.read", iat: nowS, exp: nowS + ttlS }))) });
  };

  it("ends it UNAUTHENTICATED (TOKEN_EXPIRED) when the token would no longer be accepted, and unregisters it", async () => {
    const deliveryId = newId("expiring");
    await call(writer, "createDelivery", { deliveryId, budget: 100n });
    const w = watch(await readerFor(120), { deliveryId });
    await within(w.first, "the snapshot");

    clock.advance(120_000 + TOLERANCE_MS - 1);
    await call(writer, "increaseBudget", { deliveryId, amount: 1n });
    await waitUntil(() => w.messages.length === 2, "the update while the token is still accepted");
    clock.advance(1);

    const end = await within(w.ended, "the end of the watch");
    expect({ code: status[end.code], info: statusDetailsOf(end)?.errorInfo }).toEqual({
      code: "UNAUTHENTICATED",
      info: { reason: "TOKEN_EXPIRED", domain: "delivery.v1", metadata: { method: WATCH_METHOD, limit: "CREDENTIAL_EXPIRY" } },
    });
    await waitUntil(() => service.server.hub.watcherCount === 0, "the watcher to leave the hub");
    expect(service.server.streams.size).toBe(0);
    expect(clock.pending()).toBe(0);
  });

  it("ends it after AUTH_STREAM_MAX_MS when the token lives longer, and a fresh watch resumes after the last version", async () => {
    const deliveryId = newId("capped");
    await call(writer, "createDelivery", { deliveryId, budget: 100n });
    const reader = await readerFor(86_400);
    const w = watch(reader, { deliveryId });
    await within(w.first, "the snapshot");

    clock.advance(STREAM_MAX_MS);

    const end = await within(w.ended, "the end of the watch");
    expect(statusDetailsOf(end)?.errorInfo).toMatchObject({ reason: "TOKEN_EXPIRED", metadata: { method: WATCH_METHOD, limit: "STREAM_MAX_AGE" } });
    await call(writer, "increaseBudget", { deliveryId, amount: 1n });
    const resumed = watch(await readerFor(3_600), { deliveryId, afterVersion: w.lastVersion() });
    await within(resumed.first, "the event missed meanwhile");
    resumed.cancel();
    expect(resumed.versions()[0]).toBe(2);
  });

  it("ends WatchDeliveries the same way", async () => {
    const feed = watchDeliveries(await readerFor(60), { includeSnapshot: true, statuses: [STATUS.CANCELLED] });
    await within(feed.first, "the feed's first message");

    clock.advance(60_000 + TOLERANCE_MS);

    const end = await within(feed.ended, "the end of the feed");
    expect(statusDetailsOf(end)?.errorInfo).toMatchObject({
      reason: "TOKEN_EXPIRED",
      metadata: { method: `${SERVICE}/WatchDeliveries`, limit: "CREDENTIAL_EXPIRY" },
    });
    expect(clock.pending()).toBe(0);
  });

  it("leaves no timer behind when the client cancels", async () => {
    const deliveryId = newId("cancelled");
    await call(writer, "createDelivery", { deliveryId, budget: 100n });
    const w = watch(await readerFor(3_600), { deliveryId });
    await within(w.first, "the snapshot");

    w.cancel();

    await waitUntil(() => clock.pending() === 0 && service.server.hub.watcherCount === 0, "the timer to be cancelled");
  });
});

// ---------------------------------------------------------------------------
// The example: examples/auth/policy.json and tokens from make-token.mjs
// ---------------------------------------------------------------------------

describe("the example policy with tokens from make-token.mjs", () => {
  const run = promisify(execFile);
  const examples = fileURLToPath(new URL("../../examples/auth/", import.meta.url));
  let service: AuthService;
  let exampleTokens: { reader: string; writer: string };
  let writer: DeliveryServiceClient;
  let shared: Record<StatusName, string>;

  beforeAll(async () => {
    const dir = path.join(files.dir, "example-keys");
    const makeToken = async (...args: string[]) =>
      (await run(process.execPath, [path.join(examples, "make-token.mjs"), "--dir", dir, "--iss", ISSUER, "--aud", AUDIENCE, ...args])).stdout.trim();
    // One after the other: the first run creates the key pair the second signs with.
    const reader = await makeToken("--sub", "rita", "--scope", "deliveries.read", "--ttl", "10m");
    exampleTokens = { reader, writer: await makeToken("--sub", "walt", "--scope", "deliveries.read deliveries.write") };
    // The README's variables, and nothing else.
    const auth = parseAuthConfig({
      AUTH_JWKS_FILE: path.join(dir, "keys.json"),
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      AUTH_POLICY_FILE: path.join(examples, "policy.json"),
    });
    service = await startAuthService({ redisUrl: testRedisUrl(), config: { auth } });
    writer = service.delivery({ authorization: bearer(exampleTokens.writer) });
    shared = await sharedFixtures(writer);
  });

  afterAll(async () => {
    await service?.stop();
  });

  describeMatrix("every RPC", () => ({ service, setup: writer, shared }), [
    { name: "an unauthenticated caller", credential: () => ({}), expect: unauthenticated("CREDENTIALS_MISSING") },
    { name: "a reader", credential: () => ({ authorization: bearer(exampleTokens.reader) }), expect: allowedOnly(READS) },
    { name: "a writer", credential: () => ({ authorization: bearer(exampleTokens.writer) }), expect: () => OK },
  ]);

  it("lets a writer run a delivery's whole life, every event naming it", async () => {
    const { delivery } = await call(writer, "createDelivery", { budget: 1_000n, notes: "example" });
    const deliveryId = delivery!.id;
    await call(writer, "startDelivery", { deliveryId });
    await call(writer, "pickupProducts", { deliveryId, purchasePrice: 10n, quantity: 3n });
    await call(writer, "increaseBudget", { deliveryId, amount: 50n });
    const last = await call(writer, "deliverProducts", { deliveryId, sellPrice: 15n, quantity: 3n });

    const { events } = await call(service.delivery({ authorization: bearer(exampleTokens.reader) }), "listDeliveryEvents", { deliveryId });
    expect(events.map((e) => [e.kind?.$case, e.actor])).toEqual([
      ["created", "walt"],
      ["started", "walt"],
      ["productsPickedUp", "walt"],
      ["budgetIncreased", "walt"],
      ["productsDelivered", "walt"],
    ]);
    expect(last.delivery?.status).toBe(STATUS.COMPLETED);
  });
});

// ---------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------

describe("start-up", () => {
  it("refuses client certificates as credentials without mutual TLS", async () => {
    const auth = parseAuthConfig({ AUTH_CLIENT_CERTIFICATES: "true", TLS_CLIENT_CA_FILE: pki.ca.certFile, AUTH_POLICY_FILE: files.write("certs-policy.json", JSON.stringify(TEST_POLICY)) });

    await expect(startServer({ config: configWith({ host: "127.0.0.1", port: 0, auth }), logger: silentLogger })).rejects.toThrow(ConfigError);
  });
});

// ---------------------------------------------------------------------------
// Authentication off (the default)
// ---------------------------------------------------------------------------

describe("authentication off", () => {
  let service: AuthService;

  beforeAll(async () => {
    service = await startAuthService({ redisUrl: testRedisUrl(), config: { host: "0.0.0.0" } });
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("warns at start when it listens beyond loopback", () => {
    const warnings = service.logs.lines().filter((line) => line.level === 40 && line.msg.startsWith("authentication is off"));

    expect(warnings).toHaveLength(1);
  });

  it("records no actor and ignores a token", async () => {
    const client = service.delivery({ authorization: bearer("not-even-a-jwt") });

    const response = await call(client, "createDelivery", { budget: 100n });

    expect(response.event?.actor).toBe("");
  });
});
