/**
 * The event store port. Adapters: redis/ (production) and memory/ (one
 * process, nothing kept). Both pass test/store/eventStoreContract.ts.
 *
 * Errors: a store that cannot be reached throws StoreUnavailable; a malformed
 * cursor throws InvalidInput. Nothing else is expected.
 */
import type { Delivery, DeliveryState, RecordedEvent } from "../domain/index.js";

/** What an earlier command with the same request key produced. */
export interface PriorRequest {
  readonly version: number;
  readonly fingerprint: string;
}

export interface LoadedDelivery {
  readonly state: DeliveryState;
  /** Set when requestKey was given and already recorded on this delivery. */
  readonly prior?: PriorRequest;
}

export interface AppendInput {
  /** The event (its version must be expectedVersion + 1) and the state after it. */
  readonly record: RecordedEvent;
  readonly expectedVersion: number;
  /** Deduplicates retries: recorded with the version this append produces. */
  readonly requestKey: string;
  /** Tells a retry of the same command from a different command reusing the key. */
  readonly fingerprint: string;
}

export type AppendResult =
  | { readonly outcome: "appended" }
  | { readonly outcome: "conflict"; readonly currentVersion: number }
  | { readonly outcome: "duplicate"; readonly prior: PriorRequest };

export interface DeliveryPage {
  readonly deliveries: readonly Delivery[];
  /** Absent on the last page. */
  readonly nextCursor?: string;
}

export interface EventStore {
  /** Current state, and the outcome of requestKey if it was already used; one round trip. */
  load(deliveryId: string, requestKey?: string): Promise<LoadedDelivery>;
  /**
   * Atomically: unless the stored version differs from expectedVersion or the
   * request key is already recorded, append the event, store the state after
   * it, record the request key, index a new delivery, and publish the update.
   */
  append(input: AppendInput): Promise<AppendResult>;
  /** The event at a version and the state after it. */
  readAt(deliveryId: string, version: number): Promise<RecordedEvent | undefined>;
  /** Up to `limit` events with versions above afterVersion, ascending. */
  readAfter(deliveryId: string, afterVersion: number, limit: number): Promise<readonly RecordedEvent[]>;
  /** Deliveries in creation order, each exactly once across pages. */
  list(cursor: string | undefined, limit: number): Promise<DeliveryPage>;
  /** Current versions (0 for unknown) of several deliveries in one round trip. */
  currentVersions(deliveryIds: readonly string[]): Promise<number[]>;
  close(): Promise<void>;
}
