import {
  type Delivery,
  DeliveryNotFound,
  type DeliveryState,
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
  /**
   * Events read from the log per round trip while catching up. Also the most
   * a slow client's watcher holds (encoded) while it waits for 'drain'.
   */
  readonly catchUpBatch?: number;
  /** First delay before a catch-up that found the store unavailable is tried again (doubles up to the safety net's interval). */
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
  /** Aborts every watch (UNAVAILABLE) and stops the safety net. */
  close(): Promise<void>;
}

/** One update ready for the wire: encoded once, the same bytes for every watcher it goes to. */
interface Outgoing {
  readonly version: number;
  readonly terminal: boolean;
  readonly bytes: Uint8Array;
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
  /**
   * What was read from the log but not sent because the client stopped
   * reading: at most one batch. Sent on 'drain' before reading further, so a
   * client that reads in small steps does not cost one log read per step.
   */
  backlog: readonly Outgoing[] = [];
  /** The versions up to here were asked for (after_version); sending them from the log is no repair. */
  replayUntil = 0;
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

const NO_HANDLE: WatchHandle = { close() {} };

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
  catchUpBatch = 200,
  catchUpRetryMs = 100,
  observer,
}: WatchHubDeps): WatchHub {
  const channels = new Map<string, Channel>();
  let watcherCount = 0;

  const outgoing = (record: RecordedEvent): Outgoing => ({
    version: record.event.version,
    terminal: isTerminal(record.delivery.status),
    bytes: encoder.update(record),
  });

  // Watches of one delivery that start together share one state read and one
  // encoded snapshot (a burst of reconnecting watchers costs one read, not one
  // each). A watcher may only use a read that began after it joined: from its
  // join on, live updates reach it (or mark it for a log check), so nothing
  // between that read and its first live update can slip past.
  interface SharedLoad {
    readonly startedAt: number;
    readonly result: Promise<{ state: DeliveryState; snapshot: () => Uint8Array }>;
  }
  const loading = new Map<string, SharedLoad>();
  let clock = 0;
  function loadShared(deliveryId: string, joinedAt: number): SharedLoad["result"] {
    const current = loading.get(deliveryId);
    if (current && current.startedAt > joinedAt) return current.result;
    const startedAt = ++clock;
    const result = store.load(deliveryId).then(({ state }) => {
      let bytes: Uint8Array | undefined;
      return { state, snapshot: () => (bytes ??= encoder.snapshot(state as Delivery)) };
    });
    const entry = { startedAt, result };
    loading.set(deliveryId, entry);
    const forget = () => {
      if (loading.get(deliveryId) === entry) loading.delete(deliveryId);
    };
    result.then(forget, forget);
    return result;
  }

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
    w.backlog = [];
    retrying.delete(w);
    const channel = channels.get(w.deliveryId);
    if (!channel?.watchers.delete(w)) return;
    watcherCount--;
    if (channel.watchers.size === 0) {
      channels.delete(w.deliveryId);
      source.unsubscribe(w.deliveryId);
    }
  }

  /** Sends the update at cursor + 1; ends the watch after a terminal state; pauses the watcher when the client is slow. */
  function send(w: Watcher, update: Outgoing): void {
    const accepted = w.stream.write(update.bytes);
    w.cursor = update.version;
    if (update.terminal) {
      leave(w);
      w.stream.end();
      return;
    }
    if (!accepted) w.paused = true;
  }

  // Catch-ups that found the store unavailable, tried again with backoff
  // rather than only at the next re-subscription or safety-net round.
  const retrying = new Set<Watcher>();
  let retryTimer: NodeJS.Timeout | undefined;
  let retryDelayMs = catchUpRetryMs;
  function retryLater(w: Watcher): void {
    retrying.add(w);
    if (retryTimer) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      retryDelayMs = Math.min(retryDelayMs * 2, safetyNetIntervalMs);
      const due = [...retrying];
      retrying.clear();
      for (const r of due) void catchUp(r);
    }, retryDelayMs);
    retryTimer.unref();
  }

  /** Reads from the log until the watcher is level with it (or paused, or gone). */
  async function catchUp(w: Watcher): Promise<void> {
    if (w.starting || w.closed) return;
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
          let batch = w.backlog;
          w.backlog = [];
          const fromLog = batch.length === 0;
          if (fromLog) batch = (await store.readAfter(w.deliveryId, w.cursor, catchUpBatch)).map(outgoing);
          let next = 0;
          let repaired = 0;
          while (next < batch.length && !w.closed && !w.paused) {
            const update = batch[next++]!;
            if (update.version <= w.cursor) continue;
            if (update.version !== w.cursor + 1) {
              // The log is gap-free by construction; a hole means it was damaged or trimmed.
              logger.error({ deliveryId: w.deliveryId, cursor: w.cursor, found: update.version }, "gap in the log; watcher stopped");
              return;
            }
            if (update.version > w.replayUntil) repaired++;
            send(w, update);
          }
          if (repaired > 0) observer?.repairedFromLog(repaired);
          if (w.closed) return;
          if (w.paused) {
            w.backlog = batch.slice(next);
            return;
          }
          if (fromLog && batch.length < catchUpBatch) break;
        }
      } while (w.rerun);
      retryDelayMs = catchUpRetryMs;
    } catch (error) {
      if (error instanceof StoreUnavailable) retryLater(w);
      else logger.error({ err: error, deliveryId: w.deliveryId }, "catch-up failed; the safety net retries");
    } finally {
      w.catchingUp = false;
    }
  }

  /** Looks at the log for a watcher that may be behind; one still starting looks once it has started. */
  function checkLog(w: Watcher): void {
    if (w.starting) w.rerun = true;
    else void catchUp(w);
  }

  source.onUpdate((deliveryId, record) => {
    const channel = channels.get(deliveryId);
    if (!channel) return;
    observer?.liveUpdate();
    const { version } = record.event;
    // Encoded once, the same bytes for every local watcher.
    let update: Outgoing | undefined;
    for (const w of channel.watchers) {
      if (w.paused || version <= w.cursor) continue;
      if (w.starting || w.catchingUp) w.rerun = true;
      else if (version === w.cursor + 1) send(w, (update ??= outgoing(record)));
      else void catchUp(w);
    }
  });

  function checkAll(): void {
    for (const channel of channels.values()) for (const w of channel.watchers) checkLog(w);
  }
  source.onResubscribed(checkAll);

  // A subscriber can stop receiving without noticing; one pipelined read of
  // every watched delivery's version finds watchers left behind.
  const safetyNet = setInterval(() => {
    const ids = [...channels.keys()];
    if (ids.length === 0) return;
    store.currentVersions(ids).then(
      (versions) =>
        ids.forEach((id, i) => {
          const current = versions[i] ?? 0;
          for (const w of channels.get(id)?.watchers ?? []) if (w.cursor < current) checkLog(w);
        }),
      (error: unknown) => logger.debug({ err: error }, "safety net skipped a round"),
    );
  }, safetyNetIntervalMs);
  safetyNet.unref();

  return {
    async watch(deliveryId, afterVersion, stream) {
      const w = new Watcher(deliveryId, stream);
      try {
        const joinedAt = ++clock;
        await join(w);
        const { state, snapshot } = await loadShared(deliveryId, joinedAt);
        // The hub closed meanwhile and has already aborted this stream.
        if (w.closed) return NO_HANDLE;
        if (state.status === "NONE") throw new DeliveryNotFound(deliveryId);
        w.replayUntil = state.version;
        if (afterVersion === undefined) {
          w.cursor = state.version;
          const accepted = stream.write(snapshot());
          if (isTerminal(state.status)) {
            leave(w);
            stream.end();
            return NO_HANDLE;
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
            return NO_HANDLE;
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
    watcherStates(deliveryId) {
      return [...(channels.get(deliveryId)?.watchers ?? [])].map(({ cursor, paused }) => ({ cursor, paused }));
    },
    async close() {
      clearInterval(safetyNet);
      clearTimeout(retryTimer);
      for (const channel of [...channels.values()]) {
        for (const w of [...channel.watchers]) {
          leave(w);
          w.stream.abort();
        }
      }
    },
  };
}
