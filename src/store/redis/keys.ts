/**
 * Every Redis key and channel name of storage layout 2, built in one place.
 *
 * A delivery lives in one of a fixed number of partitions (chosen at the
 * store's first start, recorded in the meta Hash). Everything one append
 * touches shares the partition's hash tag, so the append is one atomic
 * script on one shard of a Redis Cluster:
 *
 *   <prefix>l:{<tag>}:<id>        List   the delivery's events (StoredEvent protobuf), version = position + 1
 *   <prefix>q:{<tag>}:<id>        Hash   request key -> "<version>:<fingerprint>" ("r<request_id>", or "a<private key>")
 *   <prefix>f:{<tag>}             Stream the partition's change feed: d (id), v (version), s (status before, after), t (event)
 *   <prefix>i:{<tag>}:<status>    ZSet   the partition's deliveries in a status; members "<created_at ms, 13 digits><id>", score 0
 *   <prefix>x:{<tag>}             ZSet   finished deliveries to delete (RETAIN_FINISHED_FOR): score = due ms, member "<status><index member>"
 *   <prefix>c:{<tag>}:<id>        SPUBLISH channel of one delivery (WatchDelivery)
 *   <prefix>c:{<tag>}             SPUBLISH channel of the partition (WatchDeliveries tailers): each feed entry with
 *                                 the one before it and the update, "<before> <entry> <id> <version> <s> <payload>"
 *   <prefix>meta                  Hash   layout, partitions (outside any partition)
 *
 * Each partition's tag is chosen so that the partitions' hash slots are
 * evenly spaced over 0..16383: a cluster with evenly split slot ranges gets
 * an even share of partitions per shard. Ids are validated at the edge
 * before they get here.
 */
import { hashSlot, SLOTS } from "./slots.js";

export const DEFAULT_PARTITIONS = 16;
export const MAX_PARTITIONS = 1024;

/** The statuses a delivery can be indexed under, by their proto enum number. */
export const STATUS_CODES = { READY: 1, ACTIVE: 2, COLLECTED: 3, COMPLETED: 4, CANCELLED: 5 } as const;
export type IndexedStatus = keyof typeof STATUS_CODES;
export const INDEXED_STATUSES = Object.keys(STATUS_CODES) as IndexedStatus[];

export interface DeliveryKeys {
  readonly partition: number;
  readonly log: string;
  readonly requests: string;
  readonly feed: string;
  readonly expiry: string;
  readonly channel: string;
  readonly partitionChannel: string;
  index(status: IndexedStatus): string;
}

export interface PartitionKeys {
  readonly feed: string;
  readonly expiry: string;
  readonly channel: string;
  index(status: IndexedStatus): string;
  /** A delivery's keys in this partition (the id must belong to it). */
  log(id: string): string;
  requests(id: string): string;
}

export interface RedisKeys {
  readonly prefix: string;
  readonly partitions: number;
  partitionOf(id: string): number;
  delivery(id: string): DeliveryKeys;
  partition(index: number): PartitionKeys;
  /** The channel of one delivery (WatchDelivery). */
  channel(id: string): string;
  /** Inverse of channel(), for messages the subscriber receives. */
  idFromChannel(channel: string): string | undefined;
  /** Inverse of partition(i).channel. */
  partitionFromChannel(channel: string): number | undefined;
  readonly meta: string;
  /** Release 1's creation index: its presence means an unmigrated store. */
  readonly legacyIndex: string;
}

/** FNV-1a, 32 bits: which partition an id belongs to (stable across releases: stored data depends on it). */
export function partitionOf(id: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

/** A tag whose slot is the middle of partition i's share of the slots. */
function tagFor(i: number, partitions: number): string {
  const share = SLOTS / partitions;
  const target = Math.floor((i + 0.5) * share);
  // Close enough to the middle: within a sixteenth of the share (a few hundred tries).
  const tolerance = Math.floor(share / 16);
  let best = `${i}`;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (let suffix = 0; suffix < 100_000 && bestDistance > tolerance; suffix++) {
    const candidate = `${i}.${suffix.toString(36)}`;
    const distance = Math.abs(hashSlot(candidate) - target);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

const tagCache = new Map<number, readonly string[]>();

/** The hash tags of every partition (computed once per partition count). */
export function partitionTags(partitions: number): readonly string[] {
  let tags = tagCache.get(partitions);
  if (!tags) {
    tags = Array.from({ length: partitions }, (_, i) => tagFor(i, partitions));
    tagCache.set(partitions, tags);
  }
  return tags;
}

export function createRedisKeys(prefix = "", partitions = DEFAULT_PARTITIONS): RedisKeys {
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > MAX_PARTITIONS) {
    throw new Error(`partitions must be an integer from 1 to ${MAX_PARTITIONS}, got ${partitions}`);
  }
  const tags = partitionTags(partitions);
  const parts: PartitionKeys[] = tags.map((tag) => {
    const indexes = Object.fromEntries(INDEXED_STATUSES.map((s) => [s, `${prefix}i:{${tag}}:${s}`])) as Record<IndexedStatus, string>;
    return {
      feed: `${prefix}f:{${tag}}`,
      expiry: `${prefix}x:{${tag}}`,
      channel: `${prefix}c:{${tag}}`,
      index: (status) => indexes[status],
      log: (id) => `${prefix}l:{${tag}}:${id}`,
      requests: (id) => `${prefix}q:{${tag}}:${id}`,
    };
  });
  const channelPrefix = `${prefix}c:{`;
  const partitionByChannel = new Map(parts.map((p, i) => [p.channel, i]));
  const of = (id: string) => partitionOf(id, partitions);

  return {
    prefix,
    partitions,
    partitionOf: of,
    delivery(id) {
      const partition = of(id);
      const p = parts[partition]!;
      return {
        partition,
        log: p.log(id),
        requests: p.requests(id),
        feed: p.feed,
        expiry: p.expiry,
        channel: `${p.channel}:${id}`,
        partitionChannel: p.channel,
        index: p.index,
      };
    },
    partition: (index) => {
      const p = parts[index];
      if (!p) throw new Error(`no partition ${index} of ${partitions}`);
      return p;
    },
    channel: (id) => `${parts[of(id)]!.channel}:${id}`,
    idFromChannel(channel) {
      if (!channel.startsWith(channelPrefix)) return undefined;
      const close = channel.indexOf("}:", channelPrefix.length);
      if (close < 0) return undefined;
      const id = channel.slice(close + 2);
      return id !== "" && this.channel(id) === channel ? id : undefined;
    },
    partitionFromChannel: (channel) => partitionByChannel.get(channel),
    meta: `${prefix}meta`,
    legacyIndex: `${prefix}deliveries`,
  };
}
