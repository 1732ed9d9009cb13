import type { RecordedEvent } from "../domain/index.js";
import type { Logger } from "../logger.js";
import type { FeedChange } from "../store/eventStore.js";
import { decodePartitionMessage, decodeUpdate } from "../store/redis/codec.js";
import type { RedisKeys } from "../store/redis/keys.js";
import { callRedis } from "../store/redis/redisErrors.js";
import type { ShardedSubscriptions } from "../store/redis/shardedSubscriptions.js";
import type { UpdateSource } from "./updateSource.js";

export interface RedisUpdateSourceDeps {
  /** Sharded Pub/Sub with re-subscription and loss reporting (one subscriber per process, any Redis mode). */
  readonly subscriptions: ShardedSubscriptions;
  /** The store's keys, or how to get them once its layout is known (the partition count names the channels). */
  readonly keys: RedisKeys | (() => Promise<RedisKeys>);
  readonly logger: Logger;
}

/**
 * Sharded Redis Pub/Sub (the append script SPUBLISHes on the delivery's and
 * the partition's channel, in the keys' slot): updates of watched deliveries
 * and wake-ups of partition feeds. Whenever messages may have been lost — a
 * reconnect, a slot that moved, a promoted replica, a failed
 * re-subscription — the subscriptions report it once every channel is back,
 * and watchers catch up from the log.
 */
export function createRedisUpdateSource({ subscriptions, keys, logger }: RedisUpdateSourceDeps): UpdateSource {
  const wanted = new Set<string>();
  const wantedPartitions = new Set<number>();
  let known: RedisKeys | undefined = typeof keys === "function" ? undefined : keys;
  let onUpdate: (deliveryId: string, record: RecordedEvent) => void = () => {};
  let onPartition: (partition: number, change?: FeedChange) => void = () => {};
  // Several: the WatchDelivery hub and the WatchDeliveries hub both catch up.
  const resubscribed = new Set<() => void>();
  const keysNow = async () => {
    if (!known && typeof keys === "function") known = await keys();
    return known!;
  };

  subscriptions.onMessage((channel, message) => {
    const partition = known?.partitionFromChannel(channel);
    if (partition !== undefined) {
      if (!wantedPartitions.has(partition)) return;
      let change: FeedChange | undefined;
      try {
        change = decodePartitionMessage(partition, message);
      } catch (error) {
        // Still a wake-up: the tailer reads the feed.
        logger.error({ err: error, channel }, "undecodable feed message; the feed is read instead");
      }
      onPartition(partition, change);
      return;
    }
    const id = known?.idFromChannel(channel);
    if (id === undefined || !wanted.has(id)) return;
    let record: RecordedEvent;
    try {
      record = decodeUpdate(message);
    } catch (error) {
      logger.error({ err: error, channel }, "undecodable update; watchers will repair from the log");
      return;
    }
    onUpdate(id, record);
  });
  subscriptions.onSubscriptionsLost(({ reasons, channels }) => {
    logger.info({ reasons, channels }, "subscriptions restored; watchers catch up from the log");
    for (const listener of [...resubscribed]) listener();
  });

  return {
    async subscribe(deliveryId) {
      // Stays wanted when this fails: the caller unsubscribes when it gives up.
      wanted.add(deliveryId);
      const k = await keysNow();
      await callRedis(() => subscriptions.subscribe(k.channel(deliveryId)));
    },
    unsubscribe(deliveryId) {
      wanted.delete(deliveryId);
      if (known) subscriptions.unsubscribe(known.channel(deliveryId));
    },
    async subscribePartition(partition) {
      wantedPartitions.add(partition);
      const k = await keysNow();
      await callRedis(() => subscriptions.subscribe(k.partition(partition).channel));
    },
    onUpdate(listener) {
      onUpdate = listener;
    },
    onPartition(listener) {
      onPartition = listener;
    },
    onResubscribed(listener) {
      resubscribed.add(listener);
    },
    async close() {
      wanted.clear();
      wantedPartitions.clear();
    },
  };
}
