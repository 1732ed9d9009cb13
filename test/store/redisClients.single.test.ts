/**
 * createRedisClients over one private redis-server: round trips, sharded
 * Pub/Sub and its recovery after a restart, fail-fast deadlines while the
 * server is frozen (SIGSTOP), WAIT without replicas.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { StoreUnavailable } from "../../src/domain/index.js";
import { CommandDeadlineError } from "../../src/store/redis/deadline.js";
import { createRedisClients, ReplicasNotAcknowledged, type RedisClients, waitForReplicas } from "../../src/store/redis/redisClients.js";
import { callRedis } from "../../src/store/redis/redisErrors.js";
import { parseRedisTarget, type SingleTarget } from "../../src/store/redis/redisTarget.js";
import type { SubscriptionsLost } from "../../src/store/redis/shardedSubscriptions.js";
import type { Logger } from "../../src/logger.js";
import { waitUntil, within } from "../support/async.js";
import { parseInfo, redisCommand, startRedisServer, type RedisServerHandle } from "../support/redisServer.js";

const TIMEOUT_MS = 400;
const timings: Record<string, unknown> = {};

let server: RedisServerHandle;
let clients: RedisClients;
let serverPid: number;
const availability: boolean[] = [];
const lost: SubscriptionsLost[] = [];
const messages: { channel: string; message: string }[] = [];
const logged: { level: string; msg: string | undefined; err: string }[] = [];
const capture = (level: string) => (obj: object, msg?: string) => void logged.push({ level, msg, err: String((obj as { err?: unknown }).err ?? "") });
const logger: Logger = { debug: capture("debug"), info: capture("info"), warn: capture("warn"), error: capture("error"), child: () => logger };

async function pidOf(port: number): Promise<number> {
  return Number(parseInfo(String(await redisCommand(port, ["INFO", "server"]))).process_id);
}

beforeAll(async () => {
  server = await startRedisServer();
  serverPid = await pidOf(server.port);
  const target = parseRedisTarget({ REDIS_URL: server.url, REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS) }) as SingleTarget;
  clients = createRedisClients(target, { name: "redis-clients-test", logger });
  clients.onAvailability((available) => availability.push(available));
  clients.onSubscriptionsLost((event) => lost.push(event));
  clients.subscriptions.onMessage((channel, message) => messages.push({ channel, message: message.toString() }));
  await clients.connect();
});

afterAll(async () => {
  try {
    process.kill(serverPid, "SIGCONT");
  } catch {
    // gone already
  }
  await clients?.close();
  await server?.kill();
  console.log(`[redisClients single timings] ${JSON.stringify(timings)}`);
});

const received = (channel: string, message: string) =>
  waitUntil(() => messages.some((m) => m.channel === channel && m.message === message), `message ${message} on ${channel}`, 5_000);

describe("single Redis", () => {
  it("connects both clients and reports availability", () => {
    expect(clients.available).toBe(true);
    expect(availability.at(-1)).toBe(true);
    expect(clients.all().map((c) => [c.name, c.client.status])).toEqual([
      ["commands", "ready"],
      ["subscriber", "ready"],
    ]);
  });

  it("round-trips commands", async () => {
    await clients.within(() => clients.commands.set("t:single:k", "v"));
    await expect(clients.within(() => clients.commands.get("t:single:k"))).resolves.toBe("v");
  });

  it("sends the calls of one turn in one write, in order", async () => {
    const readsByRedis = async () => Number(parseInfo(String(await redisCommand(server.port, ["INFO", "stats"]))).total_reads_processed);
    const before = await readsByRedis();
    const calls = Array.from({ length: 300 }, (_, i) => clients.within(() => clients.commands.echo(`call-${i}`)));
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 300 }, (_, i) => `call-${i}`));
    // 300 commands (about 9 KB) in one socket write are one read for Redis; each INFO adds its own connection's.
    expect((await readsByRedis()) - before).toBeLessThanOrEqual(6);
  });

  it("delivers sharded messages, also from a script", async () => {
    await clients.subscriptions.subscribe("t:c:{a}:1");
    await clients.subscriptions.subscribe("t:c:{b}:2"); // another slot: standalone takes both
    await clients.commands.spublish("t:c:{a}:1", "one");
    await clients.commands.eval("redis.call('SPUBLISH', ARGV[1], ARGV[2]) return 1", 1, "t:l:{b}:2", "t:c:{b}:2", "two");
    await received("t:c:{a}:1", "one");
    await received("t:c:{b}:2", "two");
  });

  it("after a restart: unavailable, then available, re-subscribed, lost listeners called, messages flow", async () => {
    const lostBefore = lost.length;
    const t0 = Date.now();
    await server.restart();
    await waitUntil(() => lost.length > lostBefore, "onSubscriptionsLost after the restart", 10_000);
    timings.restartToResubscribedMs = Date.now() - t0;
    expect(availability).toContain(false);
    expect(clients.available).toBe(true);
    const event = lost.at(-1)!;
    expect(event.channels).toBe(2);
    expect(event.reasons.join(",")).toMatch(/subscriber connection closed/);
    // Subscribed again when the listener ran: a message published now arrives.
    await clients.commands.spublish("t:c:{a}:1", "after-restart-a");
    await clients.commands.spublish("t:c:{b}:2", "after-restart-b");
    await received("t:c:{a}:1", "after-restart-a");
    await received("t:c:{b}:2", "after-restart-b");
    serverPid = await pidOf(server.port);
  });

  it("a re-subscription refused on a live connection is retried until it succeeds", async () => {
    const before = lost.length;
    const refusals = () => logged.filter((l) => l.msg?.startsWith("re-subscription failed") && /NOPERM/.test(l.err)).length;
    const refusalsBefore = refusals();
    // Redis 7 disconnects subscribers of channels the user may no longer use; the
    // reconnected subscriber's SSUBSCRIBE then gets NOPERM while its connection stays up.
    await clients.commands.call("ACL", "SETUSER", "default", "resetchannels");
    try {
      await waitUntil(() => refusals() >= refusalsBefore + 2, "two refused re-subscriptions (NOPERM)", 10_000);
      expect(lost.length).toBe(before);
      expect(clients.subscriptions.recovering).toBe(true);
    } finally {
      await clients.commands.call("ACL", "SETUSER", "default", "allchannels");
    }
    await waitUntil(() => lost.length > before, "onSubscriptionsLost once SSUBSCRIBE is allowed again", 10_000);
    expect(clients.subscriptions.recovering).toBe(false);
    await clients.commands.spublish("t:c:{a}:1", "after-acl");
    await received("t:c:{a}:1", "after-acl");
  });

  it("unsubscribe stops deliveries of that channel", async () => {
    clients.subscriptions.unsubscribe("t:c:{b}:2");
    await waitUntil(async () => Number(await clients.commands.spublish("t:c:{b}:2", "x")) === 0, "SUNSUBSCRIBE to take effect", 5_000);
    expect([...clients.subscriptions.channels]).toEqual(["t:c:{a}:1"]);
  });

  it("while Redis is frozen, every call fails within the deadline from its arrival; then recovers within a second", async () => {
    const callers = 64;
    const freezeMs = 1_500;
    const measure = async (call: () => Promise<unknown>) => {
      const errors: number[] = [];
      let successes = 0;
      const stopAt = Date.now() + freezeMs;
      await Promise.all(
        Array.from({ length: callers }, async (_, i) => {
          // Staggered arrivals: most calls arrive while earlier ones are already waiting.
          await new Promise((resolve) => setTimeout(resolve, (i * TIMEOUT_MS) / callers));
          while (Date.now() < stopAt) {
            const started = performance.now();
            try {
              await call();
              successes++;
            } catch (error) {
              errors.push(performance.now() - started);
              if (!(error instanceof StoreUnavailable)) throw error;
            }
          }
        }),
      );
      errors.sort((a, b) => a - b);
      return { successes, calls: errors.length, p50: Math.round(errors[Math.floor(errors.length * 0.5)] ?? 0), p99: Math.round(errors[Math.floor(errors.length * 0.99)] ?? 0), max: Math.round(errors.at(-1) ?? 0) };
    };

    await clients.commands.set("t:single:k", "v");
    process.kill(serverPid, "SIGSTOP");
    try {
      const withDeadline = await measure(() => callRedis(() => clients.within(() => clients.commands.get("t:single:k"))));
      timings.frozen = { timeoutMs: TIMEOUT_MS, callers, withDeadline };
      expect(withDeadline.successes).toBe(0);
      expect(withDeadline.calls).toBeGreaterThanOrEqual(callers * 2);
      expect(withDeadline.p99).toBeLessThanOrEqual(TIMEOUT_MS * 1.2);
      expect(withDeadline.max).toBeLessThanOrEqual(TIMEOUT_MS * 1.2);
    } finally {
      process.kill(serverPid, "SIGCONT");
    }
    const resumed = Date.now();
    await waitUntil(
      async () => {
        const results = await Promise.allSettled(Array.from({ length: callers }, () => clients.within(() => clients.commands.get("t:single:k"))));
        return results.every((r) => r.status === "fulfilled" && r.value === "v");
      },
      "all 64 calls to succeed after SIGCONT",
      5_000,
    );
    timings.resumedToAllSucceedMs = Date.now() - resumed;
    expect(Date.now() - resumed).toBeLessThan(1_000);
  });

  it("a connection made while Redis is frozen is replaced after the deadline, and is ready once Redis answers again", async () => {
    const commands = clients.commands as Redis;
    const connected: number[] = [];
    const onConnect = () => connected.push(Date.now());
    commands.on("connect", onConnect);
    process.kill(serverPid, "SIGSTOP");
    try {
      // The stopped process still completes TCP handshakes: the new connection's ready check gets no reply.
      // (ioredis destroys a socket Redis does not close within its disconnectTimeout, 2 s, then reconnects.)
      commands.disconnect(true);
      await waitUntil(() => connected.length >= 2, "a second connection once the first one's ready check stalled", 8_000);
      expect(connected[1]! - connected[0]!).toBeGreaterThanOrEqual(TIMEOUT_MS - 10);
      expect(commands.status).not.toBe("ready");
      await expect(callRedis(() => clients.within(() => commands.get("t:single:k")))).rejects.toBeInstanceOf(StoreUnavailable);
    } finally {
      process.kill(serverPid, "SIGCONT");
      commands.off("connect", onConnect);
    }
    await waitUntil(() => commands.status === "ready", "the command client ready after SIGCONT", 5_000);
    await expect(clients.within(() => commands.get("t:single:k"))).resolves.toBe("v");
  });

  it("deadline errors are plain Errors that start with 'Command timed out'", async () => {
    const error = await clients.within(() => new Promise(() => {})).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CommandDeadlineError);
    expect(String((error as Error).message)).toMatch(/^Command timed out/);
  });

  it("WAIT: 0 replicas asked resolves 0; 1 asked of a replica-less server fails with the count", async () => {
    await expect(clients.waitForReplicas("t:single:k")).resolves.toBe(0);
    await clients.commands.set("t:single:w", "1");
    const error = await waitForReplicas(clients.commands, "t:single:w", 1, 50).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ReplicasNotAcknowledged);
    expect(error).toMatchObject({ wanted: 1, acknowledged: 0 });
    await expect(callRedis(() => Promise.reject(error))).rejects.toBeInstanceOf(StoreUnavailable);
  });

  it("close ends both clients", async () => {
    const other = createRedisClients(clients.target, { name: "redis-clients-test-2" });
    await other.connect();
    await within(other.close(), "close", 3_000);
    expect(other.all().map((c) => c.client.status)).toEqual(["end", "end"]);
  });
});
