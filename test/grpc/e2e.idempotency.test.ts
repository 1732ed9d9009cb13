/**
 * request_id end to end against Redis: a retry returns the original response
 * and writes nothing; a request_id reused for another command is refused and
 * writes nothing.
 */
import { status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryIn, deliveryKeys, expectStatus, NAME_BASED_UUID, redisSnapshot, STATUS } from "./e2e.support.js";

let service: TestService;
let client: DeliveryServiceClient;
let retryClient: DeliveryServiceClient;
let redis: Redis;

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl() });
  client = service.client();
  // Retries go over another channel, as they would after a lost connection.
  retryClient = service.client();
  redis = connectRedis(testRedisUrl());
});

afterAll(async () => {
  redis?.disconnect();
  await service?.stop();
});

const snapshot = () => redisSnapshot(redis, service.keyPrefix);
const eventCount = (id: string) => redis.llen(deliveryKeys(service.keyPrefix, id).log);

describe("a retried create", () => {
  it("with a client id returns the original response and writes nothing", async () => {
    const request = { deliveryId: "idem-create", budget: 700n, notes: "gate code 1234", requestId: "create-idem" };
    const first = await call(client, "createDelivery", request);
    const before = await snapshot();

    const retry = await call(retryClient, "createDelivery", request);

    expect(retry).toEqual(first);
    expect(await snapshot()).toEqual(before);
  });

  it("without a client id finds the first attempt under the same derived id", async () => {
    const request = { budget: 300n, requestId: "checkout-42" };
    const first = await call(client, "createDelivery", request);
    const before = await snapshot();

    const retry = await call(retryClient, "createDelivery", request);

    expect(first.delivery?.id).toMatch(NAME_BASED_UUID);
    expect(retry).toEqual(first);
    expect(await snapshot()).toEqual(before);
  });

  it("after the delivery moved on still returns the original create", async () => {
    const request = { deliveryId: "idem-moved", budget: 50n, requestId: "create-moved" };
    const first = await call(client, "createDelivery", request);
    await call(client, "startDelivery", { deliveryId: "idem-moved" });

    const retry = await call(retryClient, "createDelivery", request);

    expect(retry).toEqual(first);
    expect(await eventCount("idem-moved")).toBe(2);
  });

  it("without a client id but with other contents is refused with INVALID_ARGUMENT and writes nothing", async () => {
    await call(client, "createDelivery", { budget: 300n, requestId: "checkout-43" });
    const before = await snapshot();

    const error = await expectStatus(
      call(retryClient, "createDelivery", { budget: 301n, requestId: "checkout-43" }),
      status.INVALID_ARGUMENT,
    );

    expect(error.details).toContain("checkout-43");
    expect(await snapshot()).toEqual(before);
  });
});

