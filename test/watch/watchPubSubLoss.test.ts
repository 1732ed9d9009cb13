import { status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery, increaseBudget } from "../support/deliveries.js";
import { connectRedis } from "../support/redis.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion, SAFETY_NET_OFF_MS } from "./watchSupport.js";

const DELIVERIES = 3;
const WATCHERS_PER_DELIVERY = 10;
const COMMANDS_PER_DELIVERY = 40;
const ROUNDS_PER_KILL = 4;

/** The Pub/Sub channel of a delivery, as the service names it (src/store/redis/keys.ts). */
function channelOf(service: TestService, deliveryId: string): string {
  return createRedisKeys(service.keyPrefix).channel(deliveryId);
}

describe("WatchDelivery when Pub/Sub loses messages", () => {
  let redisServer: RedisServerHandle;
  let admin: Redis;
  let service: TestService;

  beforeAll(async () => {
    // A private Redis: CLIENT KILL must not reach other test files' subscribers.
    redisServer = await startRedisServer();
    admin = connectRedis(redisServer.url);
    // No safety net: only the repair after re-subscription can fill the gaps.
    service = await startTestService({ redisUrl: redisServer.url, safetyNetIntervalMs: SAFETY_NET_OFF_MS });
  });

  afterAll(async () => {
    await service?.stop();
    admin?.disconnect();
    await redisServer?.kill();
  });

  it("repairs from the log while the subscriber connection is killed again and again", async () => {
    const commandClient = service.client();
    const watchClients = [service.client(), service.client()];
    const ids: string[] = [];
    for (let d = 0; d < DELIVERIES; d++) ids.push(await createDelivery(commandClient));
    const watchers = new Map<string, { snapshot: WatchRecorder[]; replay: WatchRecorder[] }>();
    for (const id of ids) {
      const group = { snapshot: [] as WatchRecorder[], replay: [] as WatchRecorder[] };
      for (let i = 0; i < WATCHERS_PER_DELIVERY; i++) {
        const client = watchClients[i % watchClients.length]!;
        if (i % 2 === 0) group.snapshot.push(watch(client, { deliveryId: id }));
        else group.replay.push(watch(client, { deliveryId: id, afterVersion: 0 }));
      }
      watchers.set(id, group);
    }
    const everyWatcher = [...watchers.values()].flatMap((g) => [...g.snapshot, ...g.replay]);
    await waitUntil(() => everyWatcher.every((w) => w.messages.length >= 1), "every watch to start");

    // Each kill waits for the subscriber to be back in subscriber mode, so every kill hits it.
    const subscriberIsBack = async () =>
      (await admin.pubsub("SHARDNUMSUB", ...ids.map((id) => channelOf(service, id)))).every((v, i) => i % 2 === 0 || v === 1);
    const killSubscriber = async () => {
      await waitUntil(subscriberIsBack, "the subscriber to re-subscribe");
      return Number(await admin.call("CLIENT", "KILL", "TYPE", "pubsub"));
    };
    let killed = 0;
    for (let round = 0; round < COMMANDS_PER_DELIVERY; round++) {
      // The rounds right after a kill run while the subscriber reconnects: their messages are lost.
      if (round % ROUNDS_PER_KILL === 0) killed += await killSubscriber();
      await Promise.all(ids.map((id) => increaseBudget(commandClient, id)));
    }
    expect(killed).toBe(COMMANDS_PER_DELIVERY / ROUNDS_PER_KILL);

    // The last events are published while the subscriber is away: no later
    // live message reveals the gap, only the repair after re-subscription.
    expect(await killSubscriber()).toBe(1);
    const last = await Promise.all(ids.map((id) => cancelDelivery(commandClient, id)));
    expect(last).toEqual(ids.map(() => COMMANDS_PER_DELIVERY + 2));

    const ends = await within(Promise.all(everyWatcher.map((w) => w.ended)), "every watch to end", 10_000);
    expect(ends.filter((e) => e.code !== status.OK)).toEqual([]);
    for (const { snapshot, replay } of watchers.values()) {
      for (const w of snapshot) expectSnapshotThenEveryVersion(w, COMMANDS_PER_DELIVERY + 2);
      for (const w of replay) expectEveryVersion(w, 0, COMMANDS_PER_DELIVERY + 2);
    }
  }, 40_000);
});
