/**
 * WatchDeliveries: many deliveries on one stream, exact and resumable.
 *
 * The change feed is the truth. One tailer per partition per process,
 * shared by every local watcher, hands each change to every live watcher
 * whose filter it matches (encoded once per filter). The append publishes
 * each feed entry on the partition's channel with the entry before it and
 * the event and state: an entry that follows the tailer's position is handed
 * out as it came, without a read. Anything else — a lost or late message, a
 * re-subscription, the safety net every few seconds — makes the tailer read
 * the feed from its last position and the new entries' events from the
 * logs, so a lost message costs a delay, never a change.
 *
 * A watcher that is not live — replaying after a resume token or a
 * snapshot, or held back by a slow client — reads the feed from its own
 * positions, one batch at a time (bounded memory), and joins the tailers
 * once it has reached them.
 */
import { type Delivery, type DeliveryStatus, InvalidInput, type RecordedEvent, ResumeTokenExpired, StoreUnavailable } from "../domain/index.js";
import type { Logger } from "../logger.js";
import type { EventStore, FeedChange, FeedEntry } from "../store/eventStore.js";
import type { UpdateSource } from "../watch/updateSource.js";
import { decodeResumeToken, encodeResumeToken, type FeedPosition, isAfter } from "./resumeToken.js";

/** What the transport does with the messages (pre-encoded bytes). */
export interface FeedStream {
  /** false: the client is slow; write nothing more until onDrain fires. */
  write(message: Uint8Array): boolean;
  onDrain(listener: () => void): void;
  /** Ends with UNAVAILABLE (shutting down); the client resumes elsewhere with its last token. */
  abort(): void;
  /** Ends with an error status (e.g. OUT_OF_RANGE when a slow client fell out of retention). */
  fail(error: unknown): void;
}

export type FeedMessage =
  | { readonly kind: "snapshot"; readonly delivery: Delivery }
  | { readonly kind: "change"; readonly record: RecordedEvent; readonly previous: FeedEntry["before"] }
  | { readonly kind: "caughtUp" }
  | { readonly kind: "checkpoint" };

export interface FeedEncoder {
  /** The wire bytes of a message; resumeToken "" for snapshots. */
  encode(message: FeedMessage, resumeToken: string): Uint8Array;
}

export interface FeedWatchRequest {
  /** Empty: every delivery. */
  readonly statuses: readonly DeliveryStatus[];
  readonly resumeToken?: string;
  readonly includeSnapshot: boolean;
}

export interface FeedHubDeps {
  readonly store: EventStore;
  readonly source: UpdateSource;
  readonly encoder: FeedEncoder;
  readonly logger: Logger;
  readonly now?: () => number;
  /** A checkpoint after this long without a message to a watcher. */
  readonly checkpointMs?: number;
  /** How often every partition is read whatever Pub/Sub says. */
  readonly safetyNetIntervalMs?: number;
  /** Feed entries per read. */
  readonly batch?: number;
}

export interface FeedHandle {
  close(): void;
}

export interface FeedHub {
  /** Validates, then starts; rejects (InvalidInput, ResumeTokenExpired, StoreUnavailable) before anything is sent. */
  watch(request: FeedWatchRequest, stream: FeedStream): Promise<FeedHandle>;
  readonly watcherCount: number;
  /**
   * A change this process appended (the store acknowledged it): handed out as
   * its partition's message would be, without waiting for it.
   */
  appended(change: FeedChange): void;
  /** Sends due checkpoints now (the timer calls this; tests with a fake clock too). */
  tick(): void;
  close(): Promise<void>;
}

type Phase = "replaying" | "live" | "paused" | "ended";

interface Watcher {
  readonly filter: ReadonlySet<DeliveryStatus>;
  readonly statuses: readonly DeliveryStatus[];
  readonly filterKey: string;
  readonly stream: FeedStream;
  positions: string[];
  atEnd: boolean[];
  phase: Phase;
  caughtUp: boolean;
  /** Versions a snapshot showed: a change at or below is not sent again. Dropped once caught up. */
  shown: Map<string, number> | undefined;
  lastSentAt: number;
  replayRunning: boolean;
  /**
   * What a replay read but did not send because the client stopped reading:
   * the rest of one batch of one partition (bounded), sent first on 'drain'
   * so that a client reading in small steps costs no read per step.
   */
  held: { readonly partition: number; readonly entries: readonly FeedEntry[]; readonly records: readonly (RecordedEvent | undefined)[] } | undefined;
  /** A replay that found the store unavailable is tried again after this (doubling), not ended. */
  retryDelayMs: number;
  retryTimer: NodeJS.Timeout | undefined;
  /** Resolved on the next 'drain' (a snapshot waiting for a slow client). */
  drainWaiter: (() => void) | undefined;
}

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 2_000;

