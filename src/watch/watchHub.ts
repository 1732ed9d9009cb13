import { type Delivery, isTerminal, type RecordedEvent } from "../domain/index.js";
import type { Logger } from "../logger.js";
import type { EventStore } from "../store/eventStore.js";
import { createStartupReads } from "./startupReads.js";
import type { UpdateSource } from "./updateSource.js";
import { type Outgoing, Watcher, type WatcherContext } from "./watcher.js";

/** The transport side of one watch. */
export interface WatchStream {
  /** false: the client is slow; write nothing more until onDrain fires. */
  write(message: Uint8Array): boolean;
  onDrain(listener: () => void): void;
  /** Ends with OK (the delivery reached a terminal status). */
  end(): void;
  /** Ends with UNAVAILABLE (this process is going away); the client resumes elsewhere. */
  abort(): void;
}

export interface WatchEncoder {
  /** The first message of a watch without after_version: the state alone. */
  snapshot(delivery: Delivery): Uint8Array;
  update(record: RecordedEvent): Uint8Array;
}

export interface WatchHubDeps {
  readonly store: EventStore;
  readonly source: UpdateSource;
  readonly encoder: WatchEncoder;
  readonly logger: Logger;
  /** How often the versions of all watched deliveries are checked against the cursors. */
  readonly safetyNetIntervalMs?: number;
  /**
   * Events read from the log per round trip while catching up. Also the most
   * a slow client's watcher holds (encoded) while it waits for 'drain'.
   */
  readonly catchUpBatch?: number;
  /**
   * First delay before a catch-up that found the store unavailable is tried
   * again. Each watcher backs off on its own: the delay doubles up to the
   * safety net's interval and starts over after that watcher's next read.
   */
  readonly catchUpRetryMs?: number;
  readonly observer?: WatchHubObserver;
}

/** What the hub reports for metrics. */
export interface WatchHubObserver {
  /** One update received from the source for a delivery watched here (once, whatever the number of its watchers). */
  liveUpdate(): void;
  /**
   * Events sent from the log where Pub/Sub should have brought them (lost,
   * late, or skipped while the client was slow); the replay a watch asks for
   * with after_version is not counted.
   */
  repairedFromLog(events: number): void;
}

export interface WatcherState {
  readonly cursor: number;
  readonly paused: boolean;
}

export interface WatchHandle {
  /** The client went away: unregister at once. Idempotent. */
  close(): void;
}

export interface WatchHub {
  /**
   * Starts a watch: subscribes (acknowledged), then sends the snapshot or the
   * log after afterVersion, then live updates. Rejects with DeliveryNotFound,
   * InvalidInput or StoreUnavailable before anything is sent.
   */
  watch(deliveryId: string, afterVersion: number | undefined, stream: WatchStream): Promise<WatchHandle>;
  readonly watcherCount: number;
  /** Deliveries with at least one local watcher (each is one subscribed channel). */
  readonly watchedDeliveries: number;
  /** Where each local watcher of a delivery stands: the last version it was sent, and whether it is held back by a slow client. */
  watcherStates(deliveryId: string): readonly WatcherState[];
  /**
   * An event this process appended (the store acknowledged it): its local
   * watchers get it now instead of after Pub/Sub's round trip; whichever copy
   * comes second is dropped like any repeat.
   */
  appended(record: RecordedEvent): void;
  /** Aborts every watch (UNAVAILABLE) and stops the safety net. */
  close(): Promise<void>;
}

/** The local watchers of one delivery: one subscribed channel. */
interface Channel {
  readonly watchers: Set<Watcher>;
  /** Acknowledged: nothing published after it can be missed. */
  readonly subscribed: Promise<void>;
}

/**
 * Exact, ordered, gap-free fanout on top of at-most-once Pub/Sub. The log is
 * the truth: each watcher keeps a cursor; a live update at cursor + 1 is sent,
 * older ones are dropped, newer ones mean a gap and are read from the log.
 * The hub keeps the channels and routes to watchers; each watcher's phases,
 * catch-up and end are its own (watcher.ts).
 */
