/**
 * The Redis event store, storage layout 2 (keys.ts has the layout). One
 * round trip per read, one atomic script per append, on a single Redis or a
 * Redis Cluster (every key of one command shares its partition's slot).
 */
import { randomBytes } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import {
  type Delivery,
  type DeliveryState,
  type DeliveryStatus,
  initialState,
  InvalidInput,
  isTerminal,
  type RecordedEvent,
} from "../../domain/index.js";
import type { AppendResult, ChangeFeed, DeliveryPage, EventStore, FeedEntry, ListQuery, LoadedDelivery, PriorRequest } from "../eventStore.js";
import {
  encodeStoredEvent,
  encodeUpdate,
  EVENT_CODES,
  feedStatuses,
  foldLog,
  foldState,
  idOfIndexMember,
  indexMember,
  requestField,
  STATUS_BY_CODE,
  statusCode,
} from "./codec.js";
import { createRedisKeys, DEFAULT_PARTITIONS, INDEXED_STATUSES, type IndexedStatus, type RedisKeys } from "./keys.js";
import { callRedis as callRedisOnce } from "./redisErrors.js";
import { registerScripts } from "./scripts.js";

export const LAYOUT_VERSION = "2";
export const DEFAULT_FEED_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** The store cannot serve this Redis as it is (an older or newer layout): the service must not start. */
export class StoreLayoutError extends Error {}

export interface RedisEventStoreDeps {
  /** A command connection; the store never closes a connection it was given. */
  readonly redis: Redis | Cluster;
  /** Namespaces every key and channel (tests use a random one). */
  readonly keyPrefix?: string;
  /** Partitions of a new store; an existing store keeps the number it recorded. */
  readonly partitions?: number;
  readonly feedRetentionMs?: number;
  /** Finished deliveries are deleted this long after their last event; undefined keeps them. */
  readonly retainFinishedForMs?: number;
  readonly now?: () => number;
  /** Gives each call a deadline from its arrival (REDIS_COMMAND_TIMEOUT_MS), whatever is queued ahead of it. */
  readonly within?: <T>(operation: () => Promise<T>) => Promise<T>;
  /** After an append: wait for REDIS_WAIT_REPLICAS replicas of the key's node (rejects when too few acknowledge). */
  readonly waitForReplicas?: (key: string) => Promise<number>;
}

export interface RedisEventStore extends EventStore {
  /** Reads (or, on an empty Redis, records) the layout; rejects with StoreLayoutError on data it cannot serve. */
  open(): Promise<RedisKeys>;
}

const CURSOR = /^\d{13}[A-Za-z0-9_-]{1,64}$/;
const SWEEP_BATCH = 100;

function feedEntryOf(partition: number, id: string, fields: readonly string[]): FeedEntry {
  const values: Record<string, string> = {};
  for (let i = 0; i < fields.length; i += 2) values[fields[i]!] = fields[i + 1]!;
  const statuses = feedStatuses(values.s ?? "");
  if (!values.d || !values.v || !statuses) throw new Error(`feed entry ${id} is malformed`);
  return { partition, id, deliveryId: values.d, version: Number(values.v), ...statuses };
}

function parsePrior(value: string): PriorRequest {
  const colon = value.indexOf(":");
  return { version: Number(value.slice(0, colon)), fingerprint: value.slice(colon + 1) };
}

/**
 * Reads the layout of an existing store, or records a new one; shared with the migration.
 * `callRedis`: how each call is made (the store's gives it its deadline).
 */
export async function openLayout(
  redis: Redis | Cluster,
  keyPrefix: string,
  partitions: number,
  callRedis: <T>(operation: () => Promise<T>) => Promise<T> = callRedisOnce,
): Promise<RedisKeys> {
  const probe = createRedisKeys(keyPrefix, 1);
  let meta = await callRedis(() => redis.hgetall(probe.meta));
  if (meta.layout === undefined) {
    // A migration in progress has recorded its partitions but not yet the layout.
    if (meta.migrating !== undefined) {
      throw new StoreLayoutError("a migration to storage layout 2 is in progress; let `npm run migrate` finish (it resumes where it stopped)");
    }
    if ((await callRedis(() => redis.exists(probe.legacyIndex))) === 1) {
      throw new StoreLayoutError(
        "this Redis holds data of storage layout 1 (release 0.1); run `npm run migrate` (with the same Redis settings) before starting this release",
      );
    }
    await callRedis(() => redis.hsetnx(probe.meta, "partitions", String(partitions)));
    await callRedis(() => redis.hsetnx(probe.meta, "layout", LAYOUT_VERSION));
    meta = await callRedis(() => redis.hgetall(probe.meta));
  }
  if (meta.layout !== LAYOUT_VERSION) {
    throw new StoreLayoutError(`this Redis holds storage layout ${meta.layout}; this release reads layout ${LAYOUT_VERSION} only`);
  }
  return createRedisKeys(keyPrefix, Number(meta.partitions));
}

