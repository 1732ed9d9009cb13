/**
 * Helpers shared by the end-to-end files (test/grpc/e2e.*.test.ts): status
 * assertions, a "nothing was written" snapshot of a key prefix, and
 * deliveries driven into a given status. Waiting and the health client are
 * shared: see ../support/async.ts and ../support/health.ts.
 */
import { type ServiceError, status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { expect } from "vitest";
import { type DeliveryServiceClient, DeliveryStatus } from "../../src/gen/delivery/v1/delivery.js";
import { createRedisKeys, type DeliveryKeys, INDEXED_STATUSES } from "../../src/store/redis/keys.js";
import { rejectionOf } from "../support/async.js";
import { type DecodedStatus, statusDetailsOf } from "../support/statusDetails.js";
import { call } from "../support/testServer.js";

/** 2^53-1, the largest amount, quantity or version the service accepts. */
export const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** 2^53: the first value the service must reject. */
export const TOO_BIG = MAX_SAFE + 1n;

export const RANDOM_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
export const NAME_BASED_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Ids that break ^[A-Za-z0-9_-]{1,64}$ (the empty id is added by callers where it is invalid). */
export const BAD_IDS: readonly [label: string, id: string][] = [
  ["65 characters", "a".repeat(65)],
  ["a slash", "a/b"],
  ["a colon", "a:b"],
  ["a hash tag", "{x}"],
  ["a space", "a b"],
  ["a dot", "a.b"],
  ["a non-ASCII letter", "caf\u00e9"],
  ["a trailing newline", "abc\n"],
  ["a glob", "a*"],
];

/**
 * Asserts the call fails with `code` and a clear message (non-empty, no stack
 * trace, no file paths), carrying google.rpc.Status details with the same
 * code and message and an ErrorInfo of domain delivery.v1. Resolves the error
 * (and its decoded details as `error.status`) for further checks.
 */
export async function expectStatus(promise: Promise<unknown>, code: status): Promise<ServiceError & { status: DecodedStatus }> {
  const error = await rejectionOf(promise);
  // Code names (and the message) in one object: a failure shows what came back.
  expect({ code: status[error.code], details: error.details }).toMatchObject({ code: status[code] });
  expect(error.details).toMatch(/\S/);
  expect(error.details).not.toMatch(/\n\s*at |\.[cm]?[jt]s:\d|node_modules|internal\//);
  const details = statusDetailsOf(error);
  expect(details, "grpc-status-details-bin").toBeDefined();
  expect({ code: details!.code, message: details!.message }).toEqual({ code: error.code, message: error.details });
  expect(details!.errorInfo?.domain).toBe("delivery.v1");
  expect(details!.errorInfo?.reason).toMatch(/^[A-Z][A-Z0-9_]*[A-Z0-9]$/);
  return Object.assign(error, { status: details! });
}

/** Every key under a prefix, sorted. */
export async function keysUnder(redis: Redis, prefix: string): Promise<string[]> {
  const keys = new Set<string>();
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    for (const key of batch) keys.add(key);
    cursor = next;
  } while (cursor !== "0");
  return [...keys].sort();
}

export interface RedisSnapshot {
  readonly keys: string[];
  /** DUMP of every key: equal dumps mean equal contents (lists, hashes, index sets, feeds). */
  readonly dumps: Record<string, string | undefined>;
}

/** What is stored under a prefix, precise enough that "unchanged" means "nothing was written". */
export async function redisSnapshot(redis: Redis, prefix: string): Promise<RedisSnapshot> {
  const keys = await keysUnder(redis, prefix);
  const dumps: Record<string, string | undefined> = {};
  for (const key of keys) dumps[key] = (await redis.dumpBuffer(key))?.toString("hex");
  return { keys, dumps };
}

/** A delivery's keys in storage layout 2 (the test service's store uses the default partitions). */
export function deliveryKeys(prefix: string, id: string): DeliveryKeys {
  return createRedisKeys(prefix).delivery(id);
}

/** How many deliveries the status indexes hold under a prefix. */
export async function indexedCount(redis: Redis, prefix: string): Promise<number> {
  const keys = createRedisKeys(prefix);
  let count = 0;
  for (let p = 0; p < keys.partitions; p++) {
    for (const status of INDEXED_STATUSES) count += await redis.zcard(keys.partition(p).index(status));
  }
  return count;
}

export type StatusName = "READY" | "ACTIVE" | "COLLECTED" | "COMPLETED" | "CANCELLED";

export const STATUS: { readonly [S in StatusName]: DeliveryStatus } = {
  READY: DeliveryStatus.DELIVERY_STATUS_READY,
  ACTIVE: DeliveryStatus.DELIVERY_STATUS_ACTIVE,
  COLLECTED: DeliveryStatus.DELIVERY_STATUS_COLLECTED,
  COMPLETED: DeliveryStatus.DELIVERY_STATUS_COMPLETED,
  CANCELLED: DeliveryStatus.DELIVERY_STATUS_CANCELLED,
};

/**
 * Creates `id` with budget 1000 and drives it into `target`. COLLECTED holds 4
 * products bought at 10 each (budget 960).
 */
export async function deliveryIn(client: DeliveryServiceClient, target: StatusName, id: string): Promise<void> {
  await call(client, "createDelivery", { deliveryId: id, budget: 1000n, notes: `fixture ${target}` });
  if (target === "READY") return;
  if (target === "CANCELLED") {
    await call(client, "cancelDelivery", { deliveryId: id, reason: "fixture" });
    return;
  }
  await call(client, "startDelivery", { deliveryId: id });
  if (target === "ACTIVE") return;
  await call(client, "pickupProducts", { deliveryId: id, purchasePrice: 10n, quantity: 4n });
  if (target === "COLLECTED") return;
  await call(client, "deliverProducts", { deliveryId: id, sellPrice: 15n, quantity: 4n });
}
