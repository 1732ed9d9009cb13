/**
 * A readable view of what storage layout 2 keeps for some deliveries (for
 * operators: the log is protobuf, which redis-cli cannot show). Read-only:
 * it never records a layout or touches anything it reads. Used by
 * `npm run inspect` (scripts/inspect.mjs).
 *
 * For each id: its partition and keys, every event decoded (version, type,
 * data, request id, actor, time), the current state (the fold of the log),
 * the request Hash (request ids with their versions and fingerprints), its
 * entry in the status indexes (and the expiry ZSet) and its entries in the
 * partition's change feed.
 */
import type { Cluster, Redis } from "ioredis";
import type { Delivery, DeliveryEventData } from "../../domain/index.js";
import { decodeStoredEvent, EVENT_BY_CODE, foldLog, indexMember, STATUS_BY_CODE, statusCode } from "./codec.js";
import { createRedisKeys, INDEXED_STATUSES, type IndexedStatus } from "./keys.js";
import { LAYOUT_VERSION, StoreLayoutError } from "./redisEventStore.js";

/** Feed entries read per XRANGE while looking for a delivery's entries. */
const FEED_BATCH = 1_000;
const FEED_SLACK_MS = 60_000;
/** At most this many feed entries are read per delivery (a partition's feed holds its retention's worth). */
export const DEFAULT_MAX_FEED_SCAN = 200_000;

export interface InspectedEvent {
  readonly version: number;
  readonly type: DeliveryEventData["type"];
  /** The event's fields, without `type`. */
  readonly data: Record<string, unknown>;
  /** The client's request_id recorded with it; "" when the command had none. */
  readonly requestId: string;
  readonly actor: string;
  readonly occurredAt: string;
  readonly occurredAtMs: number;
  /** Size of the stored StoredEvent protobuf. */
  readonly bytes: number;
}

export interface InspectedRequest {
  /** The Hash field: "r" + a client's request_id, "a" + a private key (an append without request_id). */
  readonly field: string;
  readonly kind: "client" | "private";
  /** The client's request_id ("" for a private key). */
  readonly requestId: string;
  readonly version: number;
  readonly fingerprint: string;
}

export interface InspectedFeedEntry {
  /** The Stream entry id ("<ms>-<seq>"). */
  readonly id: string;
  readonly at: string;
  readonly version: number;
  /** "NONE" for the creation. */
  readonly statusBefore: string;
  readonly statusAfter: string;
  readonly type: string;
}

export interface InspectedIndexEntry {
  readonly status: IndexedStatus;
  readonly key: string;
  readonly member: string;
}

export interface InspectedDelivery {
  readonly id: string;
  readonly found: true;
  readonly partition: number;
  readonly keys: {
    readonly log: string;
    readonly requests: string;
    readonly feed: string;
    readonly index: string;
    readonly expiry: string;
    readonly channel: string;
  };
  readonly state: Delivery & { readonly createdAt: string; readonly updatedAt: string };
  readonly events: readonly InspectedEvent[];
  readonly requests: readonly InspectedRequest[];
  readonly index: {
    /** Where the current status says it should be. */
    readonly expected: InspectedIndexEntry;
    /** Every status index that holds its member: exactly `expected` when all is well. */
    readonly found: readonly InspectedIndexEntry[];
    /** Its entry in the expiry ZSet (finished deliveries under RETAIN_FINISHED_FOR), if any. */
    readonly expiry?: { readonly member: string; readonly dueAt: string; readonly dueAtMs: number };
  };
  readonly feed: {
    readonly entries: readonly InspectedFeedEntry[];
    /** Feed entries read to find them. */
    readonly scanned: number;
    /** True when the scan stopped at maxFeedScan before finding every version. */
    readonly truncated: boolean;
  };
}

export interface MissingDelivery {
  readonly id: string;
  readonly found: false;
  readonly partition: number;
  /** The log key that was read (and is empty). */
  readonly log: string;
}

export type InspectResult = InspectedDelivery | MissingDelivery;

export interface InspectOptions {
  /** Feed entries read at most per delivery; default DEFAULT_MAX_FEED_SCAN. */
  readonly maxFeedScan?: number;
}

const iso = (ms: number) => new Date(ms).toISOString();

function statusName(digit: string | undefined): string {
  return digit === "0" ? "NONE" : (STATUS_BY_CODE[Number(digit)] ?? `unknown(${digit})`);
}

function fieldsOf(fields: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
  return out;
}

/** The layout's keys, read from the meta Hash without writing it (openLayout would record one on an empty Redis). */
async function readLayout(redis: Redis | Cluster, keyPrefix: string) {
  const meta = await redis.hgetall(createRedisKeys(keyPrefix, 1).meta);
  if (meta.layout === undefined) {
    throw new StoreLayoutError(`no store of layout ${LAYOUT_VERSION} under prefix "${keyPrefix}" (no ${keyPrefix}meta Hash)`);
  }
  if (meta.layout !== LAYOUT_VERSION) {
    throw new StoreLayoutError(`the store under prefix "${keyPrefix}" has layout ${meta.layout}; this tool reads layout ${LAYOUT_VERSION}`);
  }
  return createRedisKeys(keyPrefix, Number(meta.partitions));
}

