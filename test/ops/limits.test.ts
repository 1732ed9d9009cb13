/**
 * Per-process limits: MAX_WATCHERS (RESOURCE_EXHAUSTED past it, slots come
 * back when watches end however they end) and MAX_MESSAGE_BYTES (grpc-js
 * refuses a larger request with RESOURCE_EXHAUSTED before any handler runs).
 */
import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CancelDeliveryRequest, CreateDeliveryRequest, type DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { testRedisUrl } from "../support/redis.js";
import { rejectionOf, waitUntil } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { codeName } from "./opsSupport.js";

const newId = (label: string) => `${label}-${randomBytes(4).toString("hex")}`;

describe("MAX_WATCHERS 2", () => {
  let service: TestService;
  let client: DeliveryServiceClient;
  let deliveryId: string;
  const open: WatchRecorder[] = [];

  beforeAll(async () => {
    service = await startTestService({ redisUrl: testRedisUrl(), config: { maxWatchers: 2 } });
    client = service.client();
    deliveryId = newId("watched");
    await createDelivery(client, { deliveryId, budget: 100n });
  });

  afterAll(async () => {
    for (const w of open) w.cancel();
    await service?.stop();
  });

  function openWatch(id = deliveryId): WatchRecorder {
    const w = watch(client, { deliveryId: id });
    open.push(w);
    return w;
  }

  /** Opens watches until one gets its first message, while the others end RESOURCE_EXHAUSTED (slots free up asynchronously). */
  async function watchWhenASlotIsFree(): Promise<WatchRecorder> {
    return waitUntil(
      async () => {
        const w = openWatch();
        const accepted = await Promise.race([w.first.then(() => true), w.ended.then(() => false)]);
        if (accepted) return w;
        const end = await w.ended;
        if (end.code !== status.RESOURCE_EXHAUSTED) throw new Error(`watch ended ${status[end.code]}: ${end.details}`);
        return undefined;
      },
      "a watch to be accepted",
      5_000,
    );
  }

  // In order: fill, overflow, free one, refill.

  it("accepts two watches and refuses the third with RESOURCE_EXHAUSTED", async () => {
    const [a, b] = [openWatch(), openWatch()];
    await Promise.all([a.first, b.first]);
    const third = openWatch();
    const end = await third.ended;
    expect(status[end.code]).toBe("RESOURCE_EXHAUSTED");
    expect(third.messages).toEqual([]);
    expect(end.details).toMatch(/\S/);
    expect(service.server.hub.watcherCount).toBe(2);
  });

  it("accepts a new watch once one of the two is cancelled", async () => {
    open[0]!.cancel();
    const w = await watchWhenASlotIsFree();
    expect(w.messages[0]?.delivery?.id).toBe(deliveryId);
  });

  it("gives slots back when watches end with OK (terminal delivery) or an error", async () => {
    for (const w of open) w.cancel();
    await waitUntil(() => service.server.hub.watcherCount === 0, "every watch to be released", 5_000);
    // Each of these ends at once, and more of them than the limit.
    const cancelled = newId("cancelled");
    await createDelivery(client, { deliveryId: cancelled, budget: 100n });
    await new Promise((resolve, reject) =>
      client.cancelDelivery(CancelDeliveryRequest.fromPartial({ deliveryId: cancelled }), (error, response) => (error ? reject(error) : resolve(response))),
    );
    const ends = [];
    for (let i = 0; i < 3; i++) ends.push(status[(await openWatch(cancelled).ended).code]);
    for (let i = 0; i < 3; i++) ends.push(status[(await openWatch(newId("unknown")).ended).code]);
    for (let i = 0; i < 3; i++) ends.push(status[(await openWatch("not a valid id").ended).code]);
    expect(ends).toEqual([...Array(3).fill("OK"), ...Array(3).fill("NOT_FOUND"), ...Array(3).fill("INVALID_ARGUMENT")]);
    // Two live watches fit again.
    const [a, b] = [openWatch(), openWatch()];
    await Promise.all([a.first, b.first]);
  });
});

describe("MAX_MESSAGE_BYTES 1024", () => {
  let service: TestService;
  let client: DeliveryServiceClient;

  beforeAll(async () => {
    service = await startTestService({ redisUrl: testRedisUrl(), config: { maxMessageBytes: 1024 } });
    client = service.client();
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("refuses a CreateDelivery above it with RESOURCE_EXHAUSTED and records nothing", async () => {
    const deliveryId = newId("big");
    // 1000 characters (within the notes limit) of 3 bytes each: about 3 kB on the wire.
    const request = { deliveryId, budget: 100n, notes: "€".repeat(1000) };
    expect(CreateDeliveryRequest.encode(CreateDeliveryRequest.fromPartial(request)).finish().length).toBeGreaterThan(1024);
    const error = await rejectionOf(createDelivery(client, request));
    expect(codeName(error)).toBe("RESOURCE_EXHAUSTED");
    expect(codeName(await rejectionOf(getDelivery(client, deliveryId)))).toBe("NOT_FOUND");
  });

  it("accepts a CreateDelivery below it", async () => {
    const deliveryId = newId("small");
    await createDelivery(client, { deliveryId, budget: 100n, notes: "small" });
    expect((await getDelivery(client, deliveryId)).delivery?.id).toBe(deliveryId);
  });

  // A request well under the limit whose response (the notes twice: in the
  // delivery and in the created event) is over it: the event is recorded, yet
  // the caller is told RESOURCE_EXHAUSTED; its retry gets the same answer.
  it("does not record a command whose caller is told it failed", async () => {
    const deliveryId = newId("echo");
    const request = { deliveryId, budget: 100n, notes: "n".repeat(600), requestId: newId("req") };
    expect(CreateDeliveryRequest.encode(CreateDeliveryRequest.fromPartial(request)).finish().length).toBeLessThan(1024);
    const outcome = await createDelivery(client, request).then(
      () => "OK",
      (error: { code?: number }) => codeName(error),
    );
    const recorded = await getDelivery(client, deliveryId).then(
      () => "recorded",
      (error: { code?: number }) => codeName(error),
    );
    expect({ outcome, recorded }).not.toEqual({ outcome: "RESOURCE_EXHAUSTED", recorded: "recorded" });
  });
});
