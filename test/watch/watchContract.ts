/**
 * The WatchDelivery contract, run against every backend (Redis Pub/Sub and
 * the in-process bus): the same watch semantics whatever carries the updates.
 */
import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DeliveryServiceClient, DeliveryStatus } from "../../src/gen/delivery/v1/delivery.js";
import { waitUntil, within } from "../support/async.js";
import { cancelDelivery, createDelivery, increaseBudget } from "../support/deliveries.js";
import { call, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { expectEveryVersion } from "./watchSupport.js";

export function describeWatchContract(backend: string, start: () => Promise<TestService>): void {
  describe(`WatchDelivery contract (${backend})`, () => {
    let service: TestService;
    let client: DeliveryServiceClient;

    beforeAll(async () => {
      service = await start();
      client = service.client();
    });

    afterAll(async () => {
      await service?.stop();
    });

    it("sends the current state first, then each later event with the state after it", async () => {
      const id = await createDelivery(client);
      await increaseBudget(client, id, 5n);
      const w = watch(client, { deliveryId: id });
      await waitUntil(() => w.messages.length === 1, "the snapshot");
      expect(w.messages[0]?.event).toBeUndefined();
      expect(w.messages[0]?.delivery?.version).toBe(2n);
      expect(w.messages[0]?.delivery?.budget).toBe(1_005n);

      await increaseBudget(client, id, 7n);
      await waitUntil(() => w.lastVersion() === 3, "version 3");
      const live = w.messages[1];
      expect(live?.event?.kind?.$case).toBe("budgetIncreased");
      expect(live?.delivery?.budget).toBe(1_012n);
      expect(live?.delivery?.version).toBe(3n);

      await increaseBudget(client, id, 1n);
      await cancelDelivery(client, id);
      expect(await within(w.ended, "the end of the watch")).toMatchObject({ code: status.OK });
      expect(w.versions()).toEqual([2, 3, 4, 5]);
      expect(w.messages.at(-1)?.delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_CANCELLED);
    });

    it("with after_version replays exactly the versions after it, then goes live", async () => {
      const id = await createDelivery(client);
      for (let i = 0; i < 4; i++) await increaseBudget(client, id);
      const fromTwo = watch(client, { deliveryId: id, afterVersion: 2 });
      const fromZero = watch(client, { deliveryId: id, afterVersion: 0 });
      const fromCurrent = watch(client, { deliveryId: id, afterVersion: 5 });
      await waitUntil(() => fromTwo.lastVersion() === 5 && fromZero.lastVersion() === 5, "the replay");
      expect(fromCurrent.messages).toHaveLength(0);

      await increaseBudget(client, id);
      await cancelDelivery(client, id);
      for (const w of [fromTwo, fromZero, fromCurrent]) expect((await within(w.ended, "the end")).code).toBe(status.OK);
      expectEveryVersion(fromTwo, 2, 7);
      expectEveryVersion(fromZero, 0, 7);
      expectEveryVersion(fromCurrent, 5, 7);
      expect(fromZero.messages[0]?.event?.kind?.$case).toBe("created");
    });

    it("ends with OK after the event that completes the delivery", async () => {
      const id = await createDelivery(client, { budget: 100n });
      const w = watch(client, { deliveryId: id });
      await waitUntil(() => w.messages.length === 1, "the snapshot");
      await call(client, "startDelivery", { deliveryId: id, requestId: randomUUID() });
      await call(client, "pickupProducts", { deliveryId: id, purchasePrice: 10n, quantity: 2n, requestId: randomUUID() });
      await call(client, "deliverProducts", { deliveryId: id, sellPrice: 15n, quantity: 1n, requestId: randomUUID() });
      await call(client, "deliverProducts", { deliveryId: id, sellPrice: 15n, quantity: 1n, requestId: randomUUID() });
      expect((await within(w.ended, "the end")).code).toBe(status.OK);
      expect(w.versions()).toEqual([1, 2, 3, 4, 5]);
      expect(w.messages.at(-1)?.delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_COMPLETED);
      expect(w.messages.at(-1)?.event?.kind?.$case).toBe("productsDelivered");
    });

    it("on an already cancelled delivery sends the snapshot and ends with OK", async () => {
      const id = await createDelivery(client);
      await cancelDelivery(client, id);
      const snapshot = watch(client, { deliveryId: id });
      const replay = watch(client, { deliveryId: id, afterVersion: 0 });
      const atEnd = watch(client, { deliveryId: id, afterVersion: 2 });
      for (const w of [snapshot, replay, atEnd]) expect((await within(w.ended, "the end")).code).toBe(status.OK);
      expect(snapshot.messages).toHaveLength(1);
      expect(snapshot.messages[0]?.event).toBeUndefined();
      expect(snapshot.messages[0]?.delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_CANCELLED);
      expectEveryVersion(replay, 0, 2);
      expect(atEnd.messages).toHaveLength(0);
      await waitUntil(() => service.server.hub.watcherCount === 0, "no watcher left registered");
    });

    it("answers NOT_FOUND for an unknown delivery", async () => {
      const w = watch(client, { deliveryId: `missing-${randomUUID()}` });
      const end = await within(w.ended, "the end");
      expect(end.code).toBe(status.NOT_FOUND);
      expect(w.messages).toHaveLength(0);
    });

    it("answers INVALID_ARGUMENT for an invalid id", async () => {
      for (const deliveryId of ["", "has space", "x".repeat(65), "semi;colon"]) {
        const w = watch(client, { deliveryId });
        expect((await within(w.ended, `the end of the watch on "${deliveryId}"`)).code).toBe(status.INVALID_ARGUMENT);
        expect(w.messages).toHaveLength(0);
      }
    });

    it("answers INVALID_ARGUMENT for an after_version beyond the current version or 2^53", async () => {
      const id = await createDelivery(client);
      for (const afterVersion of [2n, 2n ** 53n, 2n ** 64n - 1n]) {
        const w = watch(client, { deliveryId: id, afterVersion });
        expect((await within(w.ended, `the end of the watch after ${afterVersion}`)).code).toBe(status.INVALID_ARGUMENT);
        expect(w.messages).toHaveLength(0);
      }
      await cancelDelivery(client, id);
    });

    it("unregisters a watcher as soon as its client cancels", async () => {
      const id = await createDelivery(client);
      const before = service.server.hub.watcherCount;
      const w = watch(client, { deliveryId: id });
      await waitUntil(() => w.messages.length === 1, "the snapshot");
      expect(service.server.hub.watcherCount).toBe(before + 1);
      w.cancel();
      expect((await within(w.ended, "the end")).code).toBe(status.CANCELLED);
      await waitUntil(() => service.server.hub.watcherCount === before, "the watcher to be unregistered");
      await cancelDelivery(client, id);
    });
  });
}
