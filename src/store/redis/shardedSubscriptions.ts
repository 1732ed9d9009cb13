/**
 * Sharded Pub/Sub (SSUBSCRIBE) over one subscriber client, in every mode: a
 * Redis (single URL, Sentinel) or a Cluster created with
 * `shardedSubscribers: true` (one subscriber connection per primary, each
 * channel on the primary that owns its slot).
 *
 * This module owns re-subscription. Whenever messages may have been lost (the
 * subscriber's connection closed, the server unsubscribed us because a slot
 * moved, a node was added or removed, a subscription failed), it subscribes
 * every wanted channel again, waits for every acknowledgement, and only then
 * calls the `onSubscriptionsLost` listeners: from that moment on every
 * message is delivered, so a catch-up read from the log made then misses
 * nothing. If re-subscribing fails, it retries (backoff up to 2 s, and at once
 * when the client reconnects) until it succeeds or the module is closed.
 *
 * ioredis behaviours this relies on (ioredis 6.0.0, node_modules/ioredis6/built;
 * the subscriber is created from that release, see redisClients.ts):
 *  - A SUNSUBSCRIBE pushed by the server (the slot was migrated away) answers
 *    no command; DataHandler emits "moved" on that connection for it
 *    (DataHandler.js:167-180), as it does for a MOVED reply to SSUBSCRIBE
 *    (DataHandler.js:69-72). A Redis subscriber (single, sentinel) emits it
 *    to us directly. In a Cluster, ShardedSubscriber forwards it to the
 *    Cluster's private `subscriberGroupEmitter` (cluster/ShardedSubscriber.js:47-49,
 *    :66), which only refreshes the slot map (cluster/index.js:1025-1027): the
 *    Cluster emits nothing public. We listen on that emitter.
 *  - A sharded subscriber connection never reconnects (retryStrategy null,
 *    cluster/ShardedSubscriber.js:58); when it ends the Cluster emits "-node"
 *    (ShardedSubscriber.js:40-43, cluster/index.js:1015-1018) and refreshes
 *    the slot map; ClusterSubscriberGroup.reset() then replaces unhealthy or
 *    moved subscribers ("-subscriber" / "+subscriber"), re-subscribes its
 *    channels and emits "subscribersReady" (cluster/ClusterSubscriberGroup.js:162-256).
 *    "subscribersReady" is emitted when the re-SSUBSCRIBEs are *sent*, not
 *    acknowledged, and a failed re-SSUBSCRIBE is only debug-logged
 *    (ClusterSubscriberGroup.js:290-323, :246): so we re-subscribe ourselves
 *    and wait for the replies.
 *  - reset() does nothing when the slot map it is given equals the last one
 *    and every subscriber is healthy (ClusterSubscriberGroup.js:169-174, :267):
 *    a refresh that still sees the old owner of a migrated slot changes
 *    nothing, so our re-SSUBSCRIBE gets MOVED, which refreshes again; and the
 *    Cluster's slotsRefreshInterval catches it in any case.
 *  - Cluster#ssubscribe records the channel in the group's per-slot list
 *    *before* sending, without de-duplicating (ClusterSubscriberGroup.js:90-106,
 *    cluster/index.js:503-523): re-subscribing through it would grow that
 *    list by every channel on every loss. So a channel goes through
 *    Cluster#ssubscribe once, when it becomes wanted, and re-subscriptions go
 *    straight to the responsible subscriber's connection
 *    (ClusterSubscriberGroup#getResponsibleSubscriber, :70-84, which also
 *    starts a lazy subscriber).
 *  - A subscriber Cluster emits "error" when a sharded subscriber cannot
 *    connect (cluster/index.js:1019-1024): with no "error" listener that
 *    would throw. createRedisClients() always listens.
 */
import { EventEmitter } from "node:events";
import type { Cluster, Redis } from "ioredis6";
import type { Logger } from "../../logger.js";
import { callWithin } from "./deadline.js";
import { hashSlot } from "./slots.js";

/** Why the listeners are called: every reason seen since the last call. */
export interface SubscriptionsLost {
  readonly reasons: readonly string[];
  /** Wanted channels when the re-subscription was confirmed. */
  readonly channels: number;
}

export interface ShardedSubscriptions {
  /**
   * SSUBSCRIBE; resolves once the owning node acknowledged it. The channel
   * stays wanted if this fails (and is re-subscribed by the recovery loop,
   * which then calls the lost listeners): call unsubscribe() to give up on it.
   */
  subscribe(channel: string): Promise<void>;
  /** No longer wanted; SUNSUBSCRIBE in the background. */
  unsubscribe(channel: string): void;
  /** Every shard message the subscriber receives (wanted or not). */
  onMessage(listener: (channel: string, message: Buffer) => void): () => void;
  /**
   * Messages may have been lost since the last call (or since subscribing);
   * called once every wanted channel is subscribed again. Catch up from the log here.
   */
  onSubscriptionsLost(listener: (lost: SubscriptionsLost) => void): () => void;
  readonly channels: ReadonlySet<string>;
  /** True while a loss is being repaired (no listener call yet). */
  readonly recovering: boolean;
  close(): void;
}

