import type { Delivery, DeliveryState } from "../domain/index.js";
import type { EventStore } from "../store/eventStore.js";

/** The state a watch starts from, and its snapshot message encoded at most once for all who share the read. */
export interface StartupRead {
  readonly state: DeliveryState;
  /** Only for a delivery that exists. */
  snapshot(): Uint8Array;
}

/** When a watcher joined its channel, in the order of joins and reads: a read it may share began after it. */
export type JoinTicket = number;

export interface StartupReads {
  /** Take it when the watcher joins its channel, before it can hear live updates. */
  joined(): JoinTicket;
  /** The delivery's state, from a read that began after `ticket`: one under way is shared, else a new one. */
  read(deliveryId: string, ticket: JoinTicket): Promise<StartupRead>;
}

/**
 * Watches of one delivery that start together share one state read and one
 * encoded snapshot (a burst of reconnecting watchers costs one read, not one
 * each). A watcher may only use a read that began after it joined: from its
 * join on, live updates reach it (or mark it for a log check), so nothing
 * between that read and its first live update can slip past.
 */
export function createStartupReads(store: Pick<EventStore, "load">, encodeSnapshot: (delivery: Delivery) => Uint8Array): StartupReads {
  interface Shared {
    readonly startedAt: number;
    readonly result: Promise<StartupRead>;
  }
  const underWay = new Map<string, Shared>();
  // One counter for joins and reads, so that "began after it joined" is a comparison.
  let clock = 0;

  return {
    joined: () => ++clock,
    read(deliveryId, ticket) {
      const current = underWay.get(deliveryId);
      if (current && current.startedAt > ticket) return current.result;
      const result = store.load(deliveryId).then(({ state }): StartupRead => {
        let bytes: Uint8Array | undefined;
        return { state, snapshot: () => (bytes ??= encodeSnapshot(state as Delivery)) };
      });
      const shared: Shared = { startedAt: ++clock, result };
      underWay.set(deliveryId, shared);
      const forget = () => {
        if (underWay.get(deliveryId) === shared) underWay.delete(deliveryId);
      };
      result.then(forget, forget);
      return result;
    },
  };
}
