import type { Redis } from "ioredis";
import type { RecordedEvent } from "../domain/index.js";
import type { Logger } from "../logger.js";
import { decodeUpdateJson } from "../mapping/protoMapping.js";
import type { RedisKeys } from "../store/redis/keys.js";
import { callRedis } from "../store/redis/redisErrors.js";
import type { UpdateSource } from "./updateSource.js";

export interface RedisUpdateSourceDeps {
  /** A connection for this source alone (it enters subscriber mode), created with autoResubscribe: false. */
  readonly subscriber: Redis;
  readonly keys: RedisKeys;
  readonly logger: Logger;
}

/**
 * Redis Pub/Sub with one subscriber connection per process. Channels are
 * re-subscribed here, not by ioredis: ioredis emits 'ready' before its own
 * re-subscription is acknowledged, and watchers must catch up only after it.
 */
export function createRedisUpdateSource({ subscriber, keys, logger }: RedisUpdateSourceDeps): UpdateSource {
  const wanted = new Set<string>();
  let onUpdate: (deliveryId: string, record: RecordedEvent) => void = () => {};
  let onResubscribed: () => void = () => {};
  let everReady = subscriber.status === "ready";

  subscriber.on("message", (channel: string, message: string) => {
    const id = keys.idFromChannel(channel);
    if (id === undefined || !wanted.has(id)) return;
    let record: RecordedEvent;
    try {
      record = decodeUpdateJson(message);
    } catch (error) {
      logger.error({ err: error, channel }, "undecodable update; watchers will repair from the log");
      return;
    }
    onUpdate(id, record);
  });

  subscriber.on("ready", () => {
    if (!everReady) {
      everReady = true;
      if (wanted.size === 0) return;
    }
    const channels = [...wanted].map(keys.channel);
    const resubscribe = channels.length > 0 ? subscriber.subscribe(...channels) : Promise.resolve();
    resubscribe.then(
      () => {
        logger.info({ channels: channels.length }, "subscriptions restored");
        onResubscribed();
      },
      (error: unknown) => logger.warn({ err: error }, "re-subscription failed; will retry on the next reconnect"),
    );
  });

  return {
    async subscribe(deliveryId) {
      // Stays wanted when this fails: the caller unsubscribes when it gives
      // up. Forgetting it here would also drop a later subscribe of the same
      // channel, made after an unsubscribe while this one was in flight.
      wanted.add(deliveryId);
      await callRedis(() => subscriber.subscribe(keys.channel(deliveryId)));
    },
    unsubscribe(deliveryId) {
      wanted.delete(deliveryId);
      subscriber.unsubscribe(keys.channel(deliveryId)).catch(() => {
        // A dropped connection forgets its subscriptions anyway.
      });
    },
    onUpdate(listener) {
      onUpdate = listener;
    },
    onResubscribed(listener) {
      onResubscribed = listener;
    },
    async close() {
      wanted.clear();
    },
  };
}
