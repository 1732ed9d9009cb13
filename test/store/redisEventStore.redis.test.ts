/**
 * What only the Redis adapter has: the stored layout (2), the publications
 * from the append script, the script's guard under a real race, and
 * connection handling. Everything else is in the contract suite.
 */
import { createServer } from "node:net";
import { Command, type Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { StoreUnavailable } from "../../src/domain/index.js";
import type { AppendResult, EventStore } from "../../src/store/eventStore.js";
import { decodePartitionMessage, decodeStoredEvent, decodeUpdate } from "../../src/store/redis/codec.js";
import { createRedisKeys, DEFAULT_PARTITIONS } from "../../src/store/redis/keys.js";
import { createRedisConnection } from "../../src/store/redis/redisConnection.js";
import { createRedisEventStore, StoreLayoutError } from "../../src/store/redis/redisEventStore.js";
import { respCommand } from "../../src/store/redis/scripts.js";
import { hashSlot } from "../../src/store/redis/slots.js";
import { cmd, recordOn, recordsOf } from "../domain/deliveryScenario.js";
import { keysUnder } from "../grpc/e2e.support.js";
import { connectRedis, testRedisUrl, uniquePrefix } from "../support/redis.js";
import { appendAll, FOUR_EVENTS, fingerprintOf, requestKeyOf, stored, withRequestId } from "./eventStoreContract.js";

const DEADLINE_MS = 5_000;

/** Field list of a stream entry as an object. */
function fieldsOf(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

/** Messages on one channel, awaited one at a time with a deadline (no sleeps). */
class ChannelMessages {
  private readonly queued: { channel: string; message: Buffer }[] = [];
  private waiter: (() => void) | undefined;

  constructor(subscriber: Redis) {
    subscriber.on("smessageBuffer", (channel: Buffer, message: Buffer) => {
      this.queued.push({ channel: channel.toString(), message });
      this.waiter?.();
    });
  }

  async next(): Promise<{ channel: string; message: Buffer }> {
    const deadline = Date.now() + DEADLINE_MS;
    while (this.queued.length === 0) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no message within ${DEADLINE_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
    return this.queued.shift()!;
  }
}

describe("redis event store: Redis specifics", () => {
  let redis: Redis;
  let prefix: string;
  let store: EventStore;

  beforeAll(() => {
    redis = connectRedis(testRedisUrl());
  });

  afterAll(async () => {
    await redis.quit();
  });

  beforeEach(() => {
    prefix = uniquePrefix();
    store = createRedisEventStore({ redis, keyPrefix: prefix });
  });

  const keys = () => createRedisKeys(prefix, DEFAULT_PARTITIONS);

  describe("stored layout", () => {
    it("records the layout and the partition count at first start", async () => {
      await store.load("d1");

      expect(await redis.hgetall(`${prefix}meta`)).toEqual({ layout: "2", partitions: String(DEFAULT_PARTITIONS) });
      // A later start with another setting keeps the recorded count.
      const other = createRedisEventStore({ redis, keyPrefix: prefix, partitions: 3 });
      expect((await other.open()).partitions).toBe(DEFAULT_PARTITIONS);
    });

    it("refuses a Redis written by release 1, naming the migration", async () => {
      await redis.xadd(`${prefix}deliveries`, "*", "id", "old-1");
      const refused = createRedisEventStore({ redis, keyPrefix: prefix });

      const error = await refused.open().then(() => undefined, (e: unknown) => e);

      expect(error).toBeInstanceOf(StoreLayoutError);
      expect((error as Error).message).toContain("npm run migrate");
      expect(await redis.exists(`${prefix}meta`)).toBe(0);
    });

    it("refuses a layout it does not know", async () => {
      await redis.hset(`${prefix}meta`, "layout", "3", "partitions", "16");

      await expect(createRedisEventStore({ redis, keyPrefix: prefix }).open()).rejects.toThrow(/layout 3/);
    });

    it("keeps one List element per event (StoredEvent protobuf, with its request id) and the request ids beside them", async () => {
      const records = stored(recordsOf("d1", FOUR_EVENTS));
      await appendAll(store, records);
      const k = keys().delivery("d1");

      const entries = await redis.lrangeBuffer(k.log, 0, -1);
      expect(entries).toHaveLength(4);
      entries.forEach((bytes, i) => expect(decodeStoredEvent(bytes, "d1", i + 1)).toEqual(records[i]!.event));
      expect(await redis.hgetall(k.requests)).toEqual(
        Object.fromEntries(records.map((r) => [`r${requestKeyOf(r.event.version)}`, `${r.event.version}:${fingerprintOf(r.event.version)}`])),
      );
    });

    it("keeps a private key per append without a request_id, so a resent append is a duplicate", async () => {
      const [created] = recordsOf("d1", [cmd.create(5)]);
      await store.append({ record: created!, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp" });

      const fields = Object.keys(await redis.hgetall(keys().delivery("d1").requests));
      expect(fields).toHaveLength(1);
      expect(fields[0]).toMatch(/^a[A-Za-z0-9_-]{8}$/);
    });

    it("indexes a delivery under its current status only, with a member that sorts by creation", async () => {
      const records = recordsOf("d1", FOUR_EVENTS);
      await appendAll(store, records);
      const k = keys().delivery("d1");

      for (const status of ["READY", "ACTIVE", "COMPLETED", "CANCELLED"] as const) expect(await redis.zcard(k.index(status))).toBe(0);
      expect(await redis.zrange(k.index("COLLECTED"), "0", "-1")).toEqual([`${String(records[0]!.event.occurredAtMs).padStart(13, "0")}d1`]);
    });

    it("adds one feed entry per event with the status before and after and the event type", async () => {
      const records = recordsOf("d1", FOUR_EVENTS);
      await appendAll(store, records);

      const entries = (await redis.xrange(keys().delivery("d1").feed, "-", "+")) as [string, string[]][];
      expect(entries.map(([, fields]) => fieldsOf(fields))).toEqual([
        { d: "d1", v: "1", s: "01", t: "c" },
        { d: "d1", v: "2", s: "12", t: "s" },
        { d: "d1", v: "3", s: "23", t: "p" },
        { d: "d1", v: "4", s: "33", t: "b" },
      ]);
    });

    it("trims feed entries older than the feed retention with the append, by the appender's clock", async () => {
      let clock = 1_000_000;
      const short = createRedisEventStore({ redis, keyPrefix: prefix, feedRetentionMs: 60_000, now: () => clock });
      await appendAll(short, recordsOf("d1", [cmd.create(1)]));
      clock += 60_001;
      await appendAll(short, recordsOf("d2", [cmd.create(1)]));

      const feed = (await redis.xrange(keys().delivery("d1").feed, "-", "+")) as [string, string[]][];
      const sameFeed = keys().delivery("d1").feed === keys().delivery("d2").feed;
      // d1 and d2 may live in different partitions; in its own partition each feed holds what is recent.
      expect(feed.map(([, f]) => fieldsOf(f).d)).toEqual(sameFeed ? ["d2"] : ["d1"]);
    });

    it("deletes on read a delivery that finished before retention was turned on (it has no expiry entry)", async () => {
      const done = recordsOf("old", [cmd.create(1), cmd.cancel("before retention")]);
      await appendAll(store, done);
      const finishedAt = done.at(-1)!.event.occurredAtMs;
      const retained = createRedisEventStore({ redis, keyPrefix: prefix, retainFinishedForMs: 1_000, now: () => finishedAt + 1_000 });

      expect((await retained.load("old")).state.status).toBe("NONE");
      const k = keys().delivery("old");
      expect(await redis.exists(k.log, k.requests)).toBe(0);
      expect(await redis.zcard(k.index("CANCELLED"))).toBe(0);
    });

    it("writes no key outside the layout", async () => {
      await appendAll(store, recordsOf("d1", FOUR_EVENTS));
      await appendAll(store, recordsOf("d2", [cmd.create(1), cmd.cancel("no")]));
      const k = keys();

      const expected = [
        k.meta,
        ...["d1", "d2"].flatMap((id) => [k.delivery(id).log, k.delivery(id).requests, k.delivery(id).feed]),
        k.delivery("d1").index("COLLECTED"),
        k.delivery("d2").index("CANCELLED"),
      ];
      expect(await keysUnder(redis, prefix)).toEqual([...new Set(expected)].sort());
    });

    it("spreads partitions over the slots, and keeps every key of a delivery in one slot", () => {
      const k = keys();
      const slots = Array.from({ length: k.partitions }, (_, p) => hashSlot(k.partition(p).feed)).sort((a, b) => a - b);
      // Evenly spaced: each partition's slot in its own sixteenth of 0..16383.
      slots.forEach((slot, p) => expect(Math.floor((slot * k.partitions) / 16_384)).toBe(p));
      const d = k.delivery("some-delivery");
      const all = [d.log, d.requests, d.feed, d.expiry, d.index("READY"), d.channel, d.partitionChannel].map(hashSlot);
      expect(new Set(all).size).toBe(1);
    });
  });

  describe("publication", () => {
    let subscriber: Redis;

    beforeEach(() => {
      subscriber = connectRedis(testRedisUrl());
    });

    afterEach(async () => {
      await subscriber.quit();
    });

    it("publishes the WatchDelivery message on the delivery's channel for each append, and nothing for a rejected one", async () => {
      const channel = keys().channel("d1");
      const messages = new ChannelMessages(subscriber);
      await subscriber.ssubscribe(channel); // resolves on the acknowledgement
      const records = stored(recordsOf("d1", FOUR_EVENTS));

      await appendAll(store, records.slice(0, 1));
      const first = await messages.next();
      expect(first.channel).toBe(channel);
      expect(decodeUpdate(first.message)).toEqual(records[0]);

      // A conflict and a duplicate publish nothing: the next message is version 2.
      const conflict = await store.append({ record: records[1]!, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp" });
      expect(conflict.outcome).toBe("conflict");
      const duplicate = await store.append({ record: withRequestId(records[1]!, requestKeyOf(1)), expectedVersion: 1, previousStatus: "READY", fingerprint: "fp" });
      expect(duplicate.outcome).toBe("duplicate");
      await appendAll(store, records.slice(1, 2));
      const second = await messages.next();
      expect(decodeUpdate(second.message)).toEqual(records[1]);
    });

    it("publishes on each delivery's own channel, and on the partition's the feed entry with the one before it and the update", async () => {
      const messages = new ChannelMessages(subscriber);
      await subscriber.ssubscribe(keys().channel("d2"), keys().delivery("d2").partitionChannel);
      await appendAll(store, recordsOf("d1", [cmd.create(1)]));
      const d2 = stored(recordsOf("d2", [cmd.create(2)]));
      await appendAll(store, d2);

      const received = [await messages.next(), await messages.next()];
      const byChannel = new Map(received.map((m) => [m.channel, m.message]));
      expect(decodeUpdate(byChannel.get(keys().channel("d2"))!)).toEqual(d2[0]);
      const d = keys().delivery("d2");
      const change = decodePartitionMessage(d.partition, byChannel.get(d.partitionChannel)!);
      expect(change?.entry).toMatchObject({ partition: d.partition, deliveryId: "d2", version: 1, before: "NONE", after: "READY" });
      expect(change?.record).toEqual(d2[0]);
      const [entry] = (await redis.xrange(d.feed, change!.entry.id, change!.entry.id)) as [string, string[]][];
      expect(fieldsOf(entry![1])).toMatchObject({ d: "d2", v: "1" });
      const [before] = (await redis.xrevrange(d.feed, `(${change!.entry.id}`, "-", "COUNT", 1)) as [string, string[]][];
      expect(change?.previous).toBe(before?.[0] ?? "0-0");
    });
  });

  describe("the append script under a race", () => {
    const CONTENDERS = 20;
    let connections: Redis[];
    let stores: EventStore[];

    beforeEach(() => {
      // Several connections, so the appends really arrive interleaved.
      connections = Array.from({ length: 5 }, () => connectRedis(testRedisUrl()));
      stores = connections.map((c) => createRedisEventStore({ redis: c, keyPrefix: prefix }));
    });

    afterEach(async () => {
      await Promise.all(connections.map((c) => c.quit()));
    });

    function tally(results: AppendResult[]) {
      return {
        appended: results.filter((r) => r.outcome === "appended").length,
        conflicts: results.filter((r) => r.outcome === "conflict").length,
      };
    }

    it(`lets exactly one of ${CONTENDERS} appends at the same expected version in`, async () => {
      const [created] = recordsOf("d1", [cmd.create(1000)]);
      await appendAll(store, [created!]);
      const contenders = Array.from({ length: CONTENDERS }, (_, i) => recordOn("d1", created!.delivery, cmd.increaseBudget(i + 1)));

      const results = await Promise.all(
        contenders.map((record, i) =>
          stores[i % stores.length]!.append({ record: withRequestId(record, `race-${i}`), expectedVersion: 1, previousStatus: "READY", fingerprint: `fp-${i}` }),
        ),
      );

      expect(tally(results)).toEqual({ appended: 1, conflicts: CONTENDERS - 1 });
      for (const r of results) if (r.outcome === "conflict") expect(r.currentVersion).toBe(2);
      const index = results.findIndex((r) => r.outcome === "appended");
      const winner = withRequestId(contenders[index]!, `race-${index}`);
      expect(await redis.llen(keys().delivery("d1").log)).toBe(2);
      expect((await store.load("d1")).state).toEqual(winner.delivery);
      expect(await store.readAfter("d1", 0, 100)).toEqual([withRequestId(created!, requestKeyOf(1)), winner]);
      expect(await redis.hlen(keys().delivery("d1").requests)).toBe(2);
    });

    it(`lets exactly one of ${CONTENDERS} creations of the same delivery in, and indexes it once`, async () => {
      const contenders = Array.from({ length: CONTENDERS }, (_, i) => recordsOf("d1", [cmd.create(i, `attempt ${i}`)])[0]!);

      const results = await Promise.all(
        contenders.map((record, i) =>
          stores[i % stores.length]!.append({ record, expectedVersion: 0, previousStatus: "NONE", fingerprint: `fp-${i}` }),
        ),
      );

      expect(tally(results)).toEqual({ appended: 1, conflicts: CONTENDERS - 1 });
      const winner = contenders[results.findIndex((r) => r.outcome === "appended")]!;
      expect((await store.load("d1")).state).toEqual(winner.delivery);
      expect(await redis.zcard(keys().delivery("d1").index("READY"))).toBe(1);
      expect(await redis.xlen(keys().delivery("d1").feed)).toBe(1);
      expect((await store.list({ statuses: [], order: "asc", limit: 100 })).deliveries).toEqual([winner.delivery]);
    });
  });

  describe("the append script's packed fields", () => {
    it("keeps a request_id of any characters whole: NUL, spaces, the separator, non-ASCII", async () => {
      const requestId = "a\0b \0\0c|日本\0";
      const [created] = recordsOf("d-packed", [cmd.create(1000, "notes\0with NUL")]);
      const record = withRequestId(created!, requestId);
      const first = await store.append({ record, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp-1" });
      expect(first.outcome).toBe("appended");
      expect(await redis.hget(keys().delivery("d-packed").requests, `r${requestId}`)).toBe("1:fp-1");
      // A retry is the same request, found by the whole request_id.
      const retry = await store.append({ record, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp-1" });
      expect(retry).toEqual({ outcome: "duplicate", prior: { version: 1, fingerprint: "fp-1" } });
      expect(await store.readAfter("d-packed", 0, 10)).toEqual([record]);
    });

    it("refuses a key prefix with a NUL character", () => {
      expect(() => createRedisEventStore({ redis, keyPrefix: "bad\0prefix:" })).toThrow(/NUL/);
    });
  });

  describe("script calls", () => {
    it("are written byte for byte as ioredis writes a command", () => {
      const cases: (string | Buffer)[][] = [
        [],
        ["sha", "6", "l:{p}:d-1", ""],
        ["1\0fp\0d-1\0", Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), "日本 notes", Buffer.alloc(300, 7)],
        [Buffer.alloc(10_000, 1), "x".repeat(12_345)],
      ];
      for (const args of cases) {
        const expected = new Command("evalsha", [...args]).toWritable({});
        expect(respCommand("evalsha", args)).toEqual(Buffer.isBuffer(expected) ? expected : Buffer.from(expected));
      }
    });

    it("use the service's own command writer for every script (with this ioredis)", () => {
      const scripts = (redis as unknown as { scriptsSet: Record<string, { Command: { name: string } }> }).scriptsSet;
      expect(Object.keys(scripts)).toEqual(["appendEvent", "deleteDelivery", "importDelivery"]);
      for (const script of Object.values(scripts)) expect(script.Command.name).toBe("ScriptCommand");
    });

    it("load the script again after Redis has forgotten it (SCRIPT FLUSH), and append once", async () => {
      const [created, started] = recordsOf("d-flush", [cmd.create(1000, "n"), cmd.start()]);
      expect((await store.append({ record: created!, expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp-1" })).outcome).toBe("appended");
      await redis.script("FLUSH");
      expect((await store.append({ record: started!, expectedVersion: 1, previousStatus: "READY", fingerprint: "fp-2" })).outcome).toBe("appended");
      expect(await store.readAfter("d-flush", 0, 10)).toEqual([created, started]);
      // Loaded again: the next call goes by its hash, and the script still guards the version.
      expect((await store.append({ record: started!, expectedVersion: 1, previousStatus: "READY", fingerprint: "fp-2" })).outcome).toBe("conflict");
    });
  });

  describe("connections", () => {
    it("does not close the connection it was given", async () => {
      const own = connectRedis(testRedisUrl());
      try {
        const mine = createRedisEventStore({ redis: own, keyPrefix: prefix });
        await mine.close();
        await mine.close();
        expect(await own.ping()).toBe("PONG");
      } finally {
        await own.quit();
      }
    });

    it("fails with StoreUnavailable, at once, when Redis cannot be reached", async () => {
      // A port nobody listens on: bind an ephemeral one, then release it.
      const port = await new Promise<number>((resolve, reject) => {
        const server = createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
          const address = server.address();
          server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
        });
      });
      expect(port).toBeGreaterThan(0);
      const down = createRedisConnection(`redis://127.0.0.1:${port}`, "unreachable-test");
      try {
        const unreachable = createRedisEventStore({ redis: down, keyPrefix: prefix });
        const [created] = recordsOf("d1", [cmd.create(1)]);
        await expect(unreachable.load("d1")).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(
          unreachable.append({ record: created!, expectedVersion: 0, previousStatus: "NONE", fingerprint: "f" }),
        ).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.readAfter("d1", 0, 10)).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.list({ statuses: [], order: "asc", limit: 10 })).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.currentVersions(["d1"])).rejects.toBeInstanceOf(StoreUnavailable);
      } finally {
        down.disconnect();
      }
    });
  });
});
