import { initialState, InvalidInput, type RecordedEvent } from "../../domain/index.js";
import type { AppendResult, EventStore, PriorRequest } from "../eventStore.js";

interface StoredDelivery {
  readonly log: RecordedEvent[];
  readonly requests: Map<string, PriorRequest>;
}

export interface MemoryEventStoreDeps {
  /** Called after each append, in version order, like the Redis script's PUBLISH. */
  readonly onAppended?: (record: RecordedEvent) => void;
}

/**
 * The whole store in this process: for running without Redis (one replica,
 * nothing kept after exit). Records are immutable, so they are shared, not copied.
 */
export function createMemoryEventStore({ onAppended }: MemoryEventStoreDeps = {}): EventStore {
  const deliveries = new Map<string, StoredDelivery>();
  const creationOrder: string[] = [];

  const current = (id: string) => deliveries.get(id)?.log.at(-1);

  return {
    async load(deliveryId, requestKey) {
      const stored = deliveries.get(deliveryId);
      const state = stored?.log.at(-1)?.delivery ?? initialState;
      const prior = requestKey === undefined ? undefined : stored?.requests.get(requestKey);
      return prior ? { state, prior } : { state };
    },

    async append({ record, expectedVersion, requestKey, fingerprint }): Promise<AppendResult> {
      const id = record.event.deliveryId;
      let stored = deliveries.get(id);
      const prior = stored?.requests.get(requestKey);
      if (prior) return { outcome: "duplicate", prior };
      const currentVersion = stored?.log.length ?? 0;
      if (currentVersion !== expectedVersion) return { outcome: "conflict", currentVersion };
      if (record.event.version !== currentVersion + 1) {
        throw new Error(`version ${record.event.version} does not follow ${currentVersion}`);
      }
      if (!stored) {
        stored = { log: [], requests: new Map() };
        deliveries.set(id, stored);
        creationOrder.push(id);
      }
      stored.log.push(record);
      stored.requests.set(requestKey, { version: record.event.version, fingerprint });
      onAppended?.(record);
      return { outcome: "appended" };
    },

    async readAt(deliveryId, version) {
      return deliveries.get(deliveryId)?.log[version - 1];
    },

    async readAfter(deliveryId, afterVersion, limit) {
      return deliveries.get(deliveryId)?.log.slice(afterVersion, afterVersion + limit) ?? [];
    },

    async list(cursor, limit) {
      let start = 0;
      if (cursor !== undefined) {
        if (!/^\d{1,15}$/.test(cursor)) throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
        start = Number(cursor);
      }
      const ids = creationOrder.slice(start, start + limit);
      const deliveries = ids.flatMap((id) => current(id)?.delivery ?? []);
      const end = start + ids.length;
      return end < creationOrder.length ? { deliveries, nextCursor: String(end) } : { deliveries };
    },

    async currentVersions(deliveryIds) {
      return deliveryIds.map((id) => current(id)?.event.version ?? 0);
    },

    async close() {},
  };
}
