/**
 * REDIS_URL=rediss://:<password>@host:port, and REDIS_TLS_CA_FILE for a Redis
 * whose certificate comes from a private CA. The Redis here speaks TLS only
 * (`--port 0`), requires a password, and has a certificate for localhost and
 * 127.0.0.1 signed by a CA made with openssl for this run: whatever the
 * service gets done, it got done over TLS with the password.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { type DeliveryServiceClient, DeliveryStatus } from "../../src/gen/delivery/v1/delivery.js";
import { rejectionOf, waitUntil, within } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { type HealthClient, healthClient } from "../support/health.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { createTestPki, type TestPki } from "./certificates.js";
import { codeName } from "./opsSupport.js";
import { startTlsRedisServer, type TlsRedisServer } from "./tlsRedisServer.js";

let pki: TestPki;
let redis: TlsRedisServer;

beforeAll(async () => {
  // The server certificate: SAN DNS:localhost and IP:127.0.0.1, signed by pki.ca.
  pki = await createTestPki();
  redis = await startTlsRedisServer({ certFile: pki.server.certFile, keyFile: pki.server.keyFile, caFile: pki.ca.certFile, ca: pki.ca.cert });
});

afterAll(async () => {
  await redis?.stop();
  await pki?.remove();
});

const redissUrl = (password: string) => `rediss://:${password}@localhost:${redis.tlsPort}`;

/** A service on `redisUrl`; startup must not hang whatever Redis does. */
function startService(redisUrl: string, redisTlsCaFile: string | undefined): Promise<TestService> {
  return within(startTestService({ redisUrl, config: { redisTlsCaFile } }), "the service to start", 10_000);
}

/** Stops a service without letting a stuck shutdown hang the hook. */
async function stopService(service: TestService | undefined): Promise<void> {
  if (service) await within(service.stop(), "the service to stop", 10_000);
}

describe("rediss:// with the password, the private CA given as REDIS_TLS_CA_FILE", () => {
  let service: TestService;
  let client: DeliveryServiceClient;
  let health: HealthClient;

  beforeAll(async () => {
    service = await startService(redissUrl(redis.password), pki.ca.certFile);
    client = service.client();
    health = healthClient(service.address);
  });

  afterAll(async () => {
    health?.close();
    await stopService(service);
  });

  it("reports SERVING: both Redis connections are ready", async () => {
    expect(await health.check("")).toBe("SERVING");
  });

  it("creates, starts and reads back a delivery", async () => {
    const deliveryId = await createDelivery(client, { budget: 250n });
    await call(client, "startDelivery", { deliveryId }, { deadlineMs: 5_000 });

    const { delivery } = await getDelivery(client, deliveryId, 5_000);

    expect(delivery).toMatchObject({ id: deliveryId, status: DeliveryStatus.DELIVERY_STATUS_ACTIVE, budget: 250n, version: 2n });
  });

  it("sends a watcher the live update of a later command (Pub/Sub over TLS)", async () => {
    const deliveryId = await createDelivery(client);
    const watcher = watch(client, { deliveryId });
    try {
      await within(watcher.first, "the watch's snapshot", 5_000);

      await call(client, "startDelivery", { deliveryId }, { deadlineMs: 5_000 });

      await waitUntil(() => watcher.lastVersion() === 2, "the live update to version 2", 5_000);
      expect(watcher.messages.at(-1)?.event?.kind?.$case).toBe("started");
      expect(watcher.messages.at(-1)?.delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_ACTIVE);
    } finally {
      watcher.cancel();
    }
  });

  it("holds its two named connections on Redis's TLS port", async () => {
    const admin = redis.admin();
    try {
      await admin.connect();
      const clients = String(await admin.client("LIST"))
        .trim()
        .split("\n")
        .map((line) => Object.fromEntries(line.split(" ").map((field) => field.split("=", 2) as [string, string])));

      const ours = clients.filter((c) => c.name?.startsWith("delivery-service"));

      expect(ours.map((c) => c.name).sort()).toEqual(["delivery-service", "delivery-service:subscriber"]);
      // The server has no plaintext port; laddr says which port they came in on.
      for (const c of ours) expect(c.laddr).toBe(`127.0.0.1:${redis.tlsPort}`);
    } finally {
      admin.disconnect();
    }
  });
});

