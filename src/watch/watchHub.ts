import {
  type Delivery,
  DeliveryNotFound,
  InvalidInput,
  isTerminal,
  type RecordedEvent,
  StoreUnavailable,
} from "../domain/index.js";
import type { Logger } from "../logger.js";
import type { EventStore } from "../store/eventStore.js";
import type { UpdateSource } from "./updateSource.js";

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
  /** Events read from the log per round trip while catching up. */
  readonly catchUpBatch?: number;
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
  /** Aborts every watch (UNAVAILABLE) and stops the safety net. */
  close(): Promise<void>;
}

class Watcher {
  /** The last version sent. */
  cursor = 0;
  starting = true;
  paused = false;
  catchingUp = false;
  /** Something newer than the cursor arrived while busy: look at the log again. */
  rerun = false;
  closed = false;
  readonly deliveryId: string;
  readonly stream: WatchStream;
  constructor(deliveryId: string, stream: WatchStream) {
    this.deliveryId = deliveryId;
    this.stream = stream;
  }
}

interface Channel {
  readonly watchers: Set<Watcher>;
  readonly subscribed: Promise<void>;
}

/**
 * Exact, ordered, gap-free fanout on top of at-most-once Pub/Sub. The log is
 * the truth: each watcher keeps a cursor; a live update at cursor + 1 is sent,
 * older ones are dropped, newer ones mean a gap and are read from the log.
 */
export function createWatchHub({
  store,
  source,
  encoder,
  logger,
  safetyNetIntervalMs = 3_000,
  catchUpBatch = 500,
}: WatchHubDeps): WatchHub {
  const channels = new Map<string, Channel>();
  let watcherCount = 0;

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

  function leave(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    const channel = channels.get(w.deliveryId);
    if (!channel?.watchers.delete(w)) return;
    watcherCount--;
    if (channel.watchers.size === 0) {
      channels.delete(w.deliveryId);
      source.unsubscribe(w.deliveryId);
    }
  }

  /** Sends one record if it is the next version; false when the watcher cannot take more now. */
  function deliver(w: Watcher, record: RecordedEvent, bytes?: Uint8Array): boolean {
    const { version } = record.event;
    if (version <= w.cursor) return true;
    if (version !== w.cursor + 1) {
      w.rerun = true;
      return false;
    }
    const accepted = w.stream.write(bytes ?? encoder.update(record));
    w.cursor = version;
    if (isTerminal(record.delivery.status)) {
      leave(w);
      w.stream.end();
      return false;
    }
    if (!accepted) w.paused = true;
    return accepted;
  }

  /** Reads from the log until the watcher is level with it (or paused, or gone). */
  async function catchUp(w: Watcher): Promise<void> {
    if (w.catchingUp) {
      w.rerun = true;
      return;
    }
    w.catchingUp = true;
    try {
      do {
        w.rerun = false;
        for (;;) {
          if (w.closed || w.paused) return;
          const records = await store.readAfter(w.deliveryId, w.cursor, catchUpBatch);
          let more = true;
          for (const record of records) {
            if (w.closed || w.paused) return;
            more = deliver(w, record);
            if (!more) break;
          }
          if (!more || records.length < catchUpBatch) break;
        }
      } while (w.rerun && !w.closed && !w.paused);
    } catch (error) {
      // The safety net or the next re-subscription retries.
      if (!(error instanceof StoreUnavailable)) logger.error({ err: error, deliveryId: w.deliveryId }, "catch-up failed");
    } finally {
      w.catchingUp = false;
    }
  }

  source.onUpdate((deliveryId, record) => {
    const channel = channels.get(deliveryId);
    if (!channel) return;
    // Encoded once, the same bytes for every local watcher.
    let bytes: Uint8Array | undefined;
    for (const w of channel.watchers) {
      if (w.paused || record.event.version <= w.cursor) continue;
      if (w.starting || w.catchingUp) {
        w.rerun = true;
        continue;
      }
      if (record.event.version === w.cursor + 1) {
        bytes ??= encoder.update(record);
        deliver(w, record, bytes);
      } else {
        void catchUp(w);
      }
    }
  });

  function catchUpAll(): void {
    for (const channel of channels.values()) for (const w of channel.watchers) if (!w.starting) void catchUp(w);
  }
  source.onResubscribed(catchUpAll);

  // A subscriber can stop receiving without noticing; one pipelined read of
  // every watched delivery's version finds watchers left behind.
  const safetyNet = setInterval(() => {
    const ids = [...channels.keys()];
    if (ids.length === 0) return;
    store.currentVersions(ids).then(
      (versions) =>
        ids.forEach((id, i) => {
          const current = versions[i] ?? 0;
          for (const w of channels.get(id)?.watchers ?? []) if (!w.starting && w.cursor < current) void catchUp(w);
        }),
      (error: unknown) => logger.debug({ err: error }, "safety net skipped a round"),
    );
  }, safetyNetIntervalMs);
  safetyNet.unref();

  return {
    async watch(deliveryId, afterVersion, stream) {
      const w = new Watcher(deliveryId, stream);
      try {
        await join(w);
        const { state } = await store.load(deliveryId);
        if (state.status === "NONE") throw new DeliveryNotFound(deliveryId);
        if (afterVersion === undefined) {
          w.cursor = state.version;
          const accepted = stream.write(encoder.snapshot(state));
          if (isTerminal(state.status)) {
            leave(w);
            stream.end();
            return { close() {} };
          }
          if (!accepted) w.paused = true;
        } else {
          if (afterVersion > state.version) {
            throw new InvalidInput(`after_version ${afterVersion} is beyond the current version ${state.version} of delivery ${deliveryId}`);
          }
          w.cursor = afterVersion;
          w.rerun = true;
          if (isTerminal(state.status) && afterVersion === state.version) {
            leave(w);
            stream.end();
            return { close() {} };
          }
        }
      } catch (error) {
        leave(w);
        throw error;
      }
      stream.onDrain(() => {
        if (w.closed) return;
        w.paused = false;
        void catchUp(w);
      });
      w.starting = false;
      if (w.rerun) void catchUp(w);
      return { close: () => leave(w) };
    },
    get watcherCount() {
      return watcherCount;
    },
    get watchedDeliveries() {
      return channels.size;
    },
    async close() {
      clearInterval(safetyNet);
      for (const channel of [...channels.values()]) {
        for (const w of [...channel.watchers]) {
          leave(w);
          w.stream.abort();
        }
      }
    },
  };
}
