/**
 * Failover under load, with REDIS_WAIT_REPLICAS=1: writers (each on its own
 * delivery, every command with a request id, retried with the SAME request
 * id while the service answers UNAVAILABLE) and WatchDelivery watchers over
 * their deliveries, while a primary is SIGKILLed and a replica promoted:
 *
 *   - a Redis Cluster (3 primaries, 2 replicas each, so the promoted primary
 *     still has a replica to WAIT for), the primary of some of the deliveries
 *     killed;
 *   - a Sentinel-managed primary with 2 replicas, killed.
 *
 * Afterwards every acknowledged command is in the log exactly once, at the
 * version it was acknowledged with (and nothing else is), and every watcher
 * saw every version once, in order, each the logged event, and ended with
 * OK at the terminal cancellation. The safety net is out of reach: watchers
 * recover through the re-subscription and its catch-up.
 *
 * And with Sentinel: while no replica can acknowledge (all SIGSTOPped), a
 * retry of a command whose WAIT failed is not acknowledged either.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import type { RedisServerTarget } from "../../src/store/redis/redisTarget.js";
import { rejectionOf, waitUntil, within } from "../support/async.js";
import { type RedisClusterHandle, startRedisCluster } from "../support/redisCluster.js";
import { type RedisSentinelHandle, startRedisSentinel } from "../support/redisSentinel.js";
import { parseInfo, redisCommand } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { SAFETY_NET_OFF_MS } from "../watch/watchSupport.js";
import {
  type Ack,
  clusterTargetOf,
  createAcknowledged,
  expectLogIsAcknowledged,
  guardAgainst,
  idsOnPrimaries,
  logKeyOf,
  type RetryStats,
  sentinelTargetOf,
  startWriter,
  uid,
  untilAcknowledged,
  watchProblem,
  type Writer,
} from "./clusterSupport.js";

/** Acknowledged commands each writer makes before the kill, and again after the failover, before it stops. */
const ACKS_BEFORE = 10;
const ACKS_AFTER = 10;
const WAIT_ENV = { REDIS_COMMAND_TIMEOUT_MS: "1500", REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT_MS: "500" };

interface LoadResult {
  readonly writers: readonly Writer[];
  readonly watchers: ReadonlyMap<string, readonly WatchRecorder[]>;
  readonly timings: Record<string, number>;
}

/**
 * Creates the deliveries, opens `watchersPerDelivery` watchers on each (over
 * `clients` in turn), runs a writer per delivery, calls `failover` once every
 * writer has ACKS_BEFORE acknowledged commands, and stops the writers once
 * each has ACKS_AFTER more after it returned. Resolves once every writer has
 * cancelled its delivery and every watcher has ended.
 */
async function runUnderLoad(
  service: TestService,
  ids: readonly string[],
  watchersPerDelivery: number,
  grpcClients: number,
  failover: () => Promise<void>,
): Promise<LoadResult> {
  const timings: Record<string, number> = {};
  const clients: DeliveryServiceClient[] = Array.from({ length: grpcClients }, () => service.client());
  const setup: RetryStats = { unavailable: 0 };
  const acks = new Map<string, Ack[]>(ids.map((id) => [id, []]));
  await Promise.all(ids.map((id, i) => createAcknowledged(clients[i % grpcClients]!, id, acks.get(id)!, setup)));

  let next = 0;
  const watchers = new Map<string, WatchRecorder[]>(
    ids.map((deliveryId) => [deliveryId, Array.from({ length: watchersPerDelivery }, () => watch(clients[next++ % grpcClients]!, { deliveryId, afterVersion: 0 }))]),
  );
  const all = [...watchers.values()].flat();
  let t0 = Date.now();
  await within(Promise.all(all.map((w) => w.first)), `${all.length} watches to start`, 20_000);
  timings.watchersOpenMs = Date.now() - t0;

  let stop = false;
  const writers = ids.map((id, i) => startWriter(clients[i % grpcClients]!, id, acks.get(id)!, () => stop));
  // A writer that throws fails the test at once, rather than at a wait's deadline.
  const guarded = guardAgainst(writers);

  try {
    t0 = Date.now();
    await guarded(waitUntil(() => writers.every((w) => w.acks.length > ACKS_BEFORE), `${ACKS_BEFORE} acknowledged commands per writer`, 20_000));
    timings.loadBeforeKillMs = Date.now() - t0;
    t0 = Date.now();
    await guarded(failover());
    timings.failoverMs = Date.now() - t0;
    const counts = writers.map((w) => w.acks.length);
    t0 = Date.now();
    await guarded(
      waitUntil(() => writers.every((w, i) => w.acks.length >= counts[i]! + ACKS_AFTER), `${ACKS_AFTER} acknowledged commands per writer after the failover`, 25_000),
    );
    timings.loadAfterFailoverMs = Date.now() - t0;
  } finally {
    stop = true;
  }
  await guarded(within(Promise.all(writers.map((w) => w.done)), "the writers to stop and cancel", 25_000));
  t0 = Date.now();
  await within(Promise.all(all.map((w) => w.ended)), "every watch to end", 20_000);
  timings.watchersEndMs = Date.now() - t0;
  return { writers, watchers, timings };
}

