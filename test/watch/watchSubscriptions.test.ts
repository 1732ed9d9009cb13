import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery } from "../support/deliveries.js";
import { connectRedis, uniquePrefix } from "../support/redis.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";

const DELIVERIES = 12;
const WATCHERS_PER_DELIVERY = 5;

describe("WatchDelivery subscriptions", () => {
  let redisServer: RedisServerHandle;
  let admin: Redis;
  let a: TestService;
  let b: TestService;
  const keys = (() => {
    const keyPrefix = uniquePrefix();
    return { keyPrefix, ...createRedisKeys(keyPrefix) };
  })();

  /** Subscriber counts per channel, as Redis sees them. */
  async function numsub(ids: readonly string[]): Promise<number[]> {
    const reply = (await admin.pubsub("SHARDNUMSUB", ...ids.map((id) => keys.channel(id)))) as (string | number)[];
    return reply.filter((_, i) => i % 2 === 1).map(Number);
  }

  /** Subscriber connections of the services (by client name); only those subscribed to something with `type` pubsub. */
  async function subscriberConnections(type: "pubsub" | "any"): Promise<number> {
    const args = type === "pubsub" ? ["LIST", "TYPE", "pubsub"] : ["LIST"];
    const list = (await admin.call("CLIENT", ...args)) as string;
    return list.split("\n").filter((line) => / name=delivery-service:subscriber /.test(line)).length;
  }

  beforeAll(async () => {
    // A private Redis: connection counts must not include other test files' services.
    redisServer = await startRedisServer();
    admin = connectRedis(redisServer.url);
    [a, b] = await Promise.all([
      startTestService({ redisUrl: redisServer.url, keyPrefix: keys.keyPrefix }),
      startTestService({ redisUrl: redisServer.url, keyPrefix: keys.keyPrefix }),
    ]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    admin?.disconnect();
    await redisServer?.kill();
  });

  it("uses one subscriber connection per process and one subscription per watched delivery", async () => {
    const commands = a.client();
    const ids: string[] = [];
    for (let d = 0; d < DELIVERIES; d++) ids.push(await createDelivery(commands));
    const clientsA = [a.client(), a.client(), a.client()];
    const watchers: WatchRecorder[] = [];
    ids.forEach((id, d) => {
      for (let i = 0; i < WATCHERS_PER_DELIVERY; i++) watchers.push(watch(clientsA[(d + i) % clientsA.length]!, { deliveryId: id }));
    });
    // Replica b watches only the first half.
    const half = ids.slice(0, DELIVERIES / 2);
    const onB = half.map((id) => watch(b.client(), { deliveryId: id }));
    await waitUntil(() => [...watchers, ...onB].every((w) => w.messages.length === 1), "every watch to start");

    expect(a.server.hub.watcherCount).toBe(DELIVERIES * WATCHERS_PER_DELIVERY);
    expect(a.server.hub.watchedDeliveries).toBe(DELIVERIES);
    expect(await subscriberConnections("pubsub")).toBe(2);
    expect(await numsub(ids)).toEqual(ids.map((id) => (half.includes(id) ? 2 : 1)));

    for (const w of [...watchers, ...onB]) w.cancel();
    await waitUntil(async () => (await numsub(ids)).every((n) => n === 0), "every channel to be unsubscribed");
    expect(a.server.hub.watcherCount).toBe(0);
    expect(b.server.hub.watchedDeliveries).toBe(0);
    // Same connections, now subscribed to nothing (hence no longer of type pubsub).
    expect(await subscriberConnections("any")).toBe(2);
    expect(await subscriberConnections("pubsub")).toBe(0);
    for (const id of ids) await cancelDelivery(commands, id);
  });

  it("keeps a delivery's channel while one of its watchers remains", async () => {
    const client = a.client();
    const id = await createDelivery(client);
    const first = watch(client, { deliveryId: id });
    const second = watch(client, { deliveryId: id });
    await waitUntil(() => first.messages.length === 1 && second.messages.length === 1, "both watches to start");
    first.cancel();
    await waitUntil(() => a.server.hub.watcherCount === 1, "the first watcher to leave");
    expect(await numsub([id])).toEqual([1]);
    second.cancel();
    await waitUntil(async () => (await numsub([id]))[0] === 0, "the channel to be unsubscribed");
    expect(a.server.hub.watchedDeliveries).toBe(0);
    await cancelDelivery(client, id);
  });

  it("releases the channel when a watch ends on a terminal state or fails", async () => {
    const client = a.client();
    const id = await createDelivery(client);
    const ending = watch(client, { deliveryId: id });
    await waitUntil(() => ending.messages.length === 1, "the watch to start");
    await cancelDelivery(client, id);
    expect((await within(ending.ended, "the end")).code).toBe(status.OK);
    const missing = `missing-${randomUUID()}`;
    const notFound = watch(client, { deliveryId: missing });
    expect((await within(notFound.ended, "the end")).code).toBe(status.NOT_FOUND);
    const beyond = watch(client, { deliveryId: id, afterVersion: 99 });
    expect((await within(beyond.ended, "the end")).code).toBe(status.INVALID_ARGUMENT);
    await waitUntil(async () => (await numsub([id, missing])).every((n) => n === 0), "both channels to be unsubscribed");
    expect(a.server.hub.watcherCount).toBe(0);
  });
});
