/**
 * Hash slots that hold watched deliveries move to another primary of a real
 * Redis Cluster (3 primaries + 3 replicas). The safety nets are out of
 * reach: only the re-subscription after the server's SUNSUBSCRIBE, and the
 * catch-up from the log it triggers, can make these pass.
 *
 *   - No other traffic during the move; the commands after it reach every
 *     watcher, every later version once, in order; keys and subscriptions
 *     are on the new owner.
 *   - A version appended mid-migration (ASKed to the importing node, whose
 *     publication reaches nobody) reaches every watcher with nothing else
 *     happening: the catch-up did it.
 *   - A move under load: every call answers OK or UNAVAILABLE; retried with
 *     the same request id, every acknowledged command is in the log once,
 *     and every watcher sees every version once, in order.
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery, increaseBudget } from "../support/deliveries.js";
import { keySlot, type RedisClusterHandle, startRedisCluster } from "../support/redisCluster.js";
import { redisCommand } from "../support/redisServer.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion, SAFETY_NET_OFF_MS } from "../watch/watchSupport.js";
import {
  type Ack,
  clusterTargetOf,
  createAcknowledged,
  expectLogIsAcknowledged,
  guardAgainst,
  range,
  type RetryStats,
  startWriter,
  uid,
  versionsById,
  watchAll,
  watchProblem,
} from "./clusterSupport.js";

const timings: Record<string, number> = {};
let cluster: RedisClusterHandle;
let service: TestService;

/**
 * migrateSlot() by hand, with `midway` run once every key is on the target
 * but before any node is told the slot is the target's: the source still
 * owns the slot (and its subscribers), commands for it are ASKed to the
 * target, and what they publish there reaches nobody yet. Then SETSLOT NODE
 * (target, source, the rest), which pushes SUNSUBSCRIBE to the source's
 * subscribers, and a healthy cluster.
 */