/** The partition feed's entries of one delivery, from its creation time on; stops once every version is found. */
async function feedEntriesOf(redis: Redis | Cluster, feed: string, id: string, fromMs: number, versions: number, maxScan: number) {
  const entries: InspectedFeedEntry[] = [];
  let start = `${Math.max(0, fromMs)}-0`;
  let scanned = 0;
  while (scanned < maxScan) {
    const batch = await redis.xrange(feed, start, "+", "COUNT", Math.min(FEED_BATCH, maxScan - scanned));
    scanned += batch.length;
    for (const [entryId, fields] of batch) {
      const f = fieldsOf(fields);
      if (f.d !== id) continue;
      entries.push({
        id: entryId,
        at: iso(Number(entryId.slice(0, entryId.indexOf("-")))),
        version: Number(f.v),
        statusBefore: statusName(f.s?.[0]),
        statusAfter: statusName(f.s?.[1]),
        type: EVENT_BY_CODE.get(f.t ?? "") ?? `unknown(${f.t})`,
      });
    }
    const last = batch.at(-1);
    if (batch.length < FEED_BATCH || last === undefined || entries.length >= versions) {
      return { entries, scanned, truncated: false };
    }
    start = `(${last[0]}`;
  }
  return { entries, scanned, truncated: entries.length < versions };
}

async function inspectOne(redis: Redis | Cluster, keys: ReturnType<typeof createRedisKeys>, id: string, maxFeedScan: number): Promise<InspectResult> {
  const d = keys.delivery(id);
  const [log, requestHash] = await Promise.all([redis.lrangeBuffer(d.log, 0, -1), redis.hgetall(d.requests)]);
  if (log.length === 0) return { id, found: false, partition: d.partition, log: d.log };

  const records = foldLog(id, log);
  const state = records.at(-1)!.delivery;
  const events: InspectedEvent[] = log.map((bytes, i) => {
    const event = decodeStoredEvent(bytes, id, i + 1);
    const { type, ...data } = event.data;
    return {
      version: event.version,
      type,
      data,
      requestId: event.requestId,
      actor: event.actor,
      occurredAt: iso(event.occurredAtMs),
      occurredAtMs: event.occurredAtMs,
      bytes: bytes.length,
    };
  });
  const requests: InspectedRequest[] = Object.entries(requestHash)
    .map(([field, value]) => {
      const colon = value.indexOf(":");
      const client = field.startsWith("r");
      return {
        field,
        kind: client ? ("client" as const) : ("private" as const),
        requestId: client ? field.slice(1) : "",
        version: Number(value.slice(0, colon)),
        fingerprint: value.slice(colon + 1),
      };
    })
    .sort((a, b) => a.version - b.version);

  const member = indexMember(state);
  const expiryMember = `${statusCode(state.status)}${member}`;
  const [scores, due] = await Promise.all([
    Promise.all(INDEXED_STATUSES.map((status) => redis.zscore(d.index(status), member))),
    redis.zscore(d.expiry, expiryMember),
  ]);
  const found = INDEXED_STATUSES.flatMap((status, i) => (scores[i] === null ? [] : [{ status, key: d.index(status), member }]));
  // Feed ids are the appending replica's clock, never below the creation's own; a minute of slack for injected clocks.
  const feed = await feedEntriesOf(redis, d.feed, id, state.createdAtMs - FEED_SLACK_MS, log.length, maxFeedScan);

  return {
    id,
    found: true,
    partition: d.partition,
    keys: { log: d.log, requests: d.requests, feed: d.feed, index: d.index(state.status), expiry: d.expiry, channel: d.channel },
    state: { ...state, createdAt: iso(state.createdAtMs), updatedAt: iso(state.updatedAtMs) },
    events,
    requests,
    index: {
      expected: { status: state.status, key: d.index(state.status), member },
      found,
      ...(due === null ? {} : { expiry: { member: expiryMember, dueAt: iso(Number(due)), dueAtMs: Number(due) } }),
    },
    feed,
  };
}

/**
 * What the store keeps for each id, in order; a delivery without events is
 * `{found: false}`. Rejects with StoreLayoutError when the prefix holds no
 * layout-2 store.
 */
export async function inspectDeliveries(
  redis: Redis | Cluster,
  keyPrefix: string,
  ids: readonly string[],
  options: InspectOptions = {},
): Promise<InspectResult[]> {
  const keys = await readLayout(redis, keyPrefix);
  const maxFeedScan = options.maxFeedScan ?? DEFAULT_MAX_FEED_SCAN;
  const results: InspectResult[] = [];
  for (const id of ids) results.push(await inspectOne(redis, keys, id, maxFeedScan));
  return results;
}
