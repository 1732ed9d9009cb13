/**
 * The Redis update source against a stand-in subscriber connection whose
 * replies the test releases one by one: the orderings real Redis shows only
 * by chance.
 */
import { EventEmitter } from "node:events";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import type { Delivery, DeliveryEvent, RecordedEvent } from "../../src/domain/index.js";
import { silentLogger } from "../../src/logger.js";
import { encodeUpdate } from "../../src/store/redis/codec.js";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { createRedisUpdateSource } from "../../src/watch/redisUpdateSource.js";
import { waitUntil } from "../support/async.js";
import { type Deferred, deferred } from "./watchHubFakes.js";

class FakeSubscriber extends EventEmitter {
  status = "ready";
  readonly subscribeCalls: { channels: string[]; reply: Deferred<number> }[] = [];
  readonly unsubscribed: string[] = [];
  ssubscribe(...channels: string[]): Promise<number> {
    const reply = deferred<number>();
    this.subscribeCalls.push({ channels, reply });
    return reply.promise;
  }
  sunsubscribe(...channels: string[]): Promise<number> {
    this.unsubscribed.push(...channels);
    return Promise.resolve(0);
  }
}

const keys = createRedisKeys("t:fake:");

function update(deliveryId: string, version: number): Buffer {
  const event: DeliveryEvent = {
    deliveryId,
    version,
    occurredAtMs: 1_700_000_000_000,
    requestId: "",
    actor: "",
    data: { type: "budgetIncreased", amountMinor: 1 },
  };
  const delivery: Delivery = {
    id: deliveryId,
    status: "READY",
    budgetMinor: 100 + version,
    notes: "",
    purchasePriceMinor: 0,
    sellPriceMinor: 0,
    quantity: 0,
    deliveredQuantity: 0,
    version,
    createdAtMs: 1_700_000_000_000,
    updatedAtMs: 1_700_000_000_000,
  };
  return encodeUpdate({ event, delivery });
}

function setup() {
  const subscriber = new FakeSubscriber();
  const source = createRedisUpdateSource({
    subscriber: subscriber as unknown as Redis,
    keys,
    logger: silentLogger,
    resubscribeRetryMs: 10,
  });
  const received: RecordedEvent[] = [];
  source.onUpdate((_, record) => received.push(record));
  let resubscribed = 0;
  source.onResubscribed(() => resubscribed++);
  return { subscriber, source, received, resubscribed: () => resubscribed };
}

describe("Redis update source", () => {
  it("keeps a channel subscribed again while an earlier subscribe of it was still failing", async () => {
    const { subscriber, source, received } = setup();
    const first = source.subscribe("d1");
    source.unsubscribe("d1");
    const second = source.subscribe("d1");
    subscriber.subscribeCalls[1]!.reply.resolve(1);
    await second;
    subscriber.subscribeCalls[0]!.reply.reject(new Error("Connection is closed."));
    await expect(first).rejects.toThrow();

    subscriber.emit("smessageBuffer", Buffer.from(keys.channel("d1")), update("d1", 2));
    expect(received.map((r) => r.event.version)).toEqual([2]);
  });

  it("after a reconnect, re-subscribes every wanted channel and reports it only once Redis acknowledged", async () => {
    const { subscriber, source, resubscribed } = setup();
    for (const id of ["d1", "d2", "d3"]) {
      const subscribed = source.subscribe(id);
      subscriber.subscribeCalls.at(-1)!.reply.resolve(1);
      await subscribed;
    }
    source.unsubscribe("d2");

    subscriber.emit("ready");
    const again = subscriber.subscribeCalls.at(-1)!;
    expect(again.channels.sort()).toEqual([keys.channel("d1"), keys.channel("d3")].sort());
    await Promise.resolve();
    expect(resubscribed()).toBe(0);
    again.reply.resolve(2);
    await again.reply.promise;
    await new Promise((resolve) => setImmediate(resolve));
    expect(resubscribed()).toBe(1);
  });

  it("tries a failed re-subscription again while the connection stays up, and reports only the one that succeeds", async () => {
    const { subscriber, source, resubscribed } = setup();
    const subscribed = source.subscribe("d1");
    subscriber.subscribeCalls[0]!.reply.resolve(1);
    await subscribed;

    subscriber.emit("ready");
    subscriber.subscribeCalls[1]!.reply.reject(new Error("Command timed out"));
    await waitUntil(() => subscriber.subscribeCalls.length === 3, "a second re-subscription", 2_000);
    expect(resubscribed()).toBe(0);
    expect(subscriber.subscribeCalls[2]!.channels).toEqual([keys.channel("d1")]);
    subscriber.subscribeCalls[2]!.reply.resolve(1);
    await waitUntil(() => resubscribed() === 1, "the report", 2_000);
    await source.close();
  });

  it("ignores messages of channels nobody wants any more and undecodable ones", async () => {
    const { subscriber, source, received } = setup();
    const subscribed = source.subscribe("d1");
    subscriber.subscribeCalls[0]!.reply.resolve(1);
    await subscribed;
    source.unsubscribe("d1");
    subscriber.emit("smessageBuffer", Buffer.from(keys.channel("d1")), update("d1", 2));
    const again = source.subscribe("d2");
    subscriber.subscribeCalls[1]!.reply.resolve(1);
    await again;
    subscriber.emit("smessageBuffer", Buffer.from(keys.channel("d2")), Buffer.from([0x0a, 0x7f]));
    subscriber.emit("smessageBuffer", Buffer.from(keys.channel("d2")), update("d2", 5));
    expect(received.map((r) => [r.event.deliveryId, r.event.version])).toEqual([["d2", 5]]);
    expect(subscriber.unsubscribed).toEqual([keys.channel("d1")]);
  });
});
