/**
 * The application service (load, decide, evolve, append with retries,
 * idempotency by request id, name-based ids) against every store.
 */
import type { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDeliveryApp, type DeliveryApp } from "../../src/app/deliveryApp.js";
import { DELIVERY_ID_NAMESPACE, nameBasedUuid } from "../../src/app/nameBasedUuid.js";
import { DeliveryAlreadyExists, DeliveryNotFound, DomainError, InvalidTransition, RequestIdReused, VersionConflict } from "../../src/domain/index.js";
import type { EventStore } from "../../src/store/eventStore.js";
import { createMemoryEventStore } from "../../src/store/memory/memoryEventStore.js";
import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import { cmd, T0_MS } from "../domain/deliveryScenario.js";
import { connectRedis, testRedisUrl, uniquePrefix } from "../support/redis.js";

const UUID_V5 = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface StoreFactory {
  readonly name: string;
  make(): { store: EventStore; cleanup(): Promise<void> };
}

const FACTORIES: readonly StoreFactory[] = [
  { name: "memory", make: () => ({ store: createMemoryEventStore(), cleanup: async () => {} }) },
  {
    name: "redis",
    make: () => {
      const redis: Redis = connectRedis(testRedisUrl());
      return {
        store: createRedisEventStore({ redis, keyPrefix: uniquePrefix() }),
        cleanup: async () => {
          await redis.quit();
        },
      };
    },
  },
];

/** A clock that moves 1 s per reading, so event times are distinct and retry deadlines still pass. */
function tickingClock(): () => number {
  let now = T0_MS;
  return () => (now += 1_000);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (error: unknown) => error,
  );
}