async function migrateSlotWith(slot: number, toPort: number, midway: () => Promise<void>): Promise<void> {
  await cluster.refresh();
  const src = cluster.primaryForSlot(slot);
  const dst = cluster.node(toPort);
  await redisCommand(dst.port, ["CLUSTER", "SETSLOT", slot, "IMPORTING", src.id]);
  await redisCommand(src.port, ["CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id]);
  for (;;) {
    const keys = (await redisCommand(src.port, ["CLUSTER", "GETKEYSINSLOT", slot, 100], { buffers: true })) as Buffer[];
    if (keys.length === 0) break;
    await redisCommand(src.port, ["MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "REPLACE", "KEYS", ...keys], { timeoutMs: 10_000 });
  }
  await midway();
  await redisCommand(dst.port, ["CLUSTER", "SETSLOT", slot, "NODE", dst.id]);
  await redisCommand(src.port, ["CLUSTER", "SETSLOT", slot, "NODE", dst.id]);
  const others = cluster.primaries().filter((p) => p.port !== src.port && p.port !== dst.port);
  await Promise.all(others.map((p) => redisCommand(p.port, ["CLUSTER", "SETSLOT", slot, "NODE", dst.id])));
  await cluster.waitHealthy();
}

const repairedFromLog = async () => (await service.server.metrics.gapsRepaired.get()).values.reduce((n, v) => n + v.value, 0);

/** Subscribers of a shard channel on the node at `port`. */
async function shardSubscribers(port: number, channel: string): Promise<number> {
  const reply = (await redisCommand(port, ["PUBSUB", "SHARDNUMSUB", channel])) as [string, number];
  return Number(reply[1]);
}

beforeAll(async () => {
  const t0 = Date.now();
  cluster = await startRedisCluster();
  timings.clusterStartMs = Date.now() - t0;
  service = await startTestService({
    // Retention: a finished delivery puts its partition's expiry ZSet in place (see the mid-migration test).
    config: { redis: clusterTargetOf(cluster, { REDIS_COMMAND_TIMEOUT_MS: "2000" }), retainFinishedForMs: 3_600_000 },
    safetyNetIntervalMs: SAFETY_NET_OFF_MS,
  });
});

afterAll(async () => {
  await service?.stop();
  await cluster?.stopAll();
  console.log(`[slot migration timings] ${JSON.stringify(timings)}`);
});

describe("a slot of watched deliveries migrated to another primary", () => {
  let client: DeliveryServiceClient;
  let other: DeliveryServiceClient;

  beforeAll(() => {
    client = service.client();
    other = service.client();
  });

  it("watchers get every later version; the slot's keys and subscriptions are on the new owner", async () => {
    const keys = createRedisKeys(service.keyPrefix);
    // Two deliveries of the same partition (one slot), and one elsewhere.
    const first = `mig-${uid()}`;
    const partition = keys.partitionOf(first);
    const sibling = range(0, 10_000).map((n) => `mig-${uid()}-${n}`).find((id) => keys.partitionOf(id) === partition)!;
    const elsewhere = range(0, 10_000).map((n) => `mig-${uid()}-${n}`).find((id) => keySlot(keys.delivery(id).log) !== keySlot(keys.delivery(first).log))!;
    const moved = [first, sibling];
    const slot = keySlot(keys.delivery(first).log);
    expect(keySlot(keys.delivery(sibling).log)).toBe(slot);
    expect(keySlot(keys.channel(first))).toBe(slot);
    expect(keySlot(keys.delivery(first).partitionChannel)).toBe(slot);

    for (const id of [...moved, elsewhere]) {
      await createDelivery(client, { deliveryId: id });
      for (let n = 0; n < 4; n++) await increaseBudget(client, id);
    }
    const watchers = [...moved, elsewhere].flatMap((deliveryId) => [
      watch(client, { deliveryId, afterVersion: 0 }),
      watch(other, { deliveryId, afterVersion: 2 }),
      watch(other, { deliveryId }),
    ]);
    const firehose = watchAll(other);
    await Promise.all(watchers.map((w) => within(w.first, "every watch to start")));
    await waitUntil(() => firehose.caughtUp(), "the firehose to catch up");
    await waitUntil(() => watchers.every((w) => w.lastVersion() === 5), "every watcher at version 5");

    const from = cluster.primaryForSlot(slot).port;
    const to = cluster.primaries().find((p) => p.port !== from)!.port;
    expect(await shardSubscribers(from, keys.channel(first))).toBe(1);
    let t0 = Date.now();
    const { keysMoved } = await cluster.migrateSlot(slot, to);
    timings.migrateMs = Date.now() - t0;
    // Both logs, their request ids, the partition's feed and status index.
    expect(keysMoved).toBeGreaterThanOrEqual(6);
    expect(cluster.primaryForSlot(slot).port).toBe(to);
    for (const id of moved) expect(await redisCommand(to, ["EXISTS", keys.delivery(id).log])).toBe(1);
    expect(await redisCommand(to, ["CLUSTER", "COUNTKEYSINSLOT", slot])).toBe(keysMoved);
    expect(await redisCommand(from, ["CLUSTER", "COUNTKEYSINSLOT", slot])).toBe(0);

    // Straight on: the first commands may be published before the re-subscription, and must still arrive.
    t0 = Date.now();
    const lasts = await Promise.all(
      [...moved, elsewhere].map(async (id, i) => {
        const via = i % 2 === 0 ? client : other;
        for (let n = 0; n < 5; n++) await increaseBudget(via, id);
        return cancelDelivery(via, id);
      }),
    );
    expect(lasts).toEqual([11, 11, 11]);
    for (const w of watchers) expect((await within(w.ended, "the end of every watch")).code).toBe(status.OK);
    timings.commandsToEveryWatcherEndMs = Date.now() - t0;
    // For the record: events the watchers got from the log rather than Pub/Sub (published before the re-subscription).
    timings.repairedFromLog = await repairedFromLog();
    for (let i = 0; i < 3; i++) {
      expectEveryVersion(watchers[i * 3]!, 0, 11);
      expectEveryVersion(watchers[i * 3 + 1]!, 2, 11);
      expectSnapshotThenEveryVersion(watchers[i * 3 + 2]!, 11);
    }
    await waitUntil(() => [...moved, elsewhere].every((id) => (versionsById(firehose.messages).get(id) ?? []).length >= 6), "the firehose to see the later changes");
    // The firehose's partition channel followed the slot to its new owner.
    await waitUntil(async () => (await shardSubscribers(to, keys.delivery(first).partitionChannel)) === 1, "the partition channel subscribed on the new owner");
    expect(await shardSubscribers(from, keys.delivery(first).partitionChannel)).toBe(0);
    firehose.cancel();
    for (const id of [...moved, elsewhere]) expect(versionsById(firehose.messages).get(id), id).toEqual(range(6, 11));
  });

  it("a version appended mid-migration, published where nobody listens yet, reaches every watcher through the catch-up the SUNSUBSCRIBE triggers", async () => {
    const keys = createRedisKeys(service.keyPrefix);
    const id = `midway-${uid()}`;
    const slot = keySlot(keys.delivery(id).log);
    await createDelivery(client, { deliveryId: id });
    await increaseBudget(client, id);
    // While the slot is importing, the target runs a multi-key script only if every key is there (else
    // TRYAGAIN: UNAVAILABLE). A READY delivery's IncreaseBudget touches its log, request ids, the feed, the
    // READY index and the expiry ZSet, which a finished delivery of the same partition creates.
    const finished = range(0, 10_000).map((n) => `midway-${uid()}-${n}`).find((other) => keys.partitionOf(other) === keys.partitionOf(id))!;
    await createDelivery(client, { deliveryId: finished });
    await cancelDelivery(client, finished);
    expect(await redisCommand(cluster.primaryForSlot(slot).port, ["EXISTS", keys.delivery(id).expiry])).toBe(1);
    // Both kinds of watchers on one replica: WatchDelivery and a WatchDeliveries firehose.
    const watchers = [watch(client, { deliveryId: id, afterVersion: 0 }), watch(other, { deliveryId: id, afterVersion: 1 }), watch(other, { deliveryId: id })];
    const firehose = watchAll(client);
    await Promise.all(watchers.map((w) => within(w.first, "every watch to start")));
    await waitUntil(() => firehose.caughtUp(), "the firehose to catch up");
    await waitUntil(() => watchers.every((w) => w.lastVersion() === 2), "every watcher at version 2");

    const from = cluster.primaryForSlot(slot).port;
    const to = cluster.primaries().find((p) => p.port !== from)!.port;
    const repairedBefore = await repairedFromLog();
    let midway = 0;
    // Written by another replica: the watchers' replica hears of it only through Pub/Sub (its own appends reach its watchers directly).
    const writer = await startTestService({
      config: { redis: clusterTargetOf(cluster, { REDIS_COMMAND_TIMEOUT_MS: "2000" }), retainFinishedForMs: 3_600_000 },
      keyPrefix: service.keyPrefix,
      safetyNetIntervalMs: SAFETY_NET_OFF_MS,
    });
    await migrateSlotWith(slot, to, async () => {
      midway = await increaseBudget(writer.client(), id);
      // Published on the importing node: the watchers' subscription is still on the source.
      expect(await shardSubscribers(to, keys.channel(id))).toBe(0);
      expect(await shardSubscribers(from, keys.channel(id))).toBe(1);
    });
    await writer.stop();
    expect(midway).toBe(3);
    // Nothing else happens: only the catch-up after the re-subscription can bring version 3.
    await waitUntil(() => watchers.every((w) => w.lastVersion() === 3), "every watcher at version 3 after the migration", 10_000);
    expect(await repairedFromLog()).toBeGreaterThan(repairedBefore);
    expect(await shardSubscribers(to, keys.channel(id))).toBe(1);

    for (let n = 0; n < 3; n++) await increaseBudget(other, id);
    const last = await cancelDelivery(client, id);
    expect(last).toBe(7);
    for (const w of watchers) expect((await within(w.ended, "the end of every watch")).code).toBe(status.OK);
    // The firehose too has every change after the migration once, in order (version 3 at the latest with
    // the next wake-up of its partition: its re-read after the re-subscription may fail, see the report).
    await waitUntil(() => versionsById(firehose.messages).get(id)?.includes(7), "the firehose to see the cancellation");
    firehose.cancel();
    expect(versionsById(firehose.messages).get(id)).toEqual(range(3, 7));
    expectEveryVersion(watchers[0]!, 0, 7);
    expectEveryVersion(watchers[1]!, 1, 7);
    expectSnapshotThenEveryVersion(watchers[2]!, 7);
  });

  it("a slot migrated under load: calls answer OK or UNAVAILABLE, retried with the same request id every acknowledged command is in the log once, watchers see every version", async () => {
    const keys = createRedisKeys(service.keyPrefix);
    const source = cluster.primaries()[0]!.port;
    const target = cluster.primaries()[1]!.port;
    // 24 deliveries on one primary, 6 of them in the slot that moves.
    const first = range(0, 10_000).map((n) => `load-${uid()}-${n}`).find((id) => cluster.primaryForKey(keys.delivery(id).log).port === source)!;
    const slot = keySlot(keys.delivery(first).log);
    const candidates = range(0, 20_000).map((n) => `load-${uid()}-${n}`);
    const inSlot = [first, ...candidates.filter((id) => keySlot(keys.delivery(id).log) === slot).slice(0, 5)];
    const notInSlot = candidates.filter((id) => keySlot(keys.delivery(id).log) !== slot && cluster.primaryForKey(keys.delivery(id).log).port === source).slice(0, 18);
    expect(inSlot).toHaveLength(6);
    const ids = [...inSlot, ...notInSlot];

    const setup: RetryStats = { unavailable: 0 };
    const acks = new Map<string, Ack[]>(ids.map((id) => [id, []]));
    await Promise.all(ids.map((id) => createAcknowledged(client, id, acks.get(id)!, setup)));
    const watchers = new Map(ids.map((deliveryId) => [deliveryId, [watch(client, { deliveryId, afterVersion: 0 }), watch(other, { deliveryId, afterVersion: 0 })]]));
    await Promise.all([...watchers.values()].flat().map((w) => within(w.first, "every watch to start")));

    let stop = false;
    const writers = ids.map((id, i) => startWriter(i % 2 === 0 ? client : other, id, acks.get(id)!, () => stop));
    // A call answered with anything but OK or UNAVAILABLE fails the test at once.
    const guarded = guardAgainst(writers);
    try {
      await guarded(waitUntil(() => writers.every((w) => w.acks.length > 5), "5 acknowledged commands per writer"));
      const t0 = Date.now();
      await guarded(cluster.migrateSlot(slot, target));
      timings.migrateUnderLoadMs = Date.now() - t0;
      const counts = writers.map((w) => w.acks.length);
      await guarded(waitUntil(() => writers.every((w, i) => w.acks.length >= counts[i]! + 5), "5 more per writer after the migration", 15_000));
    } finally {
      stop = true;
    }
    await guarded(within(Promise.all(writers.map((w) => w.done)), "the writers to stop and cancel"));
    await within(Promise.all([...watchers.values()].flat().map((w) => w.ended)), "every watch to end");
    timings.unavailableDuringMigration = writers.reduce((n, w) => n + w.stats.unavailable, 0);

    expect(cluster.primaryForSlot(slot).port).toBe(target);
    const problems: string[] = [];
    for (const writer of writers) {
      const log = await expectLogIsAcknowledged(client, writer.id, writer.acks);
      for (const w of watchers.get(writer.id)!) {
        const problem = watchProblem(w, log);
        if (problem) problems.push(`${writer.id}: ${problem}`);
      }
    }
    expect(problems).toEqual([]);
  });
});
