/**
 * The event store port. Adapters: redis/ (production) and memory/ (one
 * process, nothing kept). Both pass test/store/eventStoreContract.ts.
 *
 * Errors: a store that cannot be reached throws StoreUnavailable; a malformed
 * cursor throws InvalidInput. Nothing else is expected.
 *
 * Retention (optional): a COMPLETED or CANCELLED delivery is gone, for every
 * read, once retainFinishedForMs have passed since its last event (by the
 * store's clock); its keys and index entries are deleted with it.
 */
import type { Delivery, DeliveryState, DeliveryStatus, RecordedEvent } from "../domain/index.js";

/** What an earlier command with the same request_id produced. */
export interface PriorRequest {
  readonly version: number;
  readonly fingerprint: string;
}

export interface LoadedDelivery {
  readonly state: DeliveryState;
  /** Set when requestId was given and already recorded on this delivery. */
  readonly prior?: PriorRequest;
}

export interface AppendInput {
  /** The event (its version must be expectedVersion + 1; its requestId the client's, or "") and the state after it. */
  readonly record: RecordedEvent;
  readonly expectedVersion: number;
  /** The status the command was decided on (feed and index entries). */
  readonly previousStatus: DeliveryState["status"];
  /** Tells a retry of the same command from a different command reusing the request_id. */
  readonly fingerprint: string;
}

export type AppendResult =
  /** `change`: the feed entry the append added, as its partition's message announces it. */
  | { readonly outcome: "appended"; readonly change: FeedChange }
  | { readonly outcome: "conflict"; readonly currentVersion: number }
  | { readonly outcome: "duplicate"; readonly prior: PriorRequest };

export interface ListQuery {
  /** Current statuses to list; empty for every delivery. */
  readonly statuses: readonly DeliveryStatus[];
  /** By creation time (then id), oldest or newest first. */
  readonly order: "asc" | "desc";
  /** From a previous page of the same query. */
  readonly cursor?: string;
  readonly limit: number;
}

export interface DeliveryPage {
  /** Every one in a listed status when read; possibly fewer than the limit on any page. */
  readonly deliveries: readonly Delivery[];
  /** Absent on the last page. */
  readonly nextCursor?: string;
}

/** One entry of a partition's change feed: what a WatchDeliveries filter needs; the event itself is in the log. */
export interface FeedEntry {
  readonly partition: number;
  /** The entry's position in its partition's feed ("<ms>-<seq>"). */
  readonly id: string;
  readonly deliveryId: string;
  readonly version: number;
  /** "NONE" for a creation. */
  readonly before: DeliveryState["status"];
  readonly after: DeliveryStatus;
}

/** A feed entry as its append announces it: with the entry before it and the event and state. */
export interface FeedChange {
  /** The partition's entry before this one ("0-0" for the first). */
  readonly previous: string;
  readonly entry: FeedEntry;
  readonly record: RecordedEvent;
}

/** The change feed: one ordered feed per partition, entries trimmed by age. */
export interface ChangeFeed {
  partitions(): Promise<number>;
  /** The last position of every partition ("0-0" for an empty one), one round trip. */
  heads(): Promise<string[]>;
  /** Up to `limit` entries after a position, ascending. */
  read(partition: number, after: string, limit: number): Promise<FeedEntry[]>;
  /** Entries older than this are trimmed (by the time in their position). */
  readonly retentionMs: number;
}

export interface EventStore {
  readonly feed: ChangeFeed;
  /** Current state, and the outcome of the client's requestId if it was already used; one round trip. */
  load(deliveryId: string, requestId?: string): Promise<LoadedDelivery>;
  /**
   * Atomically: unless the stored version differs from expectedVersion or the
   * request_id is already recorded, append the event, record the request,
   * move the delivery between status indexes, add a feed entry, and publish
   * the update. Safe to resend after a lost reply (a private key dedupes it).
   */
  append(input: AppendInput): Promise<AppendResult>;
  /** The event at a version and the state after it. */
  readAt(deliveryId: string, version: number): Promise<RecordedEvent | undefined>;
  /**
   * Up to `limit` events with versions above afterVersion, ascending. `stateAt`, the state at
   * afterVersion when the caller holds it (the last record of its previous read), spares the
   * store reading the events before afterVersion again; a state of another version is ignored.
   */
  readAfter(deliveryId: string, afterVersion: number, limit: number, stateAt?: DeliveryState): Promise<readonly RecordedEvent[]>;
  /** A page of deliveries by status and creation order; each listed once per walk. */
  list(query: ListQuery): Promise<DeliveryPage>;
  /** Every delivery currently in one of the statuses (all when empty), in no particular order, a batch at a time. */
  scan(statuses: readonly DeliveryStatus[], batch: number): AsyncIterable<readonly Delivery[]>;
  /** Current versions (0 for unknown) of several deliveries in one round trip. */
  currentVersions(deliveryIds: readonly string[]): Promise<number[]>;
  /** Deletes finished deliveries whose retention is over (a no-op without retention); how many. */
  sweep(): Promise<number>;
  close(): Promise<void>;
}
