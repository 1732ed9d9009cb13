import {
  type Delivery,
  type DeliveryState,
  type DeliveryStatus,
  initialState,
  InvalidInput,
  isTerminal,
  type RecordedEvent,
} from "../../domain/index.js";
import type { AppendResult, DeliveryPage, EventStore, FeedChange, FeedEntry, PriorRequest } from "../eventStore.js";

interface StoredDelivery {
  readonly log: RecordedEvent[];
  readonly requests: Map<string, PriorRequest>;
}

export interface MemoryEventStoreDeps {
  /** Called after each append, in version order, like the Redis script's publication. */
  readonly onAppended?: (record: RecordedEvent, change: FeedChange) => void;
  /** Finished deliveries are gone this long after their last event; undefined keeps them. */
  readonly retainFinishedForMs?: number;
  readonly feedRetentionMs?: number;
  readonly now?: () => number;
}

const CURSOR = /^\d{13}[A-Za-z0-9_-]{1,64}$/;

/** The same order as the Redis index members: creation time, then id. */
function orderKey(delivery: Delivery): string {
  return String(delivery.createdAtMs).padStart(13, "0") + delivery.id;
}

/**
 * The whole store in this process: for running without Redis (one replica,
 * nothing kept after exit). Records are immutable, so they are shared, not copied.
 */
export function createMemoryEventStore({
  onAppended,
  retainFinishedForMs,
  feedRetentionMs = 7 * 86_400_000,
  now = Date.now,
}: MemoryEventStoreDeps = {}): EventStore {
  const deliveries = new Map<string, StoredDelivery>();
  // One partition; positions "<ms>-<seq>" like Redis stream ids.
  const feed: FeedEntry[] = [];
  let last = { ms: 0, seq: 0 };
  const addToFeed = (record: RecordedEvent, before: FeedEntry["before"]) => {
    const ms = Math.max(now(), last.ms);
    last = { ms, seq: ms === last.ms ? last.seq + 1 : 0 };
    const { deliveryId, version } = record.event;
    const entry: FeedEntry = { partition: 0, id: `${ms}-${last.seq}`, deliveryId, version, before, after: record.delivery.status };
    const previous = feed.at(-1)?.id ?? "0-0";
    feed.push(entry);
    const cut = now() - feedRetentionMs;
    let trimmed = 0;
    while (trimmed < feed.length && Number(feed[trimmed]!.id.split("-")[0]) < cut) trimmed++;
    if (trimmed > 0) feed.splice(0, trimmed);
    return { previous, entry, record };
  };
  const after = (id: string, position: string) => {
    const [a, b] = id.split("-").map(Number) as [number, number];
    const [c, d] = position.split("-").map(Number) as [number, number];
    return a > c || (a === c && b > d);
  };

  const isDue = (state: DeliveryState): boolean =>
    retainFinishedForMs !== undefined && state.status !== "NONE" && isTerminal(state.status) && state.updatedAtMs + retainFinishedForMs <= now();

  /** The stored delivery, unless its retention is over (then it is deleted). */
  const live = (id: string): StoredDelivery | undefined => {
    const stored = deliveries.get(id);
    const last = stored?.log.at(-1);
    if (last && isDue(last.delivery)) {
      deliveries.delete(id);
      return undefined;
    }
    return stored;
  };

  return {
    feed: {
      retentionMs: feedRetentionMs,
      partitions: async () => 1,
      heads: async () => [feed.at(-1)?.id ?? "0-0"],
      async read(_partition, position, limit) {
        return feed.filter((entry) => after(entry.id, position)).slice(0, limit);
      },
    },

    async load(deliveryId, requestId) {
      const stored = live(deliveryId);
      const state = stored?.log.at(-1)?.delivery ?? initialState;
      const prior = requestId === undefined ? undefined : stored?.requests.get(requestId);
      return prior ? { state, prior } : { state };
    },

    async append({ record, expectedVersion, previousStatus, fingerprint }): Promise<AppendResult> {
      const id = record.event.deliveryId;
      let stored = live(id);
      const { requestId } = record.event;
      const prior = requestId ? stored?.requests.get(requestId) : undefined;
      if (prior) return { outcome: "duplicate", prior };
      const currentVersion = stored?.log.length ?? 0;
      if (currentVersion !== expectedVersion) return { outcome: "conflict", currentVersion };
      if (record.event.version !== currentVersion + 1) {
        throw new Error(`version ${record.event.version} does not follow ${currentVersion}`);
      }
      if (!stored) {
        stored = { log: [], requests: new Map() };
        deliveries.set(id, stored);
      }
      stored.log.push(record);
      if (requestId) stored.requests.set(requestId, { version: record.event.version, fingerprint });
      const change = addToFeed(record, previousStatus);
      onAppended?.(record, change);
      return { outcome: "appended", change };
    },

    async readAt(deliveryId, version) {
      return live(deliveryId)?.log[version - 1];
    },

    async readAfter(deliveryId, afterVersion, limit) {
      return live(deliveryId)?.log.slice(afterVersion, afterVersion + limit) ?? [];
    },

    async list({ statuses, order, cursor, limit }): Promise<DeliveryPage> {
      if (cursor !== undefined && !CURSOR.test(cursor)) {
        throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
      }
      const allowed = new Set<DeliveryStatus>(statuses);
      const matching: [key: string, delivery: Delivery][] = [];
      for (const id of [...deliveries.keys()]) {
        const delivery = live(id)?.log.at(-1)?.delivery;
        if (!delivery || (allowed.size > 0 && !allowed.has(delivery.status))) continue;
        const key = orderKey(delivery);
        if (cursor !== undefined && (order === "asc" ? key <= cursor : key >= cursor)) continue;
        matching.push([key, delivery]);
      }
      matching.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      if (order === "desc") matching.reverse();
      const page = matching.slice(0, limit);
      const last = page.at(-1);
      const result = page.map(([, delivery]) => delivery);
      return matching.length > limit && last ? { deliveries: result, nextCursor: last[0] } : { deliveries: result };
    },

    async *scan(statuses, batch) {
      const allowed = new Set<DeliveryStatus>(statuses);
      let page: Delivery[] = [];
      for (const id of [...deliveries.keys()]) {
        const delivery = live(id)?.log.at(-1)?.delivery;
        if (!delivery || (allowed.size > 0 && !allowed.has(delivery.status))) continue;
        page.push(delivery);
        if (page.length === batch) {
          yield page;
          page = [];
        }
      }
      if (page.length > 0) yield page;
    },

    async currentVersions(deliveryIds) {
      return deliveryIds.map((id) => deliveries.get(id)?.log.length ?? 0);
    },

    async sweep() {
      let deleted = 0;
      for (const id of [...deliveries.keys()]) {
        const had = deliveries.has(id);
        if (had && !live(id)) deleted++;
      }
      return deleted;
    },

    async close() {},
  };
}
