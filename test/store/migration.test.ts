/**
 * Stored data is a promise: a Redis filled by the previous release (built
 * from git and run as it shipped), migrated to layout 2, serves every
 * delivery, event, version, request-id replay and listing as before.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Delivery, DeliveryStatus, type DeliveryEvent, type DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { StoreLayoutError } from "../../src/store/redis/redisEventStore.js";
import { migrateToLayout2 } from "../../src/store/redis/migrate.js";
import { createRedisKeys, INDEXED_STATUSES } from "../../src/store/redis/keys.js";
import { connectRedis } from "../support/redis.js";
import {
  buildPreviousRelease,
  type JsonObject,
  type ManifestDelivery,
  type PreviousReleaseManifest,
  fillWithPreviousRelease,
  startPreviousRelease,
} from "../support/previousRelease.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";

/** A Delivery in one comparable shape, from the old service's JSON or the new generated client. */
interface Plain {
  id: string;
  status: string;
  budget: string;
  notes: string;
  purchasePrice: string;
  sellPrice: string;
  quantity: string;
  deliveredQuantity: string;
  version: string;
  createdAtMs: number;
  updatedAtMs: number;
}

const msOf = (t: unknown): number => {
  if (t instanceof Date) return t.getTime();
  const { seconds, nanos } = t as { seconds: string; nanos: number };
  return Number(seconds) * 1000 + Math.floor(nanos / 1e6);
};

function plainOld(d: JsonObject): Plain {
  return {
    id: String(d.id),
    status: String(d.status),
    budget: String(d.budget),
    notes: String(d.notes),
    purchasePrice: String(d.purchasePrice),
    sellPrice: String(d.sellPrice),
    quantity: String(d.quantity),
    deliveredQuantity: String(d.deliveredQuantity),
    version: String(d.version),
    createdAtMs: msOf(d.createdAt),
    updatedAtMs: msOf(d.updatedAt),
  };
}

function plainNew(d: Delivery | undefined): Plain {
  if (!d) throw new Error("no delivery");
  return {
    id: d.id,
    status: DeliveryStatus[d.status],
    budget: String(d.budget),
    notes: d.notes,
    purchasePrice: String(d.purchasePrice),
    sellPrice: String(d.sellPrice),
    quantity: String(d.quantity),
    deliveredQuantity: String(d.deliveredQuantity),
    version: String(d.version),
    createdAtMs: msOf(d.createdAt),
    updatedAtMs: msOf(d.updatedAt),
  };
}

/** An event's version, type, request id and time, old or new. */
function eventOld(e: JsonObject) {
  return { version: String(e.version), type: String(e.kind), requestId: String(e.requestId), occurredAtMs: msOf(e.occurredAt) };
}

function eventNew(e: DeliveryEvent | undefined) {
  if (!e) throw new Error("no event");
  return { version: String(e.version), type: String(e.kind?.$case), requestId: e.requestId, occurredAtMs: msOf(e.occurredAt) };
}

/** The old request, in the new generated client's shape (numbers as bigint; quantities are int64 now). */
function newRequest(request: JsonObject): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(request)) {
    out[key] = ["budget", "amount", "purchasePrice", "sellPrice", "quantity", "expectedVersion"].includes(key) ? BigInt(String(value)) : value;
  }
  return out;
}