export function createWatchHub({
  store,
  source,
  encoder,
  logger,
  safetyNetIntervalMs = 3_000,
  catchUpBatch = 200,
  catchUpRetryMs = 100,
  observer,
}: WatchHubDeps): WatchHub {
  const channels = new Map<string, Channel>();
  let watcherCount = 0;
  const startupReads = createStartupReads(store, (delivery) => encoder.snapshot(delivery));

  const outgoing = (record: RecordedEvent): Outgoing => ({
    version: record.event.version,
    terminal: isTerminal(record.delivery.status),
    bytes: encoder.update(record),
  });

  const context: WatcherContext = {
    store,
    logger,
    catchUpBatch,
    catchUpRetryMs,
    catchUpRetryMaxMs: safetyNetIntervalMs,
    outgoing,
    repaired: (events) => observer?.repairedFromLog(events),
    left: leave,
  };

  /** Subscribes on the first local watcher of a delivery; resolves once the subscription is acknowledged. */
  function join(w: Watcher): Promise<void> {
    let channel = channels.get(w.deliveryId);
    if (!channel) {
      channel = { watchers: new Set(), subscribed: source.subscribe(w.deliveryId) };
      channels.set(w.deliveryId, channel);
    }
    channel.watchers.add(w);
    watcherCount++;
    return channel.subscribed;
  }

  /** Called once by each watcher as it ends; unsubscribes after the last local watcher. */
  function leave(w: Watcher): void {
    const channel = channels.get(w.deliveryId);
    if (!channel?.watchers.delete(w)) return;
    watcherCount--;
    if (channel.watchers.size === 0) {
      channels.delete(w.deliveryId);
      source.unsubscribe(w.deliveryId);
    }
  }

  /** A live update, from Pub/Sub or from this process's own append. */
  function route(channel: Channel, record: RecordedEvent): void {
    const { version } = record.event;
    // Encoded once, the same bytes for every local watcher. A Set may lose
    // members while it is iterated (a watcher ending on a terminal state).
    let update: Outgoing | undefined;
    for (const w of channel.watchers) {
      if (version <= w.cursor) continue;
      if (version === w.cursor + 1 && w.state === "live") w.send((update ??= outgoing(record)));
      // A gap, or a watcher busy starting or catching up: the log has it. A paused one reads the log on 'drain'.
      else w.behind();
    }
  }

  source.onUpdate((deliveryId, record) => {
    const channel = channels.get(deliveryId);
    if (!channel) return;
    observer?.liveUpdate();
    route(channel, record);
  });

  // Messages published while the subscription was lost are gone: every watcher looks at the log.
  source.onResubscribed(() => {
    for (const channel of channels.values()) for (const w of channel.watchers) w.behind();
  });

  // A subscriber can stop receiving without noticing; one pipelined read of
  // every watched delivery's version finds watchers left behind.
  const safetyNet = setInterval(() => {
    const ids = [...channels.keys()];
    if (ids.length === 0) return;
    store.currentVersions(ids).then(
      (versions) =>
        ids.forEach((id, i) => {
          const current = versions[i] ?? 0;
          for (const w of channels.get(id)?.watchers ?? []) if (w.cursor < current) w.behind();
        }),
      (error: unknown) => logger.debug({ err: error }, "safety net skipped a round"),
    );
  }, safetyNetIntervalMs);
  safetyNet.unref();

  return {
    appended(record) {
      const channel = channels.get(record.event.deliveryId);
      if (channel) route(channel, record);
    },
    async watch(deliveryId, afterVersion, stream) {
      const w = new Watcher(deliveryId, stream, context);
      try {
        const ticket = startupReads.joined();
        await join(w);
        const read = await startupReads.read(deliveryId, ticket);
        // The hub closed meanwhile and has already aborted this stream.
        if (w.state === "ended") return w;
        w.start(read, afterVersion);
      } catch (error) {
        w.end("untouched");
        throw error;
      }
      return w;
    },
    get watcherCount() {
      return watcherCount;
    },
    get watchedDeliveries() {
      return channels.size;
    },
    watcherStates(deliveryId) {
      return [...(channels.get(deliveryId)?.watchers ?? [])].map((w) => ({ cursor: w.cursor, paused: w.state === "paused" }));
    },
    async close() {
      clearInterval(safetyNet);
      for (const channel of [...channels.values()]) for (const w of [...channel.watchers]) w.end("unavailable");
    },
  };
}