export function createRedisEventStore({
  redis,
  keyPrefix = "",
  partitions = DEFAULT_PARTITIONS,
  feedRetentionMs = DEFAULT_FEED_RETENTION_MS,
  retainFinishedForMs,
  now = Date.now,
  within,
  waitForReplicas,
}: RedisEventStoreDeps): RedisEventStore {
  // The append script's small fields are NUL-ended, channel names (made of the prefix) among them.
  if (keyPrefix.includes("\0")) throw new RangeError("a key prefix cannot contain a NUL character");
  const runScript = registerScripts(redis);
  // Every call below goes through callRedis; with a deadline, it starts at arrival.
  const callRedis = within ? <T>(operation: () => Promise<T>) => callRedisOnce(() => within(operation)) : callRedisOnce;

  // The layout is read once; while Redis is unreachable every call tries again.
  let opened: Promise<RedisKeys> | undefined;
  // Once read, every call takes it without a wait (`layout ?? (await keys())`).
  let layout: RedisKeys | undefined;
  const keys = (): Promise<RedisKeys> => {
    opened ??= openLayout(redis, keyPrefix, partitions, callRedis).then(
      (k) => (layout = k),
      (error: unknown) => {
        opened = undefined;
        throw error;
      },
    );
    return opened;
  };

  const isDue = (state: DeliveryState): boolean =>
    retainFinishedForMs !== undefined && state.status !== "NONE" && isTerminal(state.status) && state.updatedAtMs + retainFinishedForMs <= now();

  async function remove(k: RedisKeys, delivery: Delivery): Promise<boolean> {
    const d = k.delivery(delivery.id);
    const member = indexMember(delivery);
    const deleted = await callRedis(() =>
      runScript(
        "deleteDelivery",
        [d.log, d.requests, d.index(delivery.status as IndexedStatus), d.expiry],
        [`${statusCode(delivery.status)}${member}`, member, String(now()), String(delivery.updatedAtMs + (retainFinishedForMs ?? 0)), String(delivery.version)],
      ),
    );
    return deleted === 1;
  }

  /** The whole log of each id, one round trip. */
  function logs(k: RedisKeys, ids: readonly string[]): Promise<Buffer[][]> {
    return callRedis(() => Promise.all(ids.map((id) => redis.lrangeBuffer(k.delivery(id).log, 0, -1))));
  }

  /**
   * Records of versions after `from`'s up to `until` (inclusive); one round trip. The events
   * before are read only to fold the state when the caller holds no state to start from.
   */
  async function recordsUntil(k: RedisKeys, deliveryId: string, until: number, from: DeliveryState = initialState): Promise<RecordedEvent[]> {
    const entries = await callRedis(() => redis.lrangeBuffer(k.delivery(deliveryId).log, from.version, until - 1));
    const records = foldLog(deliveryId, entries, from);
    const last = records.at(-1);
    return last && isDue(last.delivery) ? [] : records;
  }

  const feed: ChangeFeed = {
    retentionMs: feedRetentionMs,
    partitions: async () => (await keys()).partitions,
    async heads() {
      const k = layout ?? (await keys());
      const last = await callRedis(() =>
        Promise.all(Array.from({ length: k.partitions }, (_, p) => redis.xrevrange(k.partition(p).feed, "+", "-", "COUNT", 1))),
      );
      return last.map((entries) => entries[0]?.[0] ?? "0-0");
    },
    async read(partition, after, limit) {
      const k = layout ?? (await keys());
      const entries = (await callRedis(() => redis.xrange(k.partition(partition).feed, `(${after}`, "+", "COUNT", limit))) as [string, string[]][];
      return entries.map(([id, fields]) => feedEntryOf(partition, id, fields));
    },
  };

  return {
    open: keys,
    feed,

    async load(deliveryId, requestId): Promise<LoadedDelivery> {
      const k = layout ?? (await keys());
      const d = k.delivery(deliveryId);
      // Sent together (one round trip); a read without a request id asks for the log alone.
      const [entries, prior] =
        requestId === undefined
          ? [await callRedis(() => redis.lrangeBuffer(d.log, 0, -1)), null]
          : await callRedis(() => Promise.all([redis.lrangeBuffer(d.log, 0, -1), redis.hget(d.requests, requestField(requestId, true))]));
      const state = foldState(deliveryId, entries);
      // A delivery past its retention is gone: delete it now rather than at the next sweep.
      if (isDue(state)) {
        await remove(k, state as Delivery);
        return { state: initialState };
      }
      if (!prior) return { state };
      // A retry of a request already recorded: its event may have reached no replica yet (the first
      // attempt's WAIT failed). Acknowledged only once enough replicas have it, as a first append is.
      if (waitForReplicas) await callRedis(() => waitForReplicas(d.log));
      return { state, prior: parsePrior(prior) };
    },

    async append({ record, expectedVersion, previousStatus, fingerprint }): Promise<AppendResult> {
      const k = layout ?? (await keys());
      const { event, delivery } = record;
      const d = k.delivery(event.deliveryId);
      const before = previousStatus === "NONE" ? delivery.status : previousStatus;
      const nowMs = now();
      const due = retainFinishedForMs !== undefined && isTerminal(delivery.status) ? String(event.occurredAtMs + retainFinishedForMs) : "";
      // Without a client request_id, a private key still makes a resent append (lost reply) a duplicate.
      const field = event.requestId ? requestField(event.requestId, true) : requestField(randomBytes(6).toString("base64url"), false);
      const [outcome, value, feedId, previousFeedId] = (await callRedis(() =>
        runScript(
          "appendEvent",
          [d.log, d.requests, d.feed, d.index(before as IndexedStatus), d.index(delivery.status as IndexedStatus), d.expiry],
          [
            // The small fields, each ended by NUL, the request field (any bytes) last: see the script.
            `${expectedVersion}\0${fingerprint}\0${event.deliveryId}\0${indexMember(delivery)}\0${statusCode(previousStatus)}\0${statusCode(delivery.status)}\0${EVENT_CODES[event.data.type]}\0${nowMs}\0${feedRetentionMs}\0${due}\0${d.channel}\0${d.partitionChannel}\0${field}`,
            encodeStoredEvent(event),
            encodeUpdate(record),
          ],
        ),
      )) as [string, string, string?, string?];
      switch (outcome) {
        case "appended": {
          // Acknowledged only once enough replicas have it; if they do not, the client retries with its request_id.
          if (waitForReplicas) await callRedis(() => waitForReplicas(d.log));
          const entry = { partition: d.partition, id: feedId!, deliveryId: event.deliveryId, version: event.version, before: previousStatus, after: delivery.status };
          return { outcome, change: { previous: previousFeedId!, entry, record } };
        }
        case "conflict":
          return { outcome, currentVersion: Number(value) };
        case "duplicate":
          // As for a retry found by load(): acknowledged only once enough replicas have the recorded event.
          if (waitForReplicas) await callRedis(() => waitForReplicas(d.log));
          return { outcome, prior: parsePrior(value) };
        default:
          throw new Error(`appendEvent replied ${outcome}`);
      }
    },

    async readAt(deliveryId, version) {
      const records = await recordsUntil(layout ?? (await keys()), deliveryId, version);
      return records.length === version ? records[version - 1] : undefined;
    },

    async readAfter(deliveryId, afterVersion, limit, stateAt) {
      if (limit <= 0) return [];
      const from = stateAt !== undefined && stateAt.version === afterVersion ? stateAt : initialState;
      const records = await recordsUntil(layout ?? (await keys()), deliveryId, afterVersion + limit, from);
      return records.slice(afterVersion - from.version);
    },

    async list({ statuses, order, cursor, limit }: ListQuery): Promise<DeliveryPage> {
      if (cursor !== undefined && !CURSOR.test(cursor)) {
        throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
      }
      const k = layout ?? (await keys());
      const wanted: readonly IndexedStatus[] = statuses.length > 0 ? (statuses as readonly IndexedStatus[]) : INDEXED_STATUSES;
      const asc = order === "asc";
      const from = cursor === undefined ? (asc ? "-" : "+") : `(${cursor}`;
      const to = asc ? "+" : "-";
      // limit + 1 from every (partition, status) index: the merge then knows whether a next page exists.
      const ranges: Promise<string[]>[] = [];
      for (let p = 0; p < k.partitions; p++) {
        for (const status of wanted) {
          const key = k.partition(p).index(status);
          ranges.push(
            asc
              ? redis.zrange(key, from, to, "BYLEX", "LIMIT", 0, limit + 1)
              : redis.zrange(key, from, to, "BYLEX", "REV", "LIMIT", 0, limit + 1),
          );
        }
      }
      // A delivery moved between two asked statuses while the ranges were read could come back twice.
      const members = [...new Set((await callRedis(() => Promise.all(ranges))).flat())];
      members.sort();
      if (!asc) members.reverse();
      const page = members.slice(0, limit);
      const ids = page.map(idOfIndexMember);
      const states = ids.length === 0 ? [] : await logs(k, ids);
      const allowed = new Set<DeliveryStatus>(wanted);
      const deliveries: Delivery[] = [];
      for (let i = 0; i < ids.length; i++) {
        const state = foldState(ids[i]!, states[i]!);
        // Pages follow the current status: one that moved out of the filter (or is past retention) is left out.
        if (state.status !== "NONE" && allowed.has(state.status) && !isDue(state)) deliveries.push(state);
      }
      const last = page.at(-1);
      return members.length > limit && last !== undefined ? { deliveries, nextCursor: last } : { deliveries };
    },

    async *scan(statuses, batch) {
      const k = layout ?? (await keys());
      const wanted: readonly IndexedStatus[] = statuses.length > 0 ? (statuses as readonly IndexedStatus[]) : INDEXED_STATUSES;
      const allowed = new Set<DeliveryStatus>(wanted);
      for (let p = 0; p < k.partitions; p++) {
        for (const status of wanted) {
          const key = k.partition(p).index(status);
          let from = "-";
          for (;;) {
            const members = await callRedis(() => redis.zrange(key, from, "+", "BYLEX", "LIMIT", 0, batch));
            if (members.length === 0) break;
            const ids = members.map(idOfIndexMember);
            const entries = await logs(k, ids);
            const page: Delivery[] = [];
            ids.forEach((id, i) => {
              const state = foldState(id, entries[i]!);
              if (state.status !== "NONE" && allowed.has(state.status) && !isDue(state)) page.push(state);
            });
            yield page;
            if (members.length < batch) break;
            from = `(${members.at(-1)!}`;
          }
        }
      }
    },

    async currentVersions(deliveryIds) {
      if (deliveryIds.length === 0) return [];
      const k = layout ?? (await keys());
      return callRedis(() => Promise.all(deliveryIds.map((id) => redis.llen(k.delivery(id).log))));
    },

    async sweep() {
      if (retainFinishedForMs === undefined) return 0;
      const k = layout ?? (await keys());
      const nowMs = now();
      let deleted = 0;
      for (let p = 0; p < k.partitions; p++) {
        const part = k.partition(p);
        const due = await callRedis(() => redis.zrangebyscore(part.expiry, "-inf", nowMs, "LIMIT", 0, SWEEP_BATCH));
        for (const expiryMember of due) {
          const status = STATUS_BY_CODE[Number(expiryMember[0])];
          const member = expiryMember.slice(1);
          const id = idOfIndexMember(member);
          if (!status) continue;
          const result = await callRedis(() =>
            runScript("deleteDelivery", [part.log(id), part.requests(id), part.index(status), part.expiry], [expiryMember, member, String(nowMs), "", ""]),
          );
          if (result === 1) deleted++;
        }
      }
      return deleted;
    },

    async close() {
      // The connection belongs to the caller.
    },
  };
}
