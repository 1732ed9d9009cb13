import { status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Delivery, evolve, type RecordedEvent } from "../../src/domain/index.js";
import type { EventStore } from "../../src/store/eventStore.js";
import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery } from "../support/deliveries.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { expectEveryVersion } from "./watchSupport.js";

const EVENTS = 10_000;
const FAST_WATCHERS = 3;
/** Far below EVENTS: what the server may have handed to the transport for a client that reads nothing. */
const MAX_WRITTEN_TO_A_STALLED_CLIENT = 2_000;

/** Appends budget increases straight through the store, pipelined: the service only sees their publications. */
async function appendIncreases(store: EventStore, deliveryId: string, count: number): Promise<number> {
  const { state } = await store.load(deliveryId);
  if (state.status === "NONE") throw new Error(`delivery ${deliveryId} does not exist`);
  let delivery: Delivery = state;
  const batch = 500;
  for (let done = 0; done < count; done += batch) {
    const appends: Promise<unknown>[] = [];
    for (let i = done; i < Math.min(count, done + batch); i++) {
      const event = {
        deliveryId,
        version: delivery.version + 1,
        occurredAtMs: Date.now(),
        requestId: "",
        actor: "",
        data: { type: "budgetIncreased", amountMinor: 1 } as const,
      };
      const record: RecordedEvent = { event, delivery: evolve(delivery, event) };
      // One connection, in order: each append finds the version the previous one left.
      appends.push(
        store.append({ record, expectedVersion: delivery.version, previousStatus: delivery.status, fingerprint: "bulk" }).then((r) => {
          if (r.outcome !== "appended") throw new Error(`append of version ${event.version}: ${r.outcome}`);
        }),
      );
      delivery = record.delivery;
    }
    await Promise.all(appends);
  }
  return delivery.version;
}

describe("WatchDelivery with a slow client", () => {
  let service: TestService;
  let redis: Redis;
  let store: EventStore;

  beforeAll(async () => {
    service = await startTestService({ redisUrl: testRedisUrl() });
    redis = connectRedis(testRedisUrl());
    store = createRedisEventStore({ redis, keyPrefix: service.keyPrefix });
  });

  afterAll(async () => {
    await service?.stop();
    redis?.disconnect();
  });

  it("holds back only the slow client, stops writing to it, and gives it every version once it reads again", async () => {
    const commandClient = service.client();
    const fastClient = service.client();
    // Its own channel: a stalled HTTP/2 connection must not be shared with the others.
    const slowClient = service.client();
    const id = await createDelivery(commandClient);

    const slow = watch(slowClient, { deliveryId: id, afterVersion: 0 }, { paused: true });
    const fast: WatchRecorder[] = Array.from({ length: FAST_WATCHERS }, () => watch(fastClient, { deliveryId: id, afterVersion: 0 }));
    await waitUntil(() => fast.every((w) => w.lastVersion() === 1), "the fast watchers to start");
    await waitUntil(() => service.server.hub.watcherStates(id).length === FAST_WATCHERS + 1, "the slow watcher to register");

    const lastAppended = await within(appendIncreases(store, id, EVENTS), "the appends", 20_000);
    expect(lastAppended).toBe(EVENTS + 1);
    await waitUntil(() => fast.every((w) => w.lastVersion() === lastAppended), "the fast watchers to get every event", 25_000);

    // A cursor is the last version handed to the transport, and only grows:
    // nothing above it was ever written for the slow client while 10,000
    // events went to the others (heap deltas would be too noisy to say the
    // same). What the transport holds for it is bounded by HTTP/2 flow
    // control and grpc-js's 16-message buffer, what the hub holds by one
    // catch-up batch.
    const states = service.server.hub.watcherStates(id);
    expect(states.filter((s) => s.cursor === lastAppended)).toHaveLength(FAST_WATCHERS);
    const held = states.filter((s) => s.paused);
    expect(held).toHaveLength(1);
    expect(held[0]!.cursor).toBeLessThan(MAX_WRITTEN_TO_A_STALLED_CLIENT);
    expect(slow.messages).toHaveLength(0);

    slow.stream.resume();
    await waitUntil(() => slow.lastVersion() === lastAppended, "the slow watcher to catch up", 25_000);
    const last = await cancelDelivery(commandClient, id);
    for (const w of [slow, ...fast]) {
      expect((await within(w.ended, "the end")).code).toBe(status.OK);
      expectEveryVersion(w, 0, last);
    }
  }, 60_000);
});