describe.each([
  { what: "a wrong password", url: () => redissUrl(`wrong-${randomBytes(4).toString("hex")}`), caFile: () => pki.ca.certFile },
  { what: "no REDIS_TLS_CA_FILE, so the private CA is not trusted", url: () => redissUrl(redis.password), caFile: () => undefined },
])("rediss:// with $what", ({ url, caFile }) => {
  let service: TestService;
  let client: DeliveryServiceClient;
  let health: HealthClient;
  let startedAt: number;

  beforeAll(async () => {
    startedAt = Date.now();
    service = await startService(url(), caFile());
    client = service.client();
    health = healthClient(service.address);
  });

  afterAll(async () => {
    health?.close();
    await stopService(service);
  });

  it("starts, and reports NOT_SERVING", async () => {
    expect(await health.check("", 3_000)).toBe("NOT_SERVING");
  });

  it("answers UNAVAILABLE to the calls that need Redis, without waiting out their deadline", async () => {
    const started = Date.now();

    const create = await rejectionOf(createDelivery(client));
    const get = await rejectionOf(getDelivery(client, "redis-tls-unreachable", 5_000));

    expect([codeName(create), codeName(get)]).toEqual(["UNAVAILABLE", "UNAVAILABLE"]);
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("keeps retrying Redis in the background, backing off instead of looping", async () => {
    // Each failed attempt is counted per connection (and logged).
    const failed = async (connection: string) =>
      (await service.server.metrics.redisErrors.get()).values.find((v) => v.labels.connection === connection)?.value ?? 0;

    await waitUntil(
      async () => (await failed("commands")) >= 5 && (await failed("subscriber")) >= 5,
      "five failed attempts on each Redis connection",
      5_000,
    );

    // Retries wait 100, 200, 400, 800 ms: a handshake loop without backoff would fail five times in a few ms.
    expect(Date.now() - startedAt).toBeGreaterThan(250);
  });
});

describe("loadConfig: REDIS_TLS_CA_FILE", () => {
  it.each([
    { what: "a redis:// URL", REDIS_URL: "redis://localhost:6390" },
    { what: "no REDIS_URL", REDIS_URL: undefined },
  ])("is a ConfigError with $what", ({ REDIS_URL }) => {
    const load = () => loadConfig({ REDIS_URL, REDIS_TLS_CA_FILE: "/etc/redis/ca.pem" });

    expect(load).toThrow(ConfigError);
    expect(load).toThrow("REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL");
  });

  it("is taken with a rediss:// URL", () => {
    const config = loadConfig({ REDIS_URL: "rediss://:secret@redis.internal:6390", REDIS_TLS_CA_FILE: pki.ca.certFile });

    expect(config.redisTlsCaFile).toBe(pki.ca.certFile);
  });

  it("is a ConfigError when the file cannot be read", () => {
    const load = () => loadConfig({ REDIS_URL: "rediss://redis.internal:6390", REDIS_TLS_CA_FILE: "/nonexistent/ca.pem" });

    expect(load).toThrow(ConfigError);
    expect(load).toThrow("REDIS_TLS_CA_FILE cannot be read");
  });

  it("is a ConfigError when the file is not PEM", () => {
    const load = () => loadConfig({ REDIS_URL: "rediss://redis.internal:6390", REDIS_TLS_CA_FILE: fileURLToPath(import.meta.url) });

    expect(load).toThrow("REDIS_TLS_CA_FILE is not a PEM file");
  });
});

describe("loadConfig: REDIS_URL scheme", () => {
  it("keeps TLS on for an upper-case REDISS:// scheme", () => {
    expect(loadConfig({ REDIS_URL: "REDISS://:secret@redis.internal:6390" }).redisUrl).toBe("rediss://:secret@redis.internal:6390");
  });
});
