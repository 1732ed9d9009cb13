/**
 * grpc.health.v1.Health follows Redis: SERVING while both Redis connections
 * are ready, NOT_SERVING while Redis is unreachable, SERVING again when it is
 * back, without restarting the service.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { SERVICE_NAME } from "../../src/server.js";
import { rejectionOf, waitUntil } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { type HealthClient, healthClient, type HealthWatch, transitions } from "../support/health.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { codeName } from "./opsSupport.js";

describe("with Redis", () => {
  let redis: RedisServerHandle;
  let service: TestService;
  let health: HealthClient;
  let client: DeliveryServiceClient;
  let healthWatch: HealthWatch;
  const deliveryId = `health-${randomBytes(4).toString("hex")}`;

  beforeAll(async () => {
    redis = await startRedisServer();
    service = await startTestService({ redisUrl: redis.url });
    health = healthClient(service.address);
    client = service.client();
    healthWatch = health.watch(SERVICE_NAME);
  });

  afterAll(async () => {
    healthWatch?.cancel();
    health?.close();
    await service?.stop();
    await redis?.stop();
  });

  // The tests below run in order: up, down, up again.

  it.each(["", SERVICE_NAME])("reports SERVING for %j while Redis is up", async (name) => {
    expect(await health.check(name)).toBe("SERVING");
  });

  it("answers NOT_FOUND for a service it does not serve", async () => {
    const error = await rejectionOf(health.check("no.such.Service"));
    expect(codeName(error)).toBe("NOT_FOUND");
  });

  it("reports NOT_SERVING within a few seconds of Redis going away, on Check and on Watch", async () => {
    await createDelivery(client, { deliveryId, budget: 100n });
    await redis.stop();
    await healthWatch.until("NOT_SERVING", 5_000);
    await waitUntil(async () => (await health.check("")) === "NOT_SERVING", "Check('') to report NOT_SERVING", 5_000);
    expect(await health.check(SERVICE_NAME)).toBe("NOT_SERVING");
  });

  it("fails commands fast with UNAVAILABLE while Redis is down", async () => {
    const started = Date.now();
    const error = await rejectionOf(getDelivery(client, deliveryId, 10_000));
    expect(codeName(error)).toBe("UNAVAILABLE");
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it("reports SERVING again once Redis is back, without a restart", async () => {
    await redis.restart();
    await waitUntil(async () => (await health.check("")) === "SERVING", "Check('') to report SERVING", 8_000);
    expect(await health.check(SERVICE_NAME)).toBe("SERVING");
    await waitUntil(() => healthWatch.statuses.at(-1) === "SERVING", "the health watch to report SERVING after NOT_SERVING", 5_000);
    expect(transitions(healthWatch.statuses)).toEqual(["SERVING", "NOT_SERVING", "SERVING"]);
    // A command works again, served by the same process (the restarted Redis kept nothing: NOT_FOUND is an answer).
    const error = await rejectionOf(getDelivery(client, deliveryId));
    expect(codeName(error)).toBe("NOT_FOUND");
  });
});

describe("with the in-memory store (no REDIS_URL)", () => {
  let service: TestService;
  let health: HealthClient;

  beforeAll(async () => {
    service = await startTestService({});
    health = healthClient(service.address);
  });

  afterAll(async () => {
    health?.close();
    await service?.stop();
  });

  it.each(["", SERVICE_NAME])("reports SERVING for %j", async (name) => {
    expect(await health.check(name)).toBe("SERVING");
  });
});