describe("a retried command", () => {
  const id = "idem-life";
  const requests = {
    start: { deliveryId: id, requestId: "idem-start" },
    pickup: { deliveryId: id, requestId: "idem-pickup", purchasePrice: 20n, quantity: 3n },
    deliver: { deliveryId: id, requestId: "idem-deliver", sellPrice: 30n, quantity: 1n },
    increase: { deliveryId: id, requestId: "idem-increase", amount: 11n },
  };

  beforeAll(async () => {
    await call(client, "createDelivery", { deliveryId: id, budget: 100n });
  });

  it.each([
    ["StartDelivery", () => call(client, "startDelivery", requests.start), () => call(retryClient, "startDelivery", requests.start)],
    ["IncreaseBudget", () => call(client, "increaseBudget", requests.increase), () => call(retryClient, "increaseBudget", requests.increase)],
    ["PickupProducts", () => call(client, "pickupProducts", requests.pickup), () => call(retryClient, "pickupProducts", requests.pickup)],
    ["DeliverProducts", () => call(client, "deliverProducts", requests.deliver), () => call(retryClient, "deliverProducts", requests.deliver)],
  ])("%s returns the original event (same version and occurredAt) and writes nothing", async (_, send, resend) => {
    const first = await send();
    const before = await snapshot();

    const retry = await resend();

    expect(retry).toEqual(first);
    expect(await snapshot()).toEqual(before);
  });

  it("returns the original response even when the command is no longer allowed", async () => {
    // The delivery is COLLECTED now: a fresh start would be FAILED_PRECONDITION.
    const { event } = await call(retryClient, "startDelivery", requests.start);

    expect(event).toMatchObject({ version: 2n, requestId: "idem-start", kind: { $case: "started" } });
  });

  it("returns the original response even with a now-stale expected_version", async () => {
    const { event } = await call(retryClient, "startDelivery", { ...requests.start, expectedVersion: 1n });

    expect(event?.version).toBe(2n);
  });

  it("returns the state as it was after the original event, not the current state", async () => {
    const { delivery } = await call(retryClient, "increaseBudget", requests.increase);

    expect(delivery).toMatchObject({ status: STATUS.ACTIVE, budget: 111n, version: 3n });
  });

  it("CancelDelivery returns the original cancellation and writes nothing", async () => {
    await deliveryIn(client, "ACTIVE", "idem-cancel");
    const request = { deliveryId: "idem-cancel", reason: "no one home", requestId: "idem-cancel-1" };
    const first = await call(client, "cancelDelivery", request);
    const before = await snapshot();

    const retry = await call(retryClient, "cancelDelivery", request);

    expect(retry).toEqual(first);
    expect(await snapshot()).toEqual(before);
  });
});

describe("a request_id reused for a different command", () => {
  const id = "idem-reuse";

  beforeAll(async () => {
    await call(client, "createDelivery", { deliveryId: id, budget: 100n });
    await call(client, "increaseBudget", { deliveryId: id, amount: 10n, requestId: "reused" });
  });

  it.each([
    ["another command", () => call(retryClient, "cancelDelivery", { deliveryId: id, requestId: "reused" })],
    ["the same command with another amount", () => call(retryClient, "increaseBudget", { deliveryId: id, amount: 20n, requestId: "reused" })],
    ["a start", () => call(retryClient, "startDelivery", { deliveryId: id, requestId: "reused" })],
  ])("is refused for %s with INVALID_ARGUMENT and writes nothing", async (_, reuse) => {
    const before = await snapshot();

    const error = await expectStatus(reuse(), status.INVALID_ARGUMENT);

    expect(error.details).toContain("reused");
    expect(await snapshot()).toEqual(before);
  });

  it("is refused on create of an existing id with INVALID_ARGUMENT and writes nothing", async () => {
    await call(client, "createDelivery", { deliveryId: "idem-reuse-create", budget: 1n, requestId: "first-create" });
    const before = await snapshot();

    await expectStatus(
      call(retryClient, "createDelivery", { deliveryId: "idem-reuse-create", budget: 2n, requestId: "first-create" }),
      status.INVALID_ARGUMENT,
    );

    expect(await snapshot()).toEqual(before);
  });
});

describe("a rejected command", () => {
  it("does not use up its request_id", async () => {
    await deliveryIn(client, "ACTIVE", "idem-rejected");
    await expectStatus(call(client, "startDelivery", { deliveryId: "idem-rejected", requestId: "try-1" }), status.FAILED_PRECONDITION);

    const { event } = await call(client, "increaseBudget", { deliveryId: "idem-rejected", amount: 1n, requestId: "try-1" });

    expect(event).toMatchObject({ version: 3n, requestId: "try-1", kind: { $case: "budgetIncreased" } });
  });
});

describe("commands without a request_id", () => {
  it("are not deduplicated: the same increase twice is two events", async () => {
    await call(client, "createDelivery", { deliveryId: "idem-none", budget: 0n });

    const first = await call(client, "increaseBudget", { deliveryId: "idem-none", amount: 5n });
    const second = await call(client, "increaseBudget", { deliveryId: "idem-none", amount: 5n });

    expect([first.event?.version, second.event?.version]).toEqual([2n, 3n]);
    expect(second.delivery?.budget).toBe(10n);
  });
});