/** WAIT calls the node at `port` has served (INFO commandstats): the appends there did wait for a replica. */
async function waitCalls(port: number): Promise<number> {
  const stats = parseInfo(String(await redisCommand(port, ["INFO", "commandstats"])));
  return Number(/calls=(\d+)/.exec(stats.cmdstat_wait ?? "")?.[1] ?? 0);
}

/** The assertions of both setups: the log is exactly what was acknowledged; every watcher saw exactly the log, then OK. */
async function expectNothingLostNothingTwice(service: TestService, { writers, watchers }: LoadResult): Promise<void> {
  const client = service.client();
  const problems: string[] = [];
  for (const writer of writers) {
    const log = await expectLogIsAcknowledged(client, writer.id, writer.acks);
    expect(log.length).toBe(writer.acks.length);
    for (const [i, w] of watchers.get(writer.id)!.entries()) {
      const problem = watchProblem(w, log);
      if (problem) problems.push(`${writer.id} watcher ${i}: ${problem}`);
    }
  }
  expect(problems.slice(0, 10), `${problems.length} watchers went wrong`).toEqual([]);
}

describe("Redis Cluster: a primary SIGKILLed under load", () => {
  let cluster: RedisClusterHandle;
  let service: TestService;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    const t0 = Date.now();
    cluster = await startRedisCluster({ replicasPerPrimary: 2 });
    timings.clusterStartMs = Date.now() - t0;
    const target: RedisServerTarget = clusterTargetOf(cluster, WAIT_ENV);
    service = await startTestService({ config: { redis: target }, safetyNetIntervalMs: SAFETY_NET_OFF_MS });
  });

  afterAll(async () => {
    await service?.stop();
    await cluster?.stopAll();
    console.log(`[cluster failover timings] ${JSON.stringify(timings)}`);
  });

  it("20 writers, 200 watchers: every acknowledged command in the log once, every watcher every version once, in order", async () => {
    const primaries = cluster.primaries().map((p) => p.port);
    const victim = primaries[0]!;
    // 7 deliveries on the victim, 7 and 6 on the others.
    const ids = idsOnPrimaries(cluster, service.keyPrefix, primaries, 7, `fo-${uid()}`).slice(0, 20);
    const onVictim = ids.filter((id) => cluster.primaryForKey(logKeyOf(service.keyPrefix, id)).port === victim);
    expect(onVictim).toHaveLength(7);

    let promoted = 0;
    const result = await runUnderLoad(service, ids, 10, 5, async () => {
      const t0 = Date.now();
      await cluster.kill(victim);
      const { newPrimary } = await cluster.waitForFailover(victim);
      promoted = newPrimary.port;
      timings.killToFailoverMs = Date.now() - t0;
    });
    Object.assign(timings, result.timings);

    // The victim's deliveries are now served by the promoted replica.
    for (const id of onVictim) expect(cluster.primaryForKey(logKeyOf(service.keyPrefix, id)).port).toBe(promoted);
    // The kill was felt: writers on the victim were told UNAVAILABLE and retried.
    const retried = result.writers.filter((w) => onVictim.includes(w.id)).reduce((n, w) => n + w.stats.unavailable, 0);
    timings.victimRetries = retried;
    expect(retried).toBeGreaterThan(0);
    timings.acknowledged = result.writers.reduce((n, w) => n + w.acks.length, 0);
    // Every primary, the promoted one included, had the appends WAIT for a replica.
    for (const p of cluster.primaries()) expect(await waitCalls(p.port), `WAIT calls on ${p.port}`).toBeGreaterThan(0);
    await expectNothingLostNothingTwice(service, result);
  }, 90_000);
});

