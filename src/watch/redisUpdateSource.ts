import type { Redis } from "ioredis";
import type { RecordedEvent } from "../domain/index.js";
import type { Logger } from "../logger.js";
import { decodeUpdate } from "../store/redis/codec.js";
import type { RedisKeys } from "../store/redis/keys.js";
import { callRedis } from "../store/redis/redisErrors.js";
import type { UpdateSource } from "./updateSource.js";

export interface RedisUpdateSourceDeps {
  /** A connection for this source alone (it enters subscriber mode), created with autoResubscribe: false. */
  readonly subscriber: Redis;
  /** The store's keys, or how to get them once its layout is known (the partition count names the channels). */
  readonly keys: RedisKeys | (() => Promise<RedisKeys>);
  readonly logger: Logger;
  /** How soon a failed re-subscription on a live connection is tried again. */
  readonly resubscribeRetryMs?: number;
}

/**
 * Sharded Redis Pub/Sub (SSUBSCRIBE; the append script SPUBLISHes on the
 * delivery's slot) with one subscriber connection per process. Channels are
 * re-subscribed here, not by ioredis: ioredis emits 'ready' before its own
 * re-subscription is acknowledged, and watchers must catch up only after it.
 */
export function createRedisUpdateSource({ subscriber, keys, logger, resubscribeRetryMs = 1_000 }: RedisUpdateSourceDeps): UpdateSource {
  const wanted = new Set<string>();
  const wantedPartitions = new Set<number>();
  let onPartition: (partition: number) => void = () => {};
  let onUpdate: (deliveryId: string, record: RecordedEvent) => void = () => {};
  let onResubscribed: () => void = () => {};
  let everReady = subscriber.status === "ready";
  let known: RedisKeys | undefined = typeof keys === "function" ? undefined : keys;

  subscriber.on("smessageBuffer", (channelBytes: Buffer, message: Buffer) => {
    const channel = channelBytes.toString();
    const partition = known?.partitionFromChannel(channel);
    if (partition !== undefined) {
      if (wantedPartitions.has(partition)) onPartition(partition);
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

  // Re-subscribes every wanted channel; if that fails while the connection
  // stays up (a timeout, a transient error reply), tries again rather than
  // waiting for a reconnect that may never come.
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;
  const restore = () => {
    clearTimeout(retryTimer);
    retryTimer = undefined;
    const channels = known
      ? [...[...wanted].map((id) => known!.channel(id)), ...[...wantedPartitions].map((p) => known!.partition(p).channel)]
      : [];
    const resubscribe = channels.length > 0 ? subscriber.ssubscribe(...channels) : Promise.resolve();
    resubscribe.then(
      () => {
        logger.info({ channels: channels.length }, "subscriptions restored");
        onResubscribed();
      },
      (error: unknown) => {
        const connected = subscriber.status === "ready";
        logger.warn({ err: error, retryMs: connected ? resubscribeRetryMs : undefined }, "re-subscription failed");
        if (connected && !closed) {
          retryTimer = setTimeout(restore, resubscribeRetryMs);
          retryTimer.unref();
        }
      },
    );
  };

  subscriber.on("ready", () => {
    if (!everReady) {
      everReady = true;
      if (wanted.size === 0 && wantedPartitions.size === 0) return;
    }
    restore();
  });

  return {
    async subscribe(deliveryId) {
      // Stays wanted when this fails: the caller unsubscribes when it gives
      // up. Forgetting it here would also drop a later subscribe of the same
      // channel, made after an unsubscribe while this one was in flight.
      wanted.add(deliveryId);
      if (!known && typeof keys === "function") known = await keys();
      await callRedis(() => subscriber.ssubscribe(known!.channel(deliveryId)));
    },
    unsubscribe(deliveryId) {
      wanted.delete(deliveryId);
      if (!known) return;
      subscriber.sunsubscribe(known.channel(deliveryId)).catch(() => {
        // A dropped connection forgets its subscriptions anyway.
      });
    },
    onUpdate(listener) {
      onUpdate = listener;
    },
    async subscribePartition(partition) {
      wantedPartitions.add(partition);
      if (!known && typeof keys === "function") known = await keys();
      await callRedis(() => subscriber.ssubscribe(known!.partition(partition).channel));
    },
    onPartition(listener) {
      onPartition = listener;
    },
    onResubscribed(listener) {
      onResubscribed = listener;
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      wanted.clear();
    },
  };
}
