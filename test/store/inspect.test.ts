/**
 * The operators' view of storage layout 2 (`npm run inspect`): a delivery
 * written through the real Redis store, read back decoded.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { inspectDeliveries, type InspectedDelivery } from "../../src/store/redis/inspect.js";
import { createRedisKeys, DEFAULT_PARTITIONS } from "../../src/store/redis/keys.js";
import { createRedisEventStore, StoreLayoutError } from "../../src/store/redis/redisEventStore.js";
import { cmd, recordOn, recordsOf, STEP_MS, T0_MS } from "../domain/deliveryScenario.js";
import { connectRedis, testRedisUrl, uniquePrefix } from "../support/redis.js";
import { appendAll, fingerprintOf, requestKeyOf } from "./eventStoreContract.js";

const COMPLETED = [cmd.create(1000, "leave at the door"), cmd.start(), cmd.pickup(100, 5), cmd.increaseBudget(25), cmd.deliver(150, 5)];

describe("inspect: what the store keeps for a delivery, readable", () => {
  let redis: Redis;
  let prefix: string;

  beforeAll(() => {
    redis = connectRedis(testRedisUrl());
  });

  afterAll(async () => {
    await redis.quit();
  });

  beforeEach(() => {
    prefix = uniquePrefix();
  });

  async function written(id: string, retainFinishedForMs?: number): Promise<InspectedDelivery> {
    const store = createRedisEventStore({ redis, keyPrefix: prefix, retainFinishedForMs });
    await appendAll(store, recordsOf(id, COMPLETED));
    const [result] = await inspectDeliveries(redis, prefix, [id]);
    if (!result?.found) throw new Error(`${id} not found`);
    return result;
  }

  it("names the delivery's partition and keys", async () => {
    const k = createRedisKeys(prefix, DEFAULT_PARTITIONS).delivery("d-inspect");

    const result = await written("d-inspect");

    expect(result.partition).toBe(k.partition);
    expect(result.keys).toEqual({ log: k.log, requests: k.requests, feed: k.feed, index: k.index("COMPLETED"), expiry: k.expiry, channel: k.channel });
  });

  it("decodes every event with its version, type, data, request id, actor and time", async () => {
    const result = await written("d-events");

    expect(result.events.map(({ bytes: _bytes, ...event }) => event)).toEqual([
      { version: 1, type: "created", data: { budgetMinor: 1000, notes: "leave at the door" }, requestId: "req-1", actor: "", occurredAtMs: T0_MS, occurredAt: "2025-01-01T00:00:00.000Z" },
      { version: 2, type: "started", data: {}, requestId: "req-2", actor: "", occurredAtMs: T0_MS + STEP_MS, occurredAt: "2025-01-01T00:01:00.000Z" },
      { version: 3, type: "productsPickedUp", data: { purchasePriceMinor: 100, quantity: 5 }, requestId: "req-3", actor: "", occurredAtMs: T0_MS + 2 * STEP_MS, occurredAt: "2025-01-01T00:02:00.000Z" },
      { version: 4, type: "budgetIncreased", data: { amountMinor: 25 }, requestId: "req-4", actor: "", occurredAtMs: T0_MS + 3 * STEP_MS, occurredAt: "2025-01-01T00:03:00.000Z" },
      { version: 5, type: "productsDelivered", data: { sellPriceMinor: 150, quantity: 5 }, requestId: "req-5", actor: "", occurredAtMs: T0_MS + 4 * STEP_MS, occurredAt: "2025-01-01T00:04:00.000Z" },
    ]);
    for (const event of result.events) expect(event.bytes).toBeGreaterThan(0);
  });

  it("gives the current state, the fold of the log", async () => {
    const result = await written("d-state");

    expect(result.state).toEqual({
      ...recordsOf("d-state", COMPLETED).at(-1)!.delivery,
      createdAt: "2025-01-01T00:00:00.000Z",
      updatedAt: "2025-01-01T00:04:00.000Z",
    });
    expect(result.state.status).toBe("COMPLETED");
  });

  it("lists the request hash: request ids with their versions and fingerprints", async () => {
    const result = await written("d-requests");

    expect(result.requests).toEqual(
      [1, 2, 3, 4, 5].map((v) => ({ field: `r${requestKeyOf(v)}`, kind: "client", requestId: requestKeyOf(v), version: v, fingerprint: fingerprintOf(v) })),
    );
  });

  it("marks an append without a request_id as a private key", async () => {
    const store = createRedisEventStore({ redis, keyPrefix: prefix });
    const [created] = recordsOf("d-private", [cmd.create(10)]);
    await store.append({ record: created!, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp-x" });

    const [result] = await inspectDeliveries(redis, prefix, ["d-private"]);

    expect(result?.found && result.requests).toEqual([{ field: expect.stringMatching(/^a/), kind: "private", requestId: "", version: 1, fingerprint: "fp-x" }]);
    expect(result?.found && result.events[0]?.requestId).toBe("");
  });

  it("shows its index entry under the current status only", async () => {
    const k = createRedisKeys(prefix, DEFAULT_PARTITIONS).delivery("d-index");

    const result = await written("d-index");

    const entry = { status: "COMPLETED", key: k.index("COMPLETED"), member: `${String(T0_MS).padStart(13, "0")}d-index` };
    expect(result.index).toEqual({ expected: entry, found: [entry] });
  });

  it("shows the expiry entry of a finished delivery under retention", async () => {
    const result = await written("d-expiry", 3_600_000);

    const dueAtMs = T0_MS + 4 * STEP_MS + 3_600_000;
    expect(result.index.expiry).toEqual({ member: `4${String(T0_MS).padStart(13, "0")}d-expiry`, dueAtMs, dueAt: new Date(dueAtMs).toISOString() });
  });

  it("finds its feed entries among the partition's, with the statuses before and after", async () => {
    // Another delivery of the same partition interleaved in the feed.
    const partitionOf = createRedisKeys(prefix, DEFAULT_PARTITIONS).partitionOf;
    const neighbour = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"].map((n) => `d-${n}`).find((id) => partitionOf(id) === partitionOf("d-feed"));
    const store = createRedisEventStore({ redis, keyPrefix: prefix });
    if (neighbour) await appendAll(store, recordsOf(neighbour, [cmd.create(5)]));

    const result = await written("d-feed");

    expect(result.feed.truncated).toBe(false);
    expect(result.feed.entries.map(({ id: _id, at: _at, ...entry }) => entry)).toEqual([
      { version: 1, statusBefore: "NONE", statusAfter: "READY", type: "created" },
      { version: 2, statusBefore: "READY", statusAfter: "ACTIVE", type: "started" },
      { version: 3, statusBefore: "ACTIVE", statusAfter: "COLLECTED", type: "productsPickedUp" },
      { version: 4, statusBefore: "COLLECTED", statusAfter: "COLLECTED", type: "budgetIncreased" },
      { version: 5, statusBefore: "COLLECTED", statusAfter: "COMPLETED", type: "productsDelivered" },
    ]);
    for (const entry of result.feed.entries) expect(entry.id).toMatch(/^\d+-\d+$/);
  });

  it("answers found: false for an unknown id, beside the known ones", async () => {
    await written("d-known");

    const results = await inspectDeliveries(redis, prefix, ["d-unknown", "d-known"]);

    expect(results.map((r) => [r.id, r.found])).toEqual([
      ["d-unknown", false],
      ["d-known", true],
    ]);
    expect(results[0]).toMatchObject({ log: createRedisKeys(prefix, DEFAULT_PARTITIONS).delivery("d-unknown").log });
  });

  it("refuses a prefix without a store, and writes nothing there", async () => {
    const error = await inspectDeliveries(redis, prefix, ["d1"]).then(() => undefined, (e: unknown) => e);

    expect(error).toBeInstanceOf(StoreLayoutError);
    expect(await redis.exists(`${prefix}meta`)).toBe(0);
  });

  it("reads a delivery the store wrote one event at a time, as the service does", async () => {
    const store = createRedisEventStore({ redis, keyPrefix: prefix });
    const created = recordOn("d-one", { status: "NONE", version: 0 }, cmd.create(7, "x"), "client-req");
    await store.append({ record: created, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp" });

    const [result] = await inspectDeliveries(redis, prefix, ["d-one"]);

    expect(result?.found && result.state).toMatchObject({ id: "d-one", status: "READY", budgetMinor: 7, version: 1 });
    expect(result?.found && result.events[0]).toMatchObject({ requestId: "client-req", type: "created" });
  });
});