describe("Sentinel: the primary SIGKILLed under load", () => {
  let sentinel: RedisSentinelHandle;
  let service: TestService;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    const t0 = Date.now();
    sentinel = await startRedisSentinel({ replicas: 2 });
    timings.sentinelStartMs = Date.now() - t0;
    service = await startTestService({ config: { redis: sentinelTargetOf(sentinel, WAIT_ENV) }, safetyNetIntervalMs: SAFETY_NET_OFF_MS });
  });

  afterAll(async () => {
    await service?.stop();
    await sentinel?.stopAll();
    console.log(`[sentinel failover timings] ${JSON.stringify(timings)}`);
  });

  it("8 writers, 40 watchers: every acknowledged command in the log once, every watcher every version once, in order", async () => {
    const victim = await sentinel.primaryPort();
    const ids = Array.from({ length: 8 }, (_, i) => `sfo-${uid()}-${i}`);
    let promoted = 0;
    const result = await runUnderLoad(service, ids, 5, 3, async () => {
      const t0 = Date.now();
      await sentinel.kill(victim);
      ({ newPrimaryPort: promoted } = await sentinel.waitForFailover(victim));
      timings.killToFailoverMs = Date.now() - t0;
    });
    Object.assign(timings, result.timings);

    expect(promoted).not.toBe(victim);
    expect(await sentinel.primaryPort()).toBe(promoted);
    const retried = result.writers.reduce((n, w) => n + w.stats.unavailable, 0);
    timings.retries = retried;
    expect(retried).toBeGreaterThan(0);
    timings.acknowledged = result.writers.reduce((n, w) => n + w.acks.length, 0);
    // The appends on the promoted primary did WAIT for its remaining replica.
    expect(await waitCalls(promoted)).toBeGreaterThan(0);
    await expectNothingLostNothingTwice(service, result);
  }, 90_000);

  it("a command whose WAIT failed is not acknowledged by its retry either while no replica has it", async () => {
    const client = service.client();
    const id = `swait-${uid()}`;
    await call(client, "createDelivery", { deliveryId: id, budget: 1n, requestId: randomUUID() });
    const primary = await sentinel.primaryPort();
    const replicas = sentinel.dataPorts.filter((port) => port !== primary && sentinel.state(port) === "running");
    expect(replicas.length).toBeGreaterThan(0);
    const request = { deliveryId: id, amount: 1n, requestId: randomUUID() };
    for (const port of replicas) await sentinel.pause(port);
    let retry: Awaited<ReturnType<typeof rejectionOf>> | undefined;
    try {
      // Applied on the primary, not acknowledged: WAIT 1 times out.
      expect((await rejectionOf(call(client, "increaseBudget", request))).code).toBe(status.UNAVAILABLE);
      // The client retries with the same request id while still no replica has the event.
      retry = await rejectionOf(call(client, "increaseBudget", request)).catch(() => undefined);
    } finally {
      for (const port of replicas) await sentinel.resume(port);
    }
    expect(retry?.code, "the retry was acknowledged though no replica had the event").toBe(status.UNAVAILABLE);
    // Once a replica has it, the retry is acknowledged, with the version of the first attempt, once.
    const { event } = await untilAcknowledged(() => call(client, "increaseBudget", request), { unavailable: 0 });
    expect(Number(event?.version)).toBe(2);
    // Reads may still meet the recovering connection (UNAVAILABLE): retried like the writes.
    const { events } = await untilAcknowledged(() => call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: 0n, pageSize: 10 }), { unavailable: 0 });
    expect(events.map((e) => e.requestId).filter((r) => r === request.requestId)).toHaveLength(1);
  });
});
