/**
 * The service on a real Redis Cluster (3 primaries + 3 replicas, local
 * redis-server processes): the store contract suite over createRedisClients'
 * Cluster client, the partitions spread over every primary, and the
 * WatchDelivery / WatchDeliveries basics through a real gRPC server whose
 * safety net is out of reach (what passes came through sharded Pub/Sub).
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { createRedisClients, type RedisClients } from "../../src/store/redis/redisClients.js";
import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import type { ClusterTarget } from "../../src/store/redis/redisTarget.js";
import { eventStoreContract } from "../store/eventStoreContract.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, increaseBudget } from "../support/deliveries.js";
import { uniquePrefix } from "../support/redis.js";
import { type RedisClusterHandle, startRedisCluster } from "../support/redisCluster.js";
import { redisCommand } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion, SAFETY_NET_OFF_MS } from "../watch/watchSupport.js";
import { clusterTargetOf, idsOnPrimaries, logKeyOf, range, versionsById, watchAll } from "./clusterSupport.js";

const timings: Record<string, number> = {};
let cluster: RedisClusterHandle;
let target: ClusterTarget;
let clients: RedisClients;
let service: TestService;
let primaryPorts: number[];

beforeAll(async () => {
  let t0 = Date.now();
  cluster = await startRedisCluster();
  timings.clusterStartMs = Date.now() - t0;
  primaryPorts = cluster.primaries().map((p) => p.port);
  target = clusterTargetOf(cluster, { REDIS_COMMAND_TIMEOUT_MS: "2000" });
  t0 = Date.now();
  clients = createRedisClients(target, { name: "cluster-contract-test" });
  [service] = await Promise.all([startTestService({ config: { redis: target }, safetyNetIntervalMs: SAFETY_NET_OFF_MS }), clients.connect()]);
  timings.connectMs = Date.now() - t0;
});

afterAll(async () => {
  await service?.stop();
  await clients?.close();
  await cluster?.stopAll();
  console.log(`[cluster contract timings] ${JSON.stringify(timings)}`);
});

// The store contract over the Cluster client: a fresh key prefix per test, the clients shared.
eventStoreContract("redis cluster", async (options = {}) => ({
  store: createRedisEventStore({ redis: clients.commands, keyPrefix: uniquePrefix(), within: clients.within, ...options }),
  cleanup: async () => {},
}));

describe("the service on a Redis Cluster", () => {
  let client: DeliveryServiceClient;
  let other: DeliveryServiceClient;

  beforeAll(() => {
    client = service.client();
    other = service.client();
  });

  /** `perPrimary` new deliveries on each primary, created through the service. */
  async function deliveriesOnEveryPrimary(perPrimary: number, label: string): Promise<string[]> {
    const ids = idsOnPrimaries(cluster, service.keyPrefix, primaryPorts, perPrimary, label);
    await Promise.all(ids.map((deliveryId) => call(client, "createDelivery", { deliveryId, budget: 1_000n })));
    return ids;
  }

  it("spreads the partitions, hence the deliveries, over all three primaries", async () => {
    const ids = range(0, 47).map((i) => `spread-${i}`);
    await Promise.all(ids.map((deliveryId) => call(client, "createDelivery", { deliveryId, budget: 1n })));
    const owners = new Map<number, number>();
    for (const id of ids) {
      const key = logKeyOf(service.keyPrefix, id);
      const port = cluster.primaryForKey(key).port;
      // The key really is on the primary that owns its slot.
      expect(await redisCommand(port, ["EXISTS", key]), `${key} on ${port}`).toBe(1);
      owners.set(port, (owners.get(port) ?? 0) + 1);
    }
    expect([...owners.keys()].sort()).toEqual([...primaryPorts].sort());
    // 16 partitions over 3 evenly split primaries: 5, 6 and 5 of them; nobody gets nearly all.
    for (const n of owners.values()) expect(n).toBeGreaterThanOrEqual(4);
  });

  it("WatchDelivery: several watchers per delivery, on deliveries on every primary, see every version once, in order", async () => {
    const ids = await deliveriesOnEveryPrimary(2, "watch");
    // Version 2 first, so that the watch after version 1 has something to start with.
    await Promise.all(ids.map((id) => increaseBudget(client, id)));
    const watchers = ids.flatMap((deliveryId) => [
      watch(client, { deliveryId, afterVersion: 0 }),
      watch(other, { deliveryId, afterVersion: 0 }),
      watch(client, { deliveryId }),
      watch(other, { deliveryId, afterVersion: 1 }),
    ]);
    await Promise.all(watchers.map((w) => within(w.first, "every watch to start")));

    const lasts = await Promise.all(
      ids.map(async (id, i) => {
        const via = i % 2 === 0 ? client : other;
        for (let n = 0; n < 11; n++) await increaseBudget(via, id);
        return cancelDelivery(via, id);
      }),
    );
    for (const [i, id] of ids.entries()) {
      const mine = watchers.slice(i * 4, i * 4 + 4);
      for (const w of mine) expect((await within(w.ended, `the end of a watch of ${id}`)).code).toBe(status.OK);
      expect(lasts[i]).toBe(14);
      expectEveryVersion(mine[0]!, 0, 14);
      expectEveryVersion(mine[1]!, 0, 14);
      expectSnapshotThenEveryVersion(mine[2]!, 14);
      expectEveryVersion(mine[3]!, 1, 14);
    }
  });

  it("WatchDeliveries: a firehose watcher sees every change of deliveries on every primary once, in version order", async () => {
    const firehose = watchAll(other);
    await waitUntil(() => firehose.caughtUp(), "caught_up");
    const ids = await deliveriesOnEveryPrimary(3, "fire");
    await Promise.all(
      ids.map(async (id, i) => {
        const via = i % 2 === 0 ? client : other;
        for (let v = 2; v <= 6; v++) await increaseBudget(via, id);
      }),
    );
    await waitUntil(() => ids.every((id) => (versionsById(firehose.messages).get(id) ?? []).length >= 6), "every change on the firehose", 10_000);
    firehose.cancel();
    const byId = versionsById(firehose.messages);
    for (const id of ids) expect(byId.get(id), id).toEqual(range(1, 6));
  });

  it("WatchDeliveries: a resume token continues exactly after its message, across partitions on every primary", async () => {
    const first = watchAll(client);
    await waitUntil(() => first.caughtUp(), "caught_up");
    const ids = await deliveriesOnEveryPrimary(1, "resume");
    for (let v = 2; v <= 5; v++) for (const id of ids) await increaseBudget(other, id);
    await waitUntil(() => ids.every((id) => (versionsById(first.messages).get(id) ?? []).length === 5), "every change", 10_000);
    first.cancel();

    const mine = first.messages.filter((m) => m.kind === "change" && ids.includes(m.id!));
    expect(mine).toHaveLength(15);
    for (const cut of [0, 6, 13]) {
      const resumed = watchAll(other, { resumeToken: mine[cut]!.token });
      await waitUntil(() => resumed.caughtUp(), `caught_up after the token of message ${cut}`);
      resumed.cancel();
      const after = resumed.messages.filter((m) => m.kind === "change" && ids.includes(m.id!));
      expect(after).toHaveLength(15 - cut - 1);
      const union = versionsById([...mine.slice(0, cut + 1), ...after]);
      for (const id of ids) expect(union.get(id), `cut ${cut} ${id}`).toEqual(range(1, 5));
    }
  });
});
