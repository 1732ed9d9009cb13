/**
 * NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION and ABORTED end to end,
 * against Redis; each rejection is checked to have written nothing.
 */
import { status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryIn, deliveryKeys, expectStatus, redisSnapshot, type StatusName } from "./e2e.support.js";

let service: TestService;
let client: DeliveryServiceClient;
let redis: Redis;

/** One delivery in each status; see deliveryIn() for what each holds. */
const IN: { readonly [S in StatusName]: string } = {
  READY: "st-ready", // version 1, budget 1000
  ACTIVE: "st-active", // version 2, budget 1000
  COLLECTED: "st-collected", // version 3, 4 products, budget 960
  COMPLETED: "st-completed", // version 4
  CANCELLED: "st-cancelled", // version 2
};
const UNKNOWN = "no-such-delivery";

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl() });
  client = service.client();
  redis = connectRedis(testRedisUrl());
  for (const [target, id] of Object.entries(IN)) await deliveryIn(client, target as StatusName, id);
});

afterAll(async () => {
  redis?.disconnect();
  await service?.stop();
});

async function everything() {
  const deliveries = [];
  for (const deliveryId of Object.values(IN)) deliveries.push((await call(client, "getDelivery", { deliveryId })).delivery);
  return { deliveries, redis: await redisSnapshot(redis, service.keyPrefix) };
}

/** The call fails with `code` and nothing under the prefix changed. */
async function expectRejectedWithoutWrites(run: () => Promise<unknown>, code: status) {
  const before = await everything();

  const error = await expectStatus(run(), code);

  expect(await everything()).toEqual(before);
  return error;
}

type Command = "start" | "pickup" | "deliver" | "increase" | "cancel";

/** Each command with inputs that are valid in the status it is allowed from. */
const COMMAND: { readonly [C in Command]: (deliveryId: string, expectedVersion?: bigint) => Promise<unknown> } = {
  start: (deliveryId, expectedVersion) => call(client, "startDelivery", { deliveryId, expectedVersion }),
  pickup: (deliveryId, expectedVersion) =>
    call(client, "pickupProducts", { deliveryId, purchasePrice: 10n, quantity: 1n, expectedVersion }),
  deliver: (deliveryId, expectedVersion) =>
    call(client, "deliverProducts", { deliveryId, sellPrice: 10n, quantity: 1n, expectedVersion }),
  increase: (deliveryId, expectedVersion) => call(client, "increaseBudget", { deliveryId, amount: 5n, expectedVersion }),
  cancel: (deliveryId, expectedVersion) => call(client, "cancelDelivery", { deliveryId, reason: "test", expectedVersion }),
};

describe("NOT_FOUND", () => {
  it.each([
    ["StartDelivery", () => COMMAND.start(UNKNOWN)],
    ["PickupProducts", () => COMMAND.pickup(UNKNOWN)],
    ["DeliverProducts", () => COMMAND.deliver(UNKNOWN)],
    ["IncreaseBudget", () => COMMAND.increase(UNKNOWN)],
    ["CancelDelivery", () => COMMAND.cancel(UNKNOWN)],
    ["StartDelivery with expected_version 0", () => COMMAND.start(UNKNOWN, 0n)],
    ["GetDelivery", () => call(client, "getDelivery", { deliveryId: UNKNOWN })],
    ["GetDelivery at_version 1", () => call(client, "getDelivery", { deliveryId: UNKNOWN, atVersion: 1n })],
    ["ListDeliveryEvents", () => call(client, "listDeliveryEvents", { deliveryId: UNKNOWN })],
    ["ListDeliveryEvents after_version 3", () => call(client, "listDeliveryEvents", { deliveryId: UNKNOWN, afterVersion: 3n })],
  ])("answers %s on an unknown delivery with NOT_FOUND, creating no keys", async (_, run) => {
    const error = await expectRejectedWithoutWrites(run, status.NOT_FOUND);

    expect(error.details).toContain(UNKNOWN);
    const unknown = deliveryKeys(service.keyPrefix, UNKNOWN);
    expect(await redis.exists(unknown.log, unknown.requests)).toBe(0);
  });

  it("answers IncreaseBudget with expected_version 1 on an unknown delivery with NOT_FOUND", async () => {
    await expectRejectedWithoutWrites(() => COMMAND.increase(UNKNOWN, 1n), status.NOT_FOUND);
  });

  it.each([
    ["READY", 2n],
    ["COMPLETED", 5n],
    ["COMPLETED", 9_007_199_254_740_991n],
  ] as const)("answers GetDelivery of a %s delivery at_version %s, beyond its current version, with NOT_FOUND", async (name, atVersion) => {
    const error = await expectRejectedWithoutWrites(
      () => call(client, "getDelivery", { deliveryId: IN[name], atVersion }),
      status.NOT_FOUND,
    );

    expect(error.details).toContain(String(atVersion));
  });
});