describe("migration from storage layout 1 (release 0.1), on its real output", () => {
  let redisServer: RedisServerHandle;
  let redis: Redis;
  let manifest: PreviousReleaseManifest;
  let service: TestService | undefined;
  let client: DeliveryServiceClient;

  beforeAll(async () => {
    await buildPreviousRelease();
    redisServer = await startRedisServer();
    redis = connectRedis(redisServer.url);
    const old = await startPreviousRelease({ redisUrl: redisServer.url });
    try {
      manifest = await fillWithPreviousRelease(old.client);
    } finally {
      await old.stop();
    }
  }, 120_000);

  afterAll(async () => {
    await service?.stop();
    redis?.disconnect();
    await redisServer?.kill();
  });

  it("refuses to start on the unmigrated store, naming the command", async () => {
    const error = await startTestService({ redisUrl: redisServer.url, keyPrefix: "" }).then(
      async (s) => {
        await s.stop();
        return undefined;
      },
      (e: unknown) => e,
    );

    expect(error).toBeInstanceOf(StoreLayoutError);
    expect((error as Error).message).toContain("npm run migrate");
  });

  it("can be interrupted and resumed, and refuses a start while half done", async () => {
    const first = await migrateToLayout2(redis, { stopAfter: 5, batch: 3 });
    expect(first).toMatchObject({ complete: false, deliveries: 5 });

    const error = await startTestService({ redisUrl: redisServer.url, keyPrefix: "" }).then(
      async (s) => {
        await s.stop();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreLayoutError);
    expect((error as Error).message).toContain("in progress");

    const rest = await migrateToLayout2(redis, { batch: 3 });
    expect(rest).toMatchObject({ complete: true, deliveries: manifest.deliveries.length - 5, reimported: [] });
    // Once done, running it again changes nothing.
    expect(await migrateToLayout2(redis)).toMatchObject({ alreadyMigrated: true, deliveries: 0 });
  });

  describe("after the migration, through the new service", () => {
    beforeAll(async () => {
      service = await startTestService({ redisUrl: redisServer.url, keyPrefix: "" });
      client = service.client();
    });

    it("serves every delivery's current state as the old release answered it", async () => {
      for (const d of manifest.deliveries) {
        const { delivery } = await call(client, "getDelivery", { deliveryId: d.id });
        expect(plainNew(delivery), d.scenario).toEqual(plainOld(d.final));
      }
    });

    it("serves every event and the state at every version", async () => {
      for (const d of manifest.deliveries) {
        const { events } = await call(client, "listDeliveryEvents", { deliveryId: d.id });
        expect(events.map(eventNew), d.scenario).toEqual(d.steps.map((s) => eventOld(s.event)));
        for (const step of d.steps) {
          const { delivery } = await call(client, "getDelivery", { deliveryId: d.id, atVersion: BigInt(step.version) });
          expect(plainNew(delivery), `${d.scenario} v${step.version}`).toEqual(plainOld(step.delivery));
        }
      }
    });

    it("answers a retry of any recorded command with its original event, writing nothing", async () => {
      const withRequests = manifest.deliveries.filter((d: ManifestDelivery) => d.steps.some((s) => s.requestId !== ""));
      expect(withRequests.length).toBeGreaterThan(5);
      for (const d of withRequests) {
        for (const step of d.steps.filter((s) => s.requestId !== "")) {
          const response = (await call(client, step.method, newRequest(step.request) as never)) as { event?: DeliveryEvent };
          expect(eventNew(response.event), `${d.scenario} ${step.method} v${step.version}`).toEqual(eventOld(step.event));
        }
        const { events } = await call(client, "listDeliveryEvents", { deliveryId: d.id });
        expect(events).toHaveLength(d.steps.length);
      }
    });

    it("lists every delivery once, in the old creation order, and by status", async () => {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await call(client, "listDeliveries", { pageSize: 7, pageToken });
        ids.push(...page.deliveries.map((x) => x.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      expect(ids).toEqual(manifest.listOrder);

      for (const status of [1, 2, 3, 4, 5]) {
        const { deliveries } = await call(client, "listDeliveries", { pageSize: 500, statuses: [status] });
        const expected = manifest.deliveries.filter((d) => d.status === DeliveryStatus[status]).map((d) => d.id);
        expect(deliveries.map((x) => x.id), DeliveryStatus[status]).toEqual(manifest.listOrder.filter((id) => expected.includes(id)));
      }
    });

    it("takes new commands on a migrated delivery, at the next version", async () => {
      const open = manifest.deliveries.find((d) => d.status === "DELIVERY_STATUS_READY")!;
      const { event } = await call(client, "increaseBudget", { deliveryId: open.id, amount: 1n, requestId: `after-migration-${open.id}` });
      expect(event?.version).toBe(BigInt(open.version + 1));
    });

    it("drops layout 1's keys on request, and keeps serving", async () => {
      const report = await migrateToLayout2(redis, { dropV1: true });
      expect(report.droppedV1Keys).toBeGreaterThanOrEqual(manifest.deliveries.length * 3);

      const keys = createRedisKeys("", Number(await redis.hget("meta", "partitions")));
      expect(await redis.exists(keys.legacyIndex)).toBe(0);
      expect(await redis.keys("delivery:{*")).toEqual([]);
      let indexed = 0;
      for (let p = 0; p < keys.partitions; p++) for (const s of INDEXED_STATUSES) indexed += await redis.zcard(keys.partition(p).index(s));
      expect(indexed).toBe(manifest.deliveries.length);
      const d = manifest.deliveries.at(-1)!;
      expect(plainNew((await call(client, "getDelivery", { deliveryId: d.id })).delivery).id).toBe(d.id);
    });
  });
});
