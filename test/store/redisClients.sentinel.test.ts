/**
 * createRedisClients through Sentinels (3 sentinels, a primary, a replica):
 * commands and sharded Pub/Sub, then the primary is killed: after the
 * failover commands succeed on the new primary, subscriptions are restored
 * (onSubscriptionsLost) and messages arrive again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { createRedisClients, type RedisClients, waitForReplicas } from "../../src/store/redis/redisClients.js";
import { parseRedisTarget, type SentinelTarget } from "../../src/store/redis/redisTarget.js";
import type { SubscriptionsLost } from "../../src/store/redis/shardedSubscriptions.js";
import { eventually, waitUntil } from "../support/async.js";
import { startRedisSentinel, type RedisSentinelHandle } from "../support/redisSentinel.js";
import { redisCommand } from "../support/redisServer.js";

const timings: Record<string, number> = {};
let sentinel: RedisSentinelHandle;
let clients: RedisClients;
const availability: boolean[] = [];
const lost: SubscriptionsLost[] = [];
const messages: { channel: string; message: string }[] = [];
const CHANNEL = "t:c:{s}:1";

beforeAll(async () => {
  let t0 = Date.now();
  sentinel = await startRedisSentinel();
  timings.sentinelStartMs = Date.now() - t0;
  const target = parseRedisTarget({
    REDIS_SENTINELS: sentinel.sentinels,
    REDIS_SENTINEL_MASTER: sentinel.masterName,
    REDIS_COMMAND_TIMEOUT_MS: "1000",
  }) as SentinelTarget;
  clients = createRedisClients(target, { name: "redis-clients-sentinel-test" });
  clients.onAvailability((available) => availability.push(available));
  clients.onSubscriptionsLost((event) => lost.push(event));
  clients.subscriptions.onMessage((channel, message) => messages.push({ channel, message: message.toString() }));
  t0 = Date.now();
  await clients.connect();
  timings.connectMs = Date.now() - t0;
});

afterAll(async () => {
  await clients?.close();
  await sentinel?.stopAll();
  console.log(`[redisClients sentinel timings] ${JSON.stringify(timings)} lost events: ${JSON.stringify(lost)}`);
});

/** The port of the server the command client talks to. */
async function commandsPort(): Promise<number> {
  const info = String(await clients.within(() => (clients.commands as Redis).info("server")));
  return Number(/\btcp_port:(\d+)/.exec(info)?.[1]);
}

const received = (message: string, timeoutMs = 10_000) =>
  waitUntil(() => messages.some((m) => m.channel === CHANNEL && m.message === message), `message ${message}`, timeoutMs);

describe("Redis Sentinel", () => {
  it("connects to the primary and runs commands", async () => {
    expect(clients.available).toBe(true);
    expect(await commandsPort()).toBe(sentinel.initialPrimaryPort);
    await clients.within(() => clients.commands.set("t:s:k", "v"));
    await expect(clients.within(() => clients.commands.get("t:s:k"))).resolves.toBe("v");
    await expect(clients.within(() => waitForReplicas(clients.commands, "t:s:k", 1, 500))).resolves.toBe(1);
  });

  it("delivers sharded messages", async () => {
    await clients.subscriptions.subscribe(CHANNEL);
    await clients.commands.spublish(CHANNEL, "before");
    await received("before");
  });

  it("after the primary is killed and failed over: commands succeed, subscriptions are restored, messages arrive", async () => {
    const old = sentinel.initialPrimaryPort;
    const before = lost.length;
    const t0 = Date.now();
    await sentinel.kill(old);
    const { newPrimaryPort } = await sentinel.waitForFailover(old);
    timings.killToFailoverMs = Date.now() - t0;
    await eventually(() => clients.within(() => clients.commands.set("t:s:k", "after")), { timeoutMs: 10_000 });
    timings.killToCommandsMs = Date.now() - t0;
    expect(await commandsPort()).toBe(newPrimaryPort);
    await waitUntil(() => lost.length > before, "onSubscriptionsLost after the failover", 10_000);
    timings.killToLostMs = Date.now() - t0;
    expect(lost.slice(before).flatMap((e) => e.reasons).join(",")).toMatch(/subscriber connection closed/);
    // Subscribed on the new primary by the time the listener ran.
    const reply = (await redisCommand(newPrimaryPort, ["PUBSUB", "SHARDNUMSUB", CHANNEL])) as [string, number];
    expect(Number(reply[1])).toBe(1);
    await clients.within(() => clients.commands.spublish(CHANNEL, "after"));
    await received("after");
    timings.killToDeliveredMs = Date.now() - t0;
    expect(availability).toContain(false);
    await waitUntil(() => clients.available, "available again", 5_000);
  });
});