describe("ALREADY_EXISTS", () => {
  it.each([
    ["the same request", { budget: 1000n, notes: "fixture READY" }],
    ["another budget", { budget: 5n }],
    ["a new request_id", { budget: 1000n, requestId: "another-create" }],
  ])("answers a create of an existing id with %s with ALREADY_EXISTS", async (_, request) => {
    const error = await expectRejectedWithoutWrites(
      () => call(client, "createDelivery", { deliveryId: IN.READY, ...request }),
      status.ALREADY_EXISTS,
    );

    expect(error.details).toContain(IN.READY);
  });

  it("answers a create of a finished delivery's id with ALREADY_EXISTS", async () => {
    await expectRejectedWithoutWrites(
      () => call(client, "createDelivery", { deliveryId: IN.COMPLETED, budget: 1n }),
      status.ALREADY_EXISTS,
    );
  });
});

describe("FAILED_PRECONDITION", () => {
  const DISALLOWED: [StatusName, Command][] = [
    ["READY", "pickup"],
    ["READY", "deliver"],
    ["ACTIVE", "start"],
    ["ACTIVE", "deliver"],
    ["COLLECTED", "start"],
    ["COLLECTED", "pickup"],
    ...(["start", "pickup", "deliver", "increase", "cancel"] as const).flatMap((command) => [
      ["COMPLETED", command] as [StatusName, Command],
      ["CANCELLED", command] as [StatusName, Command],
    ]),
  ];

  it.each(DISALLOWED)("refuses, in status %s, to %s, naming the status", async (name, command) => {
    const error = await expectRejectedWithoutWrites(() => COMMAND[command](IN[name]), status.FAILED_PRECONDITION);

    expect(error.details).toContain(name);
  });

  it("refuses a pickup that costs more than the budget", async () => {
    const error = await expectRejectedWithoutWrites(
      () => call(client, "pickupProducts", { deliveryId: IN.ACTIVE, purchasePrice: 100n, quantity: 11n }),
      status.FAILED_PRECONDITION,
    );

    expect(error.details).toContain("ACTIVE");
    expect(error.details).toContain("budget");
  });

  it("refuses to deliver more products than are left", async () => {
    const error = await expectRejectedWithoutWrites(
      () => call(client, "deliverProducts", { deliveryId: IN.COLLECTED, sellPrice: 1n, quantity: 5n }),
      status.FAILED_PRECONDITION,
    );

    expect(error.details).toContain("COLLECTED");
    expect(error.details).toContain("quantity");
  });

  it("accepts a pickup that costs exactly the budget (the check is not off by one)", async () => {
    await deliveryIn(client, "ACTIVE", "st-exact-budget");

    const { delivery } = await call(client, "pickupProducts", { deliveryId: "st-exact-budget", purchasePrice: 100n, quantity: 10n });

    expect(delivery?.budget).toBe(0n);
  });
});

describe("ABORTED", () => {
  it.each([
    ["start", "READY", 0n],
    ["start", "READY", 2n],
    ["cancel", "READY", 7n],
    ["increase", "READY", 9_007_199_254_740_991n],
    ["pickup", "ACTIVE", 1n],
    ["cancel", "ACTIVE", 3n],
    ["deliver", "COLLECTED", 2n],
    ["increase", "COLLECTED", 4n],
  ] as const)("refuses to %s a %s delivery with a stale expected_version %s", async (command, name, expectedVersion) => {
    const error = await expectRejectedWithoutWrites(() => COMMAND[command](IN[name], expectedVersion), status.ABORTED);

    expect(error.details).toContain(String(expectedVersion));
  });
});
