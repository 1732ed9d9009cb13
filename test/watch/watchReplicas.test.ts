import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery, increaseBudget } from "../support/deliveries.js";
import { testRedisUrl, uniquePrefix } from "../support/redis.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion, SAFETY_NET_OFF_MS } from "./watchSupport.js";

describe("WatchDelivery across replicas", () => {
  let a: TestService;
  let b: TestService;

  beforeAll(async () => {
    const keyPrefix = uniquePrefix();
    // Two replicas of the service: same Redis, same keys, separate hubs and
    // subscribers. The safety net is out of reach, so only Pub/Sub can pass this.
    const options = { redisUrl: testRedisUrl(), keyPrefix, safetyNetIntervalMs: SAFETY_NET_OFF_MS };
    [a, b] = await Promise.all([startTestService(options), startTestService(options)]);
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("shows a watcher on one replica every change made through the other", async () => {
    const onA = a.client();
    const onB = b.client();
    const id = await createDelivery(onB);
    const watchers = [watch(onA, { deliveryId: id }), watch(onA, { deliveryId: id, afterVersion: 0 })];
    await waitUntil(() => watchers.every((w) => w.messages.length >= 1), "both watches to start");
    expect(a.server.hub.watchedDeliveries).toBe(1);
    expect(b.server.hub.watchedDeliveries).toBe(0);

    for (let i = 0; i < 20; i++) await increaseBudget(onB, id, BigInt(i + 1));
    const last = await cancelDelivery(onB, id);
    for (const w of watchers) expect((await within(w.ended, "the end")).code).toBe(status.OK);
    expectSnapshotThenEveryVersion(watchers[0]!, last);
    expectEveryVersion(watchers[1]!, 0, last);
    expect(watchers[1]!.messages.at(-1)?.delivery?.budget).toBe(1_000n + 210n);
  });

  it("merges commands through both replicas into one ordered stream on each", async () => {
    const onA = a.client();
    const onB = b.client();
    const id = await createDelivery(onA);
    const watchers = [watch(onA, { deliveryId: id, afterVersion: 0 }), watch(onB, { deliveryId: id, afterVersion: 0 })];
    await Promise.all(
      [onA, onB].map(async (client) => {
        for (let i = 0; i < 15; i++) await increaseBudget(client, id);
      }),
    );
    const last = await cancelDelivery(onA, id);
    expect(last).toBe(32);
    for (const w of watchers) {
      expect((await within(w.ended, "the end")).code).toBe(status.OK);
      expectEveryVersion(w, 0, last);
    }
  });
});
