/**
 * Redis going away and coming back, on a private redis-server: commands fail
 * fast with UNAVAILABLE (never hang), write nothing, and succeed again once
 * Redis is back, without restarting the service.
 */
import { status } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { eventually } from "../support/async.js";
import { type HealthClient, healthClient } from "../support/health.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { expectStatus, STATUS } from "./e2e.support.js";

/** Per-call deadline: a hang shows up as DEADLINE_EXCEEDED, which is not UNAVAILABLE. */
const DEADLINE_MS = 5_000;
/** "Fails fast": well under the deadline. */
const FAST_MS = 3_000;

let redisServer: RedisServerHandle;
let service: TestService;
let client: DeliveryServiceClient;
let health: HealthClient;

beforeAll(async () => {
  // appendonly: what was written before the outage is still there after restart().
  redisServer = await startRedisServer({ appendonly: true });
  service = await startTestService({ redisUrl: redisServer.url });
  client = service.client();
  health = healthClient(service.address);
  await call(client, "createDelivery", { deliveryId: "before-outage", budget: 100n });
});

afterAll(async () => {
  health?.close();
  await service?.stop();
  await redisServer?.kill();
});

/** Each kind of call, each against a delivery that exists (or would). */
const CALLS = [
  ["CreateDelivery", () => call(client, "createDelivery", { deliveryId: "during-outage", budget: 1n }, { deadlineMs: DEADLINE_MS })],
  ["StartDelivery", () => call(client, "startDelivery", { deliveryId: "before-outage" }, { deadlineMs: DEADLINE_MS })],
  ["IncreaseBudget", () => call(client, "increaseBudget", { deliveryId: "before-outage", amount: 1n }, { deadlineMs: DEADLINE_MS })],
  ["GetDelivery", () => call(client, "getDelivery", { deliveryId: "before-outage" }, { deadlineMs: DEADLINE_MS })],
  ["ListDeliveries", () => call(client, "listDeliveries", {}, { deadlineMs: DEADLINE_MS })],
  ["ListDeliveryEvents", () => call(client, "listDeliveryEvents", { deliveryId: "before-outage" }, { deadlineMs: DEADLINE_MS })],
] as const;

describe("while Redis is stopped", () => {
  beforeAll(async () => {
    await redisServer.stop();
  });

  it.each(CALLS)("%s fails fast with UNAVAILABLE", async (_, run) => {
    const start = Date.now();

    const error = await expectStatus(run(), status.UNAVAILABLE);

    expect(Date.now() - start).toBeLessThan(FAST_MS);
    expect(error.details).toMatch(/unavailable/i);
    expect(error.status.errorInfo?.reason).toBe("STORE_UNAVAILABLE");
    expect(error.status.retryDelayMs).toBe(1_000);
  });

  it("keeps failing fast on every retry, not just the first", async () => {
    const start = Date.now();
    for (let i = 0; i < 5; i++) {
      await expectStatus(call(client, "getDelivery", { deliveryId: "before-outage" }, { deadlineMs: DEADLINE_MS }), status.UNAVAILABLE);
    }

    expect(Date.now() - start).toBeLessThan(FAST_MS);
  });

  it("reports health NOT_SERVING for the server and the delivery service", async () => {
    await eventually(
      async () => {
        expect([await health.check("", 1_000), await health.check("delivery.v1.DeliveryService", 1_000)]).toEqual([
          "NOT_SERVING",
          "NOT_SERVING",
        ]);
      },
      { timeoutMs: 5_000 },
    );
  });
});

describe("after Redis is back", () => {
  beforeAll(async () => {
    await redisServer.restart();
  });

  it("accepts commands again, without restarting the service", async () => {
    // Polled with a request_id: an attempt that landed but lost its reply is simply replayed.
    const { delivery } = await eventually(
      () => call(client, "createDelivery", { deliveryId: "after-outage", budget: 5n, requestId: "after-1" }, { deadlineMs: 2_000 }),
      { timeoutMs: 15_000, intervalMs: 100 },
    );

    expect(delivery).toMatchObject({ id: "after-outage", version: 1n, status: STATUS.READY });
  });

  it("kept what was written before the outage, and nothing from during it", async () => {
    const { delivery } = await call(client, "getDelivery", { deliveryId: "before-outage" });
    const { deliveries } = await call(client, "listDeliveries", {});

    expect(delivery).toMatchObject({ version: 1n, status: STATUS.READY, budget: 100n });
    expect(deliveries.map((d) => d.id)).toEqual(["before-outage", "after-outage"]);
    await expectStatus(call(client, "getDelivery", { deliveryId: "during-outage" }), status.NOT_FOUND);
  });

  it("runs the rest of a life on a delivery made before the outage", async () => {
    await call(client, "startDelivery", { deliveryId: "before-outage" });

    const { delivery } = await call(client, "cancelDelivery", { deliveryId: "before-outage", reason: "outage" });

    expect(delivery).toMatchObject({ version: 3n, status: STATUS.CANCELLED });
  });

  it("reports health SERVING again", async () => {
    await eventually(
      async () => {
        expect([await health.check("", 1_000), await health.check("delivery.v1.DeliveryService", 1_000)]).toEqual([
          "SERVING",
          "SERVING",
        ]);
      },
      { timeoutMs: 5_000 },
    );
  });
});

describe("while Redis is frozen (SIGSTOP: connected but silent)", () => {
  let redisPid: number;

  beforeAll(async () => {
    const probe = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
    try {
      redisPid = Number(/process_id:(\d+)/.exec(await probe.info("server"))?.[1]);
    } finally {
      probe.disconnect();
    }
    expect(redisPid).toBeGreaterThan(0);
  });

  it("a command fails with UNAVAILABLE within the store's timeout, and its retry after the thaw records one event", async () => {
    const request = { deliveryId: "frozen", budget: 9n, requestId: "frozen-1" };
    process.kill(redisPid, "SIGSTOP");
    try {
      const start = Date.now();

      await expectStatus(call(client, "createDelivery", request, { deadlineMs: DEADLINE_MS }), status.UNAVAILABLE);

      expect(Date.now() - start).toBeLessThan(4_000);
    } finally {
      process.kill(redisPid, "SIGCONT");
    }

    const retried = await eventually(() => call(client, "createDelivery", request, { deadlineMs: 2_000 }));
    const { events } = await call(client, "listDeliveryEvents", { deliveryId: "frozen" });

    expect(retried.event?.version).toBe(1n);
    expect(events).toHaveLength(1);
  });
});