describe("newDeliveryId", () => {
  const app = createDeliveryApp({ store: createMemoryEventStore() });

  it("derives the same UUID v5 from the same request id", () => {
    const id = app.newDeliveryId("order-42");
    expect(id).toMatch(UUID_V5);
    expect(app.newDeliveryId("order-42")).toBe(id);
    expect(createDeliveryApp({ store: createMemoryEventStore() }).newDeliveryId("order-42")).toBe(id);
  });

  it("derives different ids from different request ids", () => {
    expect(app.newDeliveryId("order-42")).not.toBe(app.newDeliveryId("order-43"));
  });

  it("is the RFC 9562 name-based UUID in the service's namespace", () => {
    // Reference values from Python's uuid.uuid5.
    expect(nameBasedUuid("python.org", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe("886313e1-3b8a-5372-9b90-0c9aee199e5d");
    expect(nameBasedUuid("req-1", DELIVERY_ID_NAMESPACE)).toBe("3acd84c1-6d54-5907-acd6-9c7315e0a4ba");
    expect(app.newDeliveryId("req-1")).toBe("3acd84c1-6d54-5907-acd6-9c7315e0a4ba");
  });

  it("is random without a request id", () => {
    const ids = new Set(Array.from({ length: 20 }, () => app.newDeliveryId(undefined)));
    expect(ids.size).toBe(20);
    for (const id of ids) expect(id).toMatch(UUID_V4);
  });
});

describe.each(FACTORIES)("delivery app on the $name store", (factory) => {
  let store: EventStore;
  let cleanup: () => Promise<void>;
  let app: DeliveryApp;

  beforeEach(() => {
    ({ store, cleanup } = factory.make());
    app = createDeliveryApp({ store, now: tickingClock() });
  });

  afterEach(async () => {
    await store.close();
    await cleanup();
  });

  const logOf = (id: string) => store.readAfter(id, 0, 1000);

  describe("states remembered from its own appends, two replicas on one store", () => {
    let loads = 0;
    const counted = (): EventStore => ({
      ...store,
      load(id, requestId) {
        loads++;
        return store.load(id, requestId);
      },
    });
    beforeEach(() => {
      loads = 0;
    });

    it("decides a command on the state it last appended without reading the store, and reads it with recentStates 0", async () => {
      const a = createDeliveryApp({ store: counted(), now: tickingClock() });
      await a.execute("r1", cmd.create(100));
      for (let i = 0; i < 3; i++) await a.execute("r1", cmd.increaseBudget(1));
      // The create too: an id it does not know is decided on none (the append checks it is one).
      expect(loads).toBe(0);
      expect((await a.get("r1")).budgetMinor).toBe(103);

      loads = 0;
      const reading = createDeliveryApp({ store: counted(), now: tickingClock(), recentStates: 0 });
      await reading.execute("r0", cmd.create(100));
      await reading.execute("r0", cmd.increaseBudget(1));
      expect(loads).toBe(1);
    });

    it("creates without a read, and refuses a create of an id another replica holds on the stored state, writing nothing", async () => {
      const a = createDeliveryApp({ store: counted(), now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      await b.execute("r7", cmd.create(100));
      await b.execute("r7", cmd.increaseBudget(1));
      const before = await logOf("r7");
      expect(await rejection(a.execute("r7", cmd.create(500)))).toBeInstanceOf(DeliveryAlreadyExists);
      expect(loads).toBe(1);
      expect(await logOf("r7")).toEqual(before);
    });

    it("answers a retried create another replica recorded with its first record, and refuses the request_id for another create", async () => {
      const a = createDeliveryApp({ store, now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      const first = await b.execute("r8", cmd.create(100), { requestId: "create-r8" });
      expect(await a.execute("r8", cmd.create(100), { requestId: "create-r8" })).toEqual(first);
      expect(await rejection(a.execute("r8", cmd.create(999), { requestId: "create-r8" }))).toBeInstanceOf(RequestIdReused);
      expect(await logOf("r8")).toEqual([first]);
    });

    it("appends after a change another replica made since: the conflict sends it to the stored state", async () => {
      const a = createDeliveryApp({ store, now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      await a.execute("r2", cmd.create(100));
      await b.execute("r2", cmd.increaseBudget(10));
      const third = await a.execute("r2", cmd.increaseBudget(1));
      expect(third.event.version).toBe(3);
      expect(third.delivery.budgetMinor).toBe(111);
      expect((await logOf("r2")).map((r) => r.event.version)).toEqual([1, 2, 3]);
    });

    it("decides a refusal again on the stored state: what another replica did makes it allowed", async () => {
      const a = createDeliveryApp({ store, now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      await a.execute("r3", cmd.create(10_000));
      await b.execute("r3", cmd.start());
      // On the remembered READY state a pickup is refused; on the stored ACTIVE one it is recorded.
      const picked = await a.execute("r3", cmd.pickup(100, 2));
      expect(picked.delivery.status).toBe("COLLECTED");
      expect(picked.event.version).toBe(3);
    });

    it("answers a retry of a request another replica recorded with its first record", async () => {
      const a = createDeliveryApp({ store, now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      await a.execute("r4", cmd.create(100));
      const first = await b.execute("r4", cmd.increaseBudget(5), { requestId: "inc-r4" });
      const retry = await a.execute("r4", cmd.increaseBudget(5), { requestId: "inc-r4" });
      expect(retry).toEqual(first);
      expect(await logOf("r4")).toHaveLength(2);
    });

    it("checks a client's expected version against the stored state, not a remembered one", async () => {
      const a = createDeliveryApp({ store, now: tickingClock() });
      const b = createDeliveryApp({ store, now: tickingClock() });
      await a.execute("r5", cmd.create(100));
      await b.execute("r5", cmd.increaseBudget(1));
      expect(await rejection(a.execute("r5", cmd.increaseBudget(1), { expectedVersion: 1 }))).toBeInstanceOf(VersionConflict);
      expect((await a.execute("r5", cmd.increaseBudget(1), { expectedVersion: 2 })).event.version).toBe(3);
    });

    it("does not remember a finished delivery: a refusal on it comes from the stored state", async () => {
      const a = createDeliveryApp({ store: counted(), now: tickingClock() });
      await a.execute("r6", cmd.create(100));
      await a.execute("r6", cmd.cancel("no"));
      loads = 0;
      expect(await rejection(a.execute("r6", cmd.start()))).toBeInstanceOf(InvalidTransition);
      expect(loads).toBe(1);
    });
  });

  describe("idempotency by request id", () => {
    it("answers a retried create with the first record and writes nothing new", async () => {
      const id = app.newDeliveryId("create-1");
      const first = await app.execute(id, cmd.create(1000, "n"), { requestId: "create-1" });
      const retry = await app.execute(id, cmd.create(1000, "n"), { requestId: "create-1" });
      expect(retry).toEqual(first);
      expect(first.event).toMatchObject({ deliveryId: id, version: 1, requestId: "create-1" });
      expect(await logOf(id)).toEqual([first]);
    });

    it("answers a retried command with its first record even after the delivery moved on", async () => {
      await app.execute("d1", cmd.create(1000));
      const started = await app.execute("d1", cmd.start(), { requestId: "start-1" });
      await app.execute("d1", cmd.pickup(100, 2));
      // Decided again, a start would now be an InvalidTransition: the retry must not be decided again.
      const retry = await app.execute("d1", cmd.start(), { requestId: "start-1" });
      expect(retry).toEqual(started);
      expect((await logOf("d1")).map((r) => r.event.version)).toEqual([1, 2, 3]);
    });

    it("applies a retried budget increase once", async () => {
      await app.execute("d1", cmd.create(1000));
      const first = await app.execute("d1", cmd.increaseBudget(50), { requestId: "inc-1" });
      const retry = await app.execute("d1", cmd.increaseBudget(50), { requestId: "inc-1" });
      expect(retry).toEqual(first);
      expect((await app.get("d1")).budgetMinor).toBe(1050);
      expect(await logOf("d1")).toHaveLength(2);
    });

    it("honours a retry whose expected version was right the first time", async () => {
      await app.execute("d1", cmd.create(1000));
      const first = await app.execute("d1", cmd.start(), { requestId: "s", expectedVersion: 1 });
      expect(await app.execute("d1", cmd.start(), { requestId: "s", expectedVersion: 1 })).toEqual(first);
    });

    it("rejects a request id reused for a different command with RequestIdReused, writing nothing", async () => {
      await app.execute("d1", cmd.create(1000));
      await app.execute("d1", cmd.increaseBudget(50), { requestId: "inc-1" });
      const before = await logOf("d1");
      const error = await rejection(app.execute("d1", cmd.increaseBudget(51), { requestId: "inc-1" }));
      expect(error).toBeInstanceOf(RequestIdReused);
      expect((error as RequestIdReused).kind).toBe("RequestIdReused");
      expect(await logOf("d1")).toEqual(before);
    });

    it("treats a command without a request id as new each time", async () => {
      await app.execute("d1", cmd.create(1000));
      await app.execute("d1", cmd.increaseBudget(50));
      await app.execute("d1", cmd.increaseBudget(50));
      expect((await app.get("d1")).budgetMinor).toBe(1100);
    });

    it("records nothing for a rejected command, so a retry is decided afresh", async () => {
      const error = await rejection(app.execute("d1", cmd.start(), { requestId: "early" }));
      expect(error).toBeInstanceOf(DeliveryNotFound);
      expect(await logOf("d1")).toEqual([]);
      await app.execute("d1", cmd.create(10));
      const started = await app.execute("d1", cmd.start(), { requestId: "early" });
      expect(started.delivery.status).toBe("ACTIVE");
    });
  });

  describe("expected version", () => {
    it("rejects a command at a version other than the current one with VersionConflict, writing nothing", async () => {
      await app.execute("d1", cmd.create(1000));
      await app.execute("d1", cmd.start());
      for (const expectedVersion of [0, 1, 3]) {
        const error = await rejection(app.execute("d1", cmd.increaseBudget(5), { expectedVersion }));
        expect(error).toBeInstanceOf(VersionConflict);
        expect((error as VersionConflict).kind).toBe("VersionConflict");
      }
      expect(await logOf("d1")).toHaveLength(2);
    });

    it("applies a command at the current version", async () => {
      await app.execute("d1", cmd.create(1000));
      const record = await app.execute("d1", cmd.increaseBudget(5), { expectedVersion: 1 });
      expect(record.event.version).toBe(2);
      expect(record.delivery.budgetMinor).toBe(1005);
    });

    it("rejects a create expected at version 0 of an existing delivery with VersionConflict", async () => {
      await app.execute("d1", cmd.create(1000));
      expect(await rejection(app.execute("d1", cmd.create(1), { expectedVersion: 0 }))).toBeInstanceOf(VersionConflict);
    });
  });

  describe("concurrency", () => {
    it("applies 50 concurrent budget increases without an expected version, each once, versions 1..51 contiguous", async () => {
      // Plain clock: the retry deadline must pass in real time.
      const concurrentApp = createDeliveryApp({ store });
      await concurrentApp.execute("d1", cmd.create(1000));
      const amounts = Array.from({ length: 50 }, (_, i) => i + 1);

      const results = await Promise.allSettled(amounts.map((amount) => concurrentApp.execute("d1", cmd.increaseBudget(amount))));

      const failures = results.filter((r) => r.status === "rejected");
      expect(failures).toEqual([]);
      const records = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(records.map((r) => r.event.version).sort((a, b) => a - b)).toEqual(amounts.map((a) => a + 1));
      const log = await logOf("d1");
      expect(log.map((r) => r.event.version)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
      expect(log.slice(1).map((r) => (r.event.data.type === "budgetIncreased" ? r.event.data.amountMinor : -1)).sort((a, b) => a - b)).toEqual(amounts);
      const final = await concurrentApp.get("d1");
      expect(final.budgetMinor).toBe(1000 + (50 * 51) / 2);
      expect(final.version).toBe(51);
      // Each record's state is the one after its own event.
      let budget = 1000;
      for (const { event, delivery } of log.slice(1)) {
        budget += event.data.type === "budgetIncreased" ? event.data.amountMinor : Number.NaN;
        expect(delivery.budgetMinor).toBe(budget);
      }
    });

    it("lets exactly one of 20 concurrent starts succeed; the others see InvalidTransition", async () => {
      const concurrentApp = createDeliveryApp({ store });
      await concurrentApp.execute("d1", cmd.create(1000));

      const results = await Promise.allSettled(Array.from({ length: 20 }, () => concurrentApp.execute("d1", cmd.start())));

      const fulfilled = results.filter((r) => r.status === "fulfilled");
      const rejected = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
      expect(fulfilled).toHaveLength(1);
      expect(rejected).toHaveLength(19);
      for (const error of rejected) {
        expect(error).toBeInstanceOf(InvalidTransition);
        expect((error as DomainError).kind).toBe("InvalidTransition");
        expect((error as InvalidTransition).at.status).toBe("ACTIVE");
      }
      expect((await logOf("d1")).map((r) => r.event.data.type)).toEqual(["created", "started"]);
    });
  });
});
