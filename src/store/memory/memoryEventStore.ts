import {
  type Delivery,
  type DeliveryState,
  type DeliveryStatus,
  initialState,
  InvalidInput,
  isTerminal,
  type RecordedEvent,
} from "../../domain/index.js";
import type { AppendResult, DeliveryPage, EventStore, PriorRequest } from "../eventStore.js";

interface StoredDelivery {
  readonly log: RecordedEvent[];
  readonly requests: Map<string, PriorRequest>;
}

export interface MemoryEventStoreDeps {
  /** Called after each append, in version order, like the Redis script's publication. */
  readonly onAppended?: (record: RecordedEvent) => void;
  /** Finished deliveries are gone this long after their last event; undefined keeps them. */
  readonly retainFinishedForMs?: number;
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
export function createMemoryEventStore({ onAppended, retainFinishedForMs, now = Date.now }: MemoryEventStoreDeps = {}): EventStore {
  const deliveries = new Map<string, StoredDelivery>();

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
    async load(deliveryId, requestId) {
      const stored = live(deliveryId);
      const state = stored?.log.at(-1)?.delivery ?? initialState;
      const prior = requestId === undefined ? undefined : stored?.requests.get(requestId);
      return prior ? { state, prior } : { state };
    },

    async append({ record, expectedVersion, fingerprint }): Promise<AppendResult> {
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
      onAppended?.(record);
      return { outcome: "appended" };
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