/** Whether a watcher's token would be the one already encoded (no string building per watcher). */
function samePosition(a: { positions: readonly string[]; atEnd: readonly boolean[] }, w: Watcher): boolean {
  for (let p = 0; p < a.positions.length; p++) if (a.positions[p] !== w.positions[p] || a.atEnd[p] !== w.atEnd[p]) return false;
  return true;
}

const matches = (w: Watcher, entry: FeedEntry) =>
  w.filter.size === 0 || w.filter.has(entry.after) || (entry.before !== "NONE" && w.filter.has(entry.before));

export function createFeedHub({
  store,
  source,
  encoder,
  logger,
  now = Date.now,
  checkpointMs = 5_000,
  safetyNetIntervalMs = 2_000,
  batch = 256,
}: FeedHubDeps): FeedHub {
  const watchers = new Set<Watcher>();
  let partitions = 0;
  /** Per partition, the tailers' position: every live watcher has had everything up to it. */
  let tail: string[] = [];
  let tailAtEnd: boolean[] = [];
  let started: Promise<void> | undefined;
  const reading: boolean[] = [];
  const again: boolean[] = [];
  let closed = false;
  let safetyTimer: NodeJS.Timeout | undefined;
  let checkpointTimer: NodeJS.Timeout | undefined;

  const tokenOf = (w: Watcher) => encodeResumeToken(w.statuses, { positions: w.positions, atEnd: w.atEnd, issuedAtMs: now() });

  /** Sends one message; false when the client stopped reading (the watcher is then paused). */
  function send(w: Watcher, bytes: Uint8Array): boolean {
    w.lastSentAt = now();
    if (w.stream.write(bytes)) return true;
    if (w.phase === "live" || w.phase === "replaying") w.phase = "paused";
    return false;
  }

  /** The events and states of feed entries, from the logs, one round trip; entries whose delivery is gone are left out. */
  async function recordsOf(entries: readonly FeedEntry[]): Promise<(RecordedEvent | undefined)[]> {
    return Promise.all(entries.map((e) => store.readAt(e.deliveryId, e.version)));
  }

  function start(): Promise<void> {
    started ??= (async () => {
      partitions = await store.feed.partitions();
      source.onPartition(announced);
      for (let p = 0; p < partitions; p++) await source.subscribePartition(p);
      source.onResubscribed(() => {
        for (let p = 0; p < partitions; p++) void readPartition(p);
      });
      // Subscribed first, then the heads: nothing after them can be missed.
      tail = await store.feed.heads();
      tailAtEnd = tail.map(() => true);
      safetyTimer = setInterval(() => {
        for (let p = 0; p < partitions; p++) void readPartition(p);
      }, safetyNetIntervalMs);
      safetyTimer.unref();
      checkpointTimer = setInterval(tick, Math.max(50, Math.min(checkpointMs / 4, 1_000)));
      checkpointTimer.unref();
    })().catch((error: unknown) => {
      started = undefined;
      throw error;
    });
    return started;
  }

  /**
   * A partition's message. The entry right after the tailer's position, with no read under way, is
   * handed out as it came (no round trip); one already read is dropped; after a gap, or without
   * the entry, the feed is read.
   */
  function announced(p: number, change?: FeedChange): void {
    // Before the heads are read: the tailer starts from them, after this entry.
    if (closed || tail.length === 0) return;
    if (change && !reading[p]) {
      if (change.previous === tail[p]) {
        dispatch(change.entry, change.record);
        tailAtEnd[p] = true;
        return;
      }
      if (!isAfter(change.entry.id, tail[p]!)) return;
    }
    void readPartition(p);
  }

  /** The tailer of one partition: reads to the end, then hands each change to every live watcher. */
  async function readPartition(p: number): Promise<void> {
    if (closed || tail.length === 0) return;
    if (reading[p]) {
      again[p] = true;
      return;
    }
    reading[p] = true;
    try {
      for (;;) {
        again[p] = false;
        const entries = await store.feed.read(p, tail[p]!, batch);
        if (entries.length > 0) {
          const records = await recordsOf(entries);
          tailAtEnd[p] = false;
          entries.forEach((entry, i) => dispatch(entry, records[i]));
        }
        if (entries.length < batch && !again[p]) {
          tailAtEnd[p] = true;
          break;
        }
      }
    } catch (error) {
      // The safety net tries again.
      logger.warn({ err: error, partition: p }, "change feed read failed");
    } finally {
      reading[p] = false;
    }
  }

  function dispatch(entry: FeedEntry, record: RecordedEvent | undefined): void {
    tail[entry.partition] = entry.id;
    // Encoded once per filter and position (the token): live watchers normally share both.
    const encoded = new Map<string, { positions: readonly string[]; atEnd: readonly boolean[]; bytes: Uint8Array }>();
    for (const w of watchers) {
      if (w.phase !== "live" || !isAfter(entry.id, w.positions[entry.partition]!)) continue;
      w.positions[entry.partition] = entry.id;
      w.atEnd[entry.partition] = false;
      if (!record || !matches(w, entry)) continue;
      let cached = encoded.get(w.filterKey);
      if (!cached || !samePosition(cached, w)) {
        cached = { positions: [...w.positions], atEnd: [...w.atEnd], bytes: encoder.encode({ kind: "change", record, previous: entry.before }, tokenOf(w)) };
        encoded.set(w.filterKey, cached);
      }
      send(w, cached.bytes);
    }
  }

  /** Reads the feed from the watcher's own positions until it reaches the tailers, then makes it live. */
  async function replay(w: Watcher): Promise<void> {
    if (w.replayRunning) return;
    w.replayRunning = true;
    try {
      for (;;) {
        if (w.phase === "ended" || w.phase === "paused") return;
        let sentAll = true;
        for (let p = 0; p < partitions && sentAll; p++) {
          while (sentAll) {
            let entries: readonly FeedEntry[];
            let records: readonly (RecordedEvent | undefined)[];
            const held = w.held;
            if (held && held.partition === p) {
              // The rest of a batch the client stopped reading: no read.
              ({ entries, records } = held);
              w.held = undefined;
            } else {
              if (!isAfter(tail[p]!, w.positions[p]!)) break;
              // Behind by more than the feed keeps: entries after the position may be gone. Never skip silently.
              if (!w.atEnd[p] && Number(w.positions[p]!.split("-")[0]) < now() - store.feed.retentionMs) {
                throw new ResumeTokenExpired(store.feed.retentionMs, "this watch fell further behind than the change feed keeps; watch again with include_snapshot");
              }
              entries = await store.feed.read(p, w.positions[p]!, batch);
              if ((w.phase as Phase) === "ended") return;
              if (entries.length === 0) break;
              records = await recordsOf(entries);
              if ((w.phase as Phase) === "ended") return;
            }
            for (let i = 0; i < entries.length; i++) {
              const entry = entries[i]!;
              const record = records[i];
              w.positions[p] = entry.id;
              w.atEnd[p] = false;
              const shownVersion = w.shown?.get(entry.deliveryId);
              if (!record || !matches(w, entry) || (shownVersion !== undefined && entry.version <= shownVersion)) continue;
              if (!send(w, encoder.encode({ kind: "change", record, previous: entry.before }, w.caughtUp ? tokenOf(w) : ""))) {
                // Sent, and the client's buffer is full: hold the rest of the batch until 'drain'.
                if (i + 1 < entries.length) w.held = { partition: p, entries: entries.slice(i + 1), records: records.slice(i + 1) };
                sentAll = false;
                break;
              }
            }
          }
        }
        if (!sentAll) return;
        // Level with every tailer (checked synchronously: nothing can slip in between).
        let level = true;
        for (let p = 0; p < partitions; p++) if (isAfter(tail[p]!, w.positions[p]!)) level = false;
        if (!level) continue;
        // A replay may have read past a tailer that is still fetching: never move a position back.
        for (let p = 0; p < partitions; p++) {
          if (isAfter(tail[p]!, w.positions[p]!)) w.positions[p] = tail[p]!;
          w.atEnd[p] = tailAtEnd[p]! && w.positions[p] === tail[p];
        }
        w.phase = "live";
        w.retryDelayMs = RETRY_FIRST_MS;
        if (!w.caughtUp) {
          w.caughtUp = true;
          w.shown = undefined;
          send(w, encoder.encode({ kind: "caughtUp" }, tokenOf(w)));
        }
        return;
      }
    } catch (error) {
      // Redis away: the stream stays open and the replay goes on from its positions once Redis is back.
      if (error instanceof StoreUnavailable && !closed && w.phase !== "ended") {
        retryLater(w);
        return;
      }
      end(w);
      w.stream.fail(error);
    } finally {
      w.replayRunning = false;
    }
  }

  function retryLater(w: Watcher): void {
    if (w.retryTimer !== undefined) return;
    const delayMs = w.retryDelayMs;
    w.retryDelayMs = Math.min(delayMs * 2, RETRY_MAX_MS);
    w.retryTimer = setTimeout(() => {
      w.retryTimer = undefined;
      if (w.phase === "replaying") void replay(w);
    }, delayMs);
    w.retryTimer.unref();
  }

  function end(w: Watcher): void {
    w.phase = "ended";
    w.held = undefined;
    clearTimeout(w.retryTimer);
    w.retryTimer = undefined;
    watchers.delete(w);
  }

  function tick(): void {
    const at = now();
    for (const w of watchers) {
      if (w.phase !== "live" || at - w.lastSentAt < checkpointMs) continue;
      for (let p = 0; p < partitions; p++) w.atEnd[p] = tailAtEnd[p]! && w.positions[p] === tail[p];
      send(w, encoder.encode({ kind: "checkpoint" }, tokenOf(w)));
    }
  }

  async function snapshot(w: Watcher, statuses: readonly DeliveryStatus[]): Promise<void> {
    w.shown = new Map();
    for await (const page of store.scan(statuses, 500)) {
      for (const delivery of page) {
        if (w.phase === "ended") return;
        // A delivery that moved between indexes during the scan can be met twice: once only.
        if (w.shown.has(delivery.id)) continue;
        w.shown.set(delivery.id, delivery.version);
        // A slow client during the snapshot: wait for it (the snapshot is not resumable).
        if (!w.stream.write(encoder.encode({ kind: "snapshot", delivery }, ""))) await new Promise<void>((resolve) => (w.drainWaiter = resolve));
      }
    }
  }

  return {
    get watcherCount() {
      return watchers.size;
    },
    appended(change) {
      // The partition's message of this entry, when it comes, is dropped as already handed out.
      announced(change.entry.partition, change);
    },
    tick,

    async watch({ statuses, resumeToken, includeSnapshot }, stream) {
      if (resumeToken && includeSnapshot) {
        throw new InvalidInput("include_snapshot cannot be combined with resume_token", "include_snapshot");
      }
      if (closed) throw new Error("the feed hub is closed");
      await start();
      let from: FeedPosition;
      if (resumeToken) {
        from = decodeResumeToken(resumeToken, statuses, partitions, store.feed.retentionMs, now());
      } else if (includeSnapshot) {
        // The position before the scan: changes made while it runs are replayed after it.
        from = { positions: await store.feed.heads(), atEnd: tail.map(() => true), issuedAtMs: now() };
      } else {
        from = { positions: [...tail], atEnd: [...tailAtEnd], issuedAtMs: now() };
      }
      const w: Watcher = {
        filter: new Set(statuses),
        statuses,
        filterKey: statuses.join(","),
        stream,
        positions: [...from.positions],
        atEnd: [...from.atEnd],
        phase: "replaying",
        caughtUp: false,
        shown: undefined,
        lastSentAt: now(),
        replayRunning: false,
        held: undefined,
        retryDelayMs: RETRY_FIRST_MS,
        retryTimer: undefined,
        drainWaiter: undefined,
      };
      watchers.add(w);
      // One listener per stream, for both the snapshot's waits and the paused watcher.
      stream.onDrain(() => {
        const waiter = w.drainWaiter;
        w.drainWaiter = undefined;
        waiter?.();
        if (w.phase !== "paused") return;
        w.phase = "replaying";
        void replay(w);
      });
      const handle = { close: () => end(w) };
      if (includeSnapshot) {
        void snapshot(w, statuses).then(
          () => replay(w),
          (error: unknown) => {
            end(w);
            stream.fail(error);
          },
        );
      } else {
        void replay(w);
      }
      return handle;
    },

    async close() {
      closed = true;
      clearInterval(safetyTimer);
      clearInterval(checkpointTimer);
      for (const w of [...watchers]) {
        end(w);
        w.stream.abort();
      }
    },
  };
}
