/**
 * Concurrent commands on one delivery, over several client channels, against
 * Redis: optimistic concurrency lets exactly the allowed ones through and
 * keeps the log gap-free.
 */
import { type ServiceError, status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryKeys, indexedCount, STATUS } from "./e2e.support.js";

let service: TestService;
let clients: DeliveryServiceClient[];
let redis: Redis;

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl() });
  clients = Array.from({ length: 5 }, () => service.client());
  redis = connectRedis(testRedisUrl());
});

afterAll(async () => {
  redis?.disconnect();
  await service?.stop();
});

/** The client for the i-th concurrent call: calls spread over every channel. */
const clientFor = (i: number) => clients[i % clients.length]!;

/** Outcome counts by status code name ("OK" for success). */
function tally(results: PromiseSettledResult<unknown>[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const result of results) {
    const name = result.status === "fulfilled" ? "OK" : status[(result.reason as ServiceError).code];
    counts[name] = (counts[name] ?? 0) + 1;
  }
  return counts;
}

describe("20 concurrent StartDelivery on one delivery", () => {
  const id = "race-start";
  let results: PromiseSettledResult<unknown>[];

  beforeAll(async () => {
    await call(clientFor(0), "createDelivery", { deliveryId: id, budget: 10n });
    results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => call(clientFor(i), "startDelivery", { deliveryId: id })),
    );
  });

  it("let exactly one through; the other 19 fail with FAILED_PRECONDITION", () => {
    expect(tally(results)).toEqual({ OK: 1, FAILED_PRECONDITION: 19 });
  });

  it("tell the losers the delivery is ACTIVE", () => {
    for (const result of results) {
      if (result.status === "rejected") expect((result.reason as ServiceError).details).toContain("ACTIVE");
    }
  });

  it("recorded exactly one started event", async () => {
    const { events } = await call(clientFor(0), "listDeliveryEvents", { deliveryId: id });

    expect(events.map((e) => [e.version, e.kind?.$case])).toEqual([
      [1n, "created"],
      [2n, "started"],
    ]);
    expect(await redis.llen(deliveryKeys(service.keyPrefix, id).log)).toBe(2);
  });
});

describe("50 concurrent IncreaseBudget on one delivery", () => {
  const id = "race-budget";
  const amounts = Array.from({ length: 50 }, (_, i) => BigInt(i + 1)); // 1..50, sum 1275
  let results: PromiseSettledResult<Awaited<ReturnType<typeof call<"increaseBudget">>>>[];

  beforeAll(async () => {
    await call(clientFor(0), "createDelivery", { deliveryId: id, budget: 1000n });
    results = await Promise.allSettled(
      amounts.map((amount, i) => call(clientFor(i), "increaseBudget", { deliveryId: id, amount })),
    );
  });

  it("all succeed", () => {
    expect(tally(results)).toEqual({ OK: 50 });
  });

  it("end with the exact budget: 1000 + 1 + 2 + ... + 50", async () => {
    const { delivery } = await call(clientFor(0), "getDelivery", { deliveryId: id });

    expect(delivery).toMatchObject({ budget: 2275n, version: 51n, status: STATUS.READY });
  });

  it("each got its own version, 2 to 51", () => {
    const versions = results.map((r) => (r.status === "fulfilled" ? r.value.event?.version : undefined));

    expect(versions.sort((a, b) => Number(a! - b!))).toEqual(amounts.map((a) => a + 1n));
  });

  it("left a log with versions 1..51, contiguous and ascending, each amount exactly once", async () => {
    const { events } = await call(clientFor(0), "listDeliveryEvents", { deliveryId: id });

    expect(events.map((e) => e.version)).toEqual([1n, ...amounts.map((a) => a + 1n)]);
    const recorded = events.flatMap((e) => (e.kind?.$case === "budgetIncreased" ? [e.kind.budgetIncreased.amount] : []));
    expect(recorded.sort((a, b) => Number(a - b))).toEqual(amounts);
  });

  it("left a state after each event whose budget is the running sum of the log", async () => {
    const { events } = await call(clientFor(0), "listDeliveryEvents", { deliveryId: id });
    let budget = 1000n;
    const expected: bigint[] = [];
    for (const e of events) {
      if (e.kind?.$case === "budgetIncreased") budget += e.kind.budgetIncreased.amount;
      expected.push(budget);
    }

    const actual: bigint[] = [];
    for (const e of events) {
      actual.push((await call(clientFor(0), "getDelivery", { deliveryId: id, atVersion: e.version })).delivery!.budget);
    }

    expect(actual).toEqual(expected);
  });
});

describe("concurrent commands with the same expected_version", () => {
  it("let exactly one through; the rest fail with ABORTED", async () => {
    await call(clientFor(0), "createDelivery", { deliveryId: "race-expected", budget: 0n });

    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) =>
        call(clientFor(i), "increaseBudget", { deliveryId: "race-expected", amount: 1n, expectedVersion: 1n }),
      ),
    );

    expect(tally(results)).toEqual({ OK: 1, ABORTED: 9 });
    expect(await redis.llen(deliveryKeys(service.keyPrefix, "race-expected").log)).toBe(2);
  });
});

describe("concurrent creates", () => {
  it("of one id let exactly one through; the rest fail with ALREADY_EXISTS and it is indexed once", async () => {
    const indexBefore = await indexedCount(redis, service.keyPrefix);

    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => call(clientFor(i), "createDelivery", { deliveryId: "race-create", budget: BigInt(i) })),
    );

    expect(tally(results)).toEqual({ OK: 1, ALREADY_EXISTS: 19 });
    expect(await indexedCount(redis, service.keyPrefix)).toBe(indexBefore + 1);
  });

  it("without an id but with one request_id all return the same delivery, created once", async () => {
    const indexBefore = await indexedCount(redis, service.keyPrefix);

    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(clientFor(i), "createDelivery", { budget: 99n, requestId: "double-click" })),
    );

    expect(new Set(responses.map((r) => r.delivery?.id)).size).toBe(1);
    for (const response of responses) expect(response).toEqual(responses[0]);
    expect(await redis.llen(deliveryKeys(service.keyPrefix, responses[0]!.delivery!.id).log)).toBe(1);
    expect(await indexedCount(redis, service.keyPrefix)).toBe(indexBefore + 1);
  });
});
