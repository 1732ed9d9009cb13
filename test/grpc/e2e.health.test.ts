/**
 * The standard grpc.health.v1 service, asked by a client built from the proto
 * grpc-health-check ships, on a service backed by Redis.
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type HealthClient, healthClient } from "../support/health.js";
import { testRedisUrl } from "../support/redis.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { expectStatus } from "./e2e.support.js";

let service: TestService;
let health: HealthClient;

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl() });
  health = healthClient(service.address);
});

afterAll(async () => {
  health?.close();
  await service?.stop();
});

describe("health", () => {
  it("reports the server as a whole SERVING", async () => {
    expect(await health.check("")).toBe("SERVING");
  });

  it("reports delivery.v1.DeliveryService SERVING", async () => {
    expect(await health.check("delivery.v1.DeliveryService")).toBe("SERVING");
  });

  it("answers an unknown service name with NOT_FOUND", async () => {
    await expectStatus(health.check("delivery.v1.NoSuchService"), status.NOT_FOUND);
  });
});
