/**
 * What only the Redis adapter has: the stored layout, the publication from
 * the append script, the script's guard under a real race, and connection
 * handling. Everything else is in the contract suite.
 */
import { createServer } from "node:net";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { StoreUnavailable } from "../../src/domain/index.js";
import { decodeDeliveryJson, decodeEventJson, decodeUpdateJson } from "../../src/mapping/protoMapping.js";
import type { AppendResult, EventStore } from "../../src/store/eventStore.js";
import { createRedisConnection } from "../../src/store/redis/redisConnection.js";
import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import { cmd, recordOn, recordsOf } from "../domain/deliveryScenario.js";
import { connectRedis, testRedisUrl, uniquePrefix } from "../support/redis.js";
import { appendAll, FOUR_EVENTS, fingerprintOf, requestKeyOf } from "./eventStoreContract.js";

const DEADLINE_MS = 5_000;

/** Field list of a stream entry as an object. */
function fieldsOf(fields: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

/** Messages on one channel, awaited one at a time with a deadline (no sleeps). */
class ChannelMessages {
  private readonly queued: { channel: string; message: string }[] = [];
  private waiter: (() => void) | undefined;

  constructor(subscriber: Redis) {
    subscriber.on("message", (channel: string, message: string) => {
      this.queued.push({ channel, message });
      this.waiter?.();
    });
  }

  async next(): Promise<{ channel: string; message: string }> {
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

  describe("stored layout", () => {
    it("keeps one stream entry per event, with entry id <version>-0 and readable event and delivery JSON", async () => {
      const records = recordsOf("d1", FOUR_EVENTS);
      await appendAll(store, records);

      const entries = (await redis.xrange(`${prefix}delivery:{d1}:events`, "-", "+")) as [string, string[]][];

      expect(entries.map(([id]) => id)).toEqual(["1-0", "2-0", "3-0", "4-0"]);
      entries.forEach(([, fields], i) => {
        const entry = fieldsOf(fields);
        expect(Object.keys(entry).sort()).toEqual(["delivery", "event"]);
        expect(decodeEventJson(entry.event!)).toEqual(records[i]!.event);
        expect(decodeDeliveryJson(entry.delivery!)).toEqual(records[i]!.delivery);
      });
      // Readable as is in redis-cli: the proto's canonical JSON.
      const third = fieldsOf(entries[2]![1]);
      expect(JSON.parse(third.event!)).toMatchObject({
        deliveryId: "d1",
        version: "3",
        productsPickedUp: { purchasePrice: "100", quantity: "5" },
      });
      expect(JSON.parse(third.delivery!)).toMatchObject({
        id: "d1",
        status: "DELIVERY_STATUS_COLLECTED",
        budget: "500",
        purchasePrice: "100",
        quantity: "5",
        version: "3",
      });
    });

    it("keeps the current version and delivery in the state hash", async () => {
      const records = recordsOf("d1", FOUR_EVENTS);
      await appendAll(store, records);
      const state = await redis.hgetall(`${prefix}delivery:{d1}:state`);
      expect(Object.keys(state).sort()).toEqual(["delivery", "version"]);
      expect(state.version).toBe("4");
      expect(decodeDeliveryJson(state.delivery!)).toEqual(records[3]!.delivery);
      const lastEntry = (await redis.xrange(`${prefix}delivery:{d1}:events`, "4-0", "4-0")) as [string, string[]][];
      expect(state.delivery).toBe(fieldsOf(lastEntry[0]![1]).delivery);
    });

    it("records each request key with its version and fingerprint", async () => {
      await appendAll(store, recordsOf("d1", FOUR_EVENTS));
      expect(await redis.hgetall(`${prefix}delivery:{d1}:requests`)).toEqual(
        Object.fromEntries([1, 2, 3, 4].map((v) => [requestKeyOf(v), `${v}:${fingerprintOf(v)}`])),
      );
    });

    it("indexes a delivery once, at creation, and writes no key outside its prefix's layout", async () => {
      await appendAll(store, recordsOf("d1", FOUR_EVENTS));
      await appendAll(store, recordsOf("d2", [cmd.create(5)]));
      const index = (await redis.xrange(`${prefix}deliveries`, "-", "+")) as [string, string[]][];
      expect(index.map(([, fields]) => fieldsOf(fields))).toEqual([{ id: "d1" }, { id: "d2" }]);

      const keys: string[] = [];
      let cursor = "0";
      do {
        const [next, batch] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        keys.push(...batch);
        cursor = next;
      } while (cursor !== "0");
      expect(keys.sort()).toEqual(
        [
          `${prefix}deliveries`,
          ...["d1", "d2"].flatMap((id) => ["events", "requests", "state"].map((k) => `${prefix}delivery:{${id}}:${k}`)),
        ].sort(),
      );
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

    it("publishes {event, delivery} on the delivery's channel for each append, and nothing for a rejected one", async () => {
      const channel = `${prefix}delivery:{d1}`;
      const messages = new ChannelMessages(subscriber);
      await subscriber.subscribe(channel); // resolves on the acknowledgement
      const records = recordsOf("d1", FOUR_EVENTS);

      await appendAll(store, records.slice(0, 1));
      const first = await messages.next();
      expect(first.channel).toBe(channel);
      const parsed = JSON.parse(first.message) as Record<string, unknown>;
      expect(Object.keys(parsed).sort()).toEqual(["delivery", "event"]);
      const entry = (await redis.xrange(`${prefix}delivery:{d1}:events`, "1-0", "1-0")) as [string, string[]][];
      const stored = fieldsOf(entry[0]![1]);
      expect(parsed.event).toEqual(JSON.parse(stored.event!));
      expect(parsed.delivery).toEqual(JSON.parse(stored.delivery!));
      expect(decodeUpdateJson(first.message)).toEqual(records[0]);

      // A conflict and a duplicate publish nothing: the next message is version 2.
      const conflict = await store.append({ record: records[1]!, expectedVersion: 0, requestKey: "other", fingerprint: "fp" });
      expect(conflict.outcome).toBe("conflict");
      const duplicate = await store.append({ record: records[1]!, expectedVersion: 1, requestKey: requestKeyOf(1), fingerprint: "fp" });
      expect(duplicate.outcome).toBe("duplicate");
      await appendAll(store, records.slice(1, 2));
      const second = await messages.next();
      expect(decodeUpdateJson(second.message)).toEqual(records[1]);
    });

    it("publishes on each delivery's own channel", async () => {
      const messages = new ChannelMessages(subscriber);
      await subscriber.subscribe(`${prefix}delivery:{d2}`);
      await appendAll(store, recordsOf("d1", [cmd.create(1)]));
      const d2 = recordsOf("d2", [cmd.create(2)]);
      await appendAll(store, d2);
      const message = await messages.next();
      expect(message.channel).toBe(`${prefix}delivery:{d2}`);
      expect(decodeUpdateJson(message.message)).toEqual(d2[0]);
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
          stores[i % stores.length]!.append({ record, expectedVersion: 1, requestKey: `race-${i}`, fingerprint: `fp-${i}` }),
        ),
      );

      expect(tally(results)).toEqual({ appended: 1, conflicts: CONTENDERS - 1 });
      for (const r of results) if (r.outcome === "conflict") expect(r.currentVersion).toBe(2);
      const winner = contenders[results.findIndex((r) => r.outcome === "appended")]!;
      expect(await redis.xlen(`${prefix}delivery:{d1}:events`)).toBe(2);
      expect((await store.load("d1")).state).toEqual(winner.delivery);
      expect(await store.readAfter("d1", 0, 100)).toEqual([created, winner]);
      expect(await redis.hlen(`${prefix}delivery:{d1}:requests`)).toBe(2);
    });

    it(`lets exactly one of ${CONTENDERS} creations of the same delivery in, and indexes it once`, async () => {
      const contenders = Array.from({ length: CONTENDERS }, (_, i) => recordsOf("d1", [cmd.create(i, `attempt ${i}`)])[0]!);

      const results = await Promise.all(
        contenders.map((record, i) =>
          stores[i % stores.length]!.append({ record, expectedVersion: 0, requestKey: `create-${i}`, fingerprint: `fp-${i}` }),
        ),
      );

      expect(tally(results)).toEqual({ appended: 1, conflicts: CONTENDERS - 1 });
      const winner = contenders[results.findIndex((r) => r.outcome === "appended")]!;
      expect((await store.load("d1")).state).toEqual(winner.delivery);
      expect(await redis.xlen(`${prefix}deliveries`)).toBe(1);
      expect((await store.list(undefined, 100)).deliveries).toEqual([winner.delivery]);
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
          unreachable.append({ record: created!, expectedVersion: 0, requestKey: "r", fingerprint: "f" }),
        ).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.readAfter("d1", 0, 10)).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.list(undefined, 10)).rejects.toBeInstanceOf(StoreUnavailable);
        await expect(unreachable.currentVersions(["d1"])).rejects.toBeInstanceOf(StoreUnavailable);
      } finally {
        down.disconnect();
      }
    });
  });
});
