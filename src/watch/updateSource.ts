import type { RecordedEvent } from "../domain/index.js";
import type { FeedChange } from "../store/eventStore.js";

/**
 * Where live updates come from: Redis Pub/Sub (one subscriber connection per
 * process) or the in-process bus. At most once, in any order: the hub repairs
 * whatever it loses from the log.
 */
export interface UpdateSource {
  /**
   * Resolves once the subscription is acknowledged, so nothing published
   * after it can be missed. Each subscribe is paired with one unsubscribe,
   * also when it rejects.
   */
  subscribe(deliveryId: string): Promise<void>;
  unsubscribe(deliveryId: string): void;
  /** One listener, called with each decoded update. */
  onUpdate(listener: (deliveryId: string, record: RecordedEvent) => void): void;
  /** Wake-ups for a partition's change feed (WatchDeliveries); resolves once acknowledged. Never unsubscribed. */
  subscribePartition(partition: number): Promise<void>;
  /**
   * One listener, called when a partition's feed has a new entry (at most once per entry, maybe
   * never, in feed order), with the entry itself when the message carries it.
   */
  onPartition(listener: (partition: number, change?: FeedChange) => void): void;
  /** Called after a lost subscription is back and acknowledged: messages in between are gone. */
  /** Adds a listener (each is called). */
  onResubscribed(listener: () => void): void;
  close(): Promise<void>;
}