export interface ShardedSubscriptionsOptions {
  /** Per SSUBSCRIBE command, counted from the call. */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger | undefined;
  /** Backoff between failed re-subscriptions: min(base * 2^n, max). Defaults 100 / 2000 ms. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
}

/** At most this many channels per SSUBSCRIBE. */
const CHUNK = 500;

interface Driver {
  /** First subscription of a newly wanted channel. */
  subscribeNew(channel: string): Promise<unknown>;
  /** Subscribe all of `channels` again; resolves once every one is acknowledged. */
  resubscribe(channels: readonly string[], within: <T>(op: () => Promise<T>) => Promise<T>): Promise<void>;
  unsubscribe(channel: string): Promise<unknown>;
  ready(): boolean;
  /** After a failed re-subscription (e.g. refresh the slot map). */
  afterFailure(): void;
  /** Registers the loss / wake-up sources; returns their removal. */
  watch(lose: (reason: string) => void, wake: () => void): () => void;
  onMessage(listener: (channel: Buffer, message: Buffer) => void): () => void;
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function listen<A extends unknown[]>(emitter: EventEmitter, event: string, listener: (...args: A) => void): () => void {
  const untyped = listener as (...args: unknown[]) => void;
  emitter.on(event, untyped);
  return () => emitter.off(event, untyped);
}

function redisDriver(redis: Redis): Driver {
  return {
    subscribeNew: (channel) => redis.ssubscribe(channel),
    async resubscribe(channels, within) {
      // Standalone Redis takes channels of any slots in one SSUBSCRIBE.
      await Promise.all(chunks(channels, CHUNK).map((chunk) => within(() => redis.ssubscribe(...chunk))));
    },
    unsubscribe: (channel) => redis.sunsubscribe(channel),
    ready: () => redis.status === "ready",
    afterFailure() {},
    watch(lose, wake) {
      const off = [
        listen(redis, "close", () => lose("subscriber connection closed")),
        listen(redis, "end", () => lose("subscriber connection ended")),
        // A pushed SUNSUBSCRIBE (DataHandler.js:176-178).
        listen(redis, "moved", () => lose("server unsubscribed the subscriber")),
        listen(redis, "ready", wake),
      ];
      return () => off.forEach((f) => f());
    },
    onMessage(listener) {
      return listen(redis, "smessageBuffer", listener);
    },
  };
}

interface ShardedSubscriberInternals {
  getInstance(): Redis | null;
}
interface SubscriberGroupInternals {
  getResponsibleSubscriber(slot: number): ShardedSubscriberInternals | undefined;
}

/** The Cluster's private sharded-subscriber group and its emitter (see the file comment). */
function shardedInternals(cluster: Cluster): { group: SubscriberGroupInternals; emitter: EventEmitter } {
  const c = cluster as unknown as { shardedSubscribers?: Partial<SubscriberGroupInternals>; subscriberGroupEmitter?: unknown };
  if (typeof c.shardedSubscribers?.getResponsibleSubscriber !== "function" || !(c.subscriberGroupEmitter instanceof EventEmitter)) {
    throw new Error("the subscriber Cluster needs shardedSubscribers: true (or ioredis' sharded subscriber internals changed: see shardedSubscriptions.ts)");
  }
  return { group: c.shardedSubscribers as SubscriberGroupInternals, emitter: c.subscriberGroupEmitter };
}

function clusterDriver(cluster: Cluster): Driver {
  const { group, emitter } = shardedInternals(cluster);
  return {
    subscribeNew: (channel) => cluster.ssubscribe(channel),
    async resubscribe(channels, within) {
      if (cluster.status !== "ready") throw new Error(`subscriber cluster is ${cluster.status}`);
      const bySlot = new Map<number, string[]>();
      for (const channel of channels) {
        const slot = hashSlot(channel);
        const list = bySlot.get(slot);
        if (list) list.push(channel);
        else bySlot.set(slot, [channel]);
      }
      await Promise.all(
        [...bySlot].map(async ([slot, slotChannels]) => {
          const instance = group.getResponsibleSubscriber(slot)?.getInstance();
          if (!instance || instance.status === "end") throw new Error(`no subscriber connection for slot ${slot}`);
          for (const chunk of chunks(slotChannels, CHUNK)) await within(() => instance.ssubscribe(...chunk));
        }),
      );
    },
    unsubscribe: (channel) => cluster.sunsubscribe(channel),
    ready: () => cluster.status === "ready",
    afterFailure() {
      if (cluster.status === "ready") cluster.refreshSlotsCache();
    },
    watch(lose, wake) {
      const off = [
        listen(emitter, "moved", () => lose("server unsubscribed a subscriber (slot moved)")),
        listen(cluster, "-node", () => lose("node removed")),
        listen(cluster, "+node", () => lose("node added")),
        listen(cluster, "-subscriber", () => lose("sharded subscriber removed")),
        listen(cluster, "+subscriber", () => lose("sharded subscriber added")),
        listen(cluster, "subscribersReady", () => lose("sharded subscribers reset")),
        listen(cluster, "error", () => lose("subscriber error")),
        listen(cluster, "close", () => lose("subscriber cluster closed")),
        listen(cluster, "end", () => lose("subscriber cluster ended")),
        listen(cluster, "ready", wake),
      ];
      return () => off.forEach((f) => f());
    },
    onMessage(listener) {
      return listen(cluster, "smessageBuffer", listener);
    },
  };
}

export function createShardedSubscriptions(subscriber: Redis | Cluster, options: ShardedSubscriptionsOptions): ShardedSubscriptions {
  const driver = "isCluster" in subscriber && subscriber.isCluster ? clusterDriver(subscriber as Cluster) : redisDriver(subscriber as Redis);
  const { commandTimeoutMs, logger } = options;
  const retryBaseMs = options.retryBaseMs ?? 100;
  const retryMaxMs = options.retryMaxMs ?? 2_000;
  const within = <T>(op: () => Promise<T>) => callWithin(commandTimeoutMs, op);

  const wanted = new Set<string>();
  const lostListeners = new Set<(lost: SubscriptionsLost) => void>();
  let closed = false;
  // Reasons since the last listener call; non-empty: a repair is due.
  let reasons: string[] = [];
  // Bumped by every loss: a repair counts only if no loss came in meanwhile.
  let generation = 0;
  let running = false;
  let failures = 0;
  let wakeUp: (() => void) | undefined;
  let sleepTimer: NodeJS.Timeout | undefined;

  const wake = () => {
    const w = wakeUp;
    wakeUp = undefined;
    w?.();
  };

  const lose = (reason: string) => {
    if (closed) return;
    generation++;
    if (!reasons.includes(reason)) reasons.push(reason);
    wake();
    void repair();
  };

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wakeUp = resolve;
      sleepTimer = setTimeout(wake, ms);
      sleepTimer.unref();
    }).finally(() => clearTimeout(sleepTimer));

