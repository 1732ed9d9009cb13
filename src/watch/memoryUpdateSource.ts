import type { RecordedEvent } from "../domain/index.js";
import type { FeedChange } from "../store/eventStore.js";
import type { UpdateSource } from "./updateSource.js";

export interface MemoryUpdateSource extends UpdateSource {
  /** Hand to createMemoryEventStore as onAppended. */
  publish(record: RecordedEvent, change: FeedChange): void;
}

/** The in-process bus that stands in for Pub/Sub when the service runs without Redis. */
export function createMemoryUpdateSource(): MemoryUpdateSource {
  const subscribed = new Set<string>();
  let listener: (deliveryId: string, record: RecordedEvent) => void = () => {};
  let partitionListener: (partition: number, change?: FeedChange) => void = () => {};
  let partitionWanted = false;
  return {
    publish(record, change) {
      const id = record.event.deliveryId;
      if (partitionWanted) queueMicrotask(() => partitionListener(0, change));
      // Asynchronous like a real broker: the publisher's call returns before watchers hear of it.
      if (subscribed.has(id)) queueMicrotask(() => subscribed.has(id) && listener(id, record));
    },
    async subscribe(deliveryId) {
      subscribed.add(deliveryId);
    },
    unsubscribe(deliveryId) {
      subscribed.delete(deliveryId);
    },
    onUpdate(l) {
      listener = l;
    },
    async subscribePartition() {
      partitionWanted = true;
    },
    onPartition(l) {
      partitionListener = l;
    },
    onResubscribed() {
      // Never loses a subscription.
    },
    async close() {
      subscribed.clear();
    },
  };
}