  async function repair(): Promise<void> {
    if (running) return;
    running = true;
    try {
      while (!closed && reasons.length > 0) {
        const started = generation;
        const channels = [...wanted];
        let error: unknown;
        if (channels.length > 0) {
          if (!driver.ready()) error = new Error("subscriber is not connected");
          else {
            try {
              await driver.resubscribe(channels, within);
            } catch (caught) {
              error = caught;
            }
          }
        }
        if (closed) return;
        if (error === undefined) {
          // Another loss while this ran: its channels may have been lost again; go round once more.
          if (started !== generation) continue;
          const lost = { reasons, channels: channels.length };
          reasons = [];
          if (failures > 0 || channels.length > 0) logger?.info({ reasons: lost.reasons, channels: lost.channels, failures }, "subscriptions restored");
          failures = 0;
          if (channels.length > 0) {
            for (const listener of [...lostListeners]) {
              try {
                listener(lost);
              } catch (listenerError) {
                logger?.error({ err: listenerError }, "subscriptions-lost listener failed");
              }
            }
          }
          continue;
        }
        failures++;
        const retryMs = Math.min(retryBaseMs * 2 ** (failures - 1), retryMaxMs);
        const log = { err: error, channels: channels.length, failures, retryMs, reasons };
        if (failures === 1) logger?.warn(log, "re-subscription failed; retrying");
        else logger?.debug(log, "re-subscription failed; retrying");
        driver.afterFailure();
        // Woken early by a reconnection or a new loss.
        await sleep(retryMs);
      }
    } finally {
      running = false;
    }
  }

  const unwatch = driver.watch(lose, wake);

  return {
    async subscribe(channel) {
      if (closed) throw new Error("subscriptions are closed");
      if (wanted.has(channel)) {
        // Already wanted (a retry after a failure, or a second caller): confirm it without
        // going through Cluster#ssubscribe again.
        try {
          await driver.resubscribe([channel], within);
        } catch (error) {
          lose("subscription failed");
          throw error;
        }
        return;
      }
      wanted.add(channel);
      try {
        await within(() => driver.subscribeNew(channel));
      } catch (error) {
        // It may or may not be subscribed now: the repair loop settles it.
        lose("subscription failed");
        throw error;
      }
    },
    unsubscribe(channel) {
      if (!wanted.delete(channel) || closed) return;
      within(() => driver.unsubscribe(channel)).catch(() => {
        // A lost connection forgets its subscriptions anyway; a stray message is ignored by the caller.
      });
    },
    onMessage(listener) {
      return driver.onMessage((channel, message) => listener(channel.toString("utf8"), message));
    },
    onSubscriptionsLost(listener) {
      lostListeners.add(listener);
      return () => lostListeners.delete(listener);
    },
    get channels() {
      return wanted;
    },
    get recovering() {
      return reasons.length > 0;
    },
    close() {
      if (closed) return;
      closed = true;
      unwatch();
      wake();
      lostListeners.clear();
      wanted.clear();
    },
  };
}
