import { DeliveryNotFound, type DeliveryState, InvalidInput, isTerminal, type RecordedEvent, StoreUnavailable } from "../domain/index.js";
import type { Logger } from "../logger.js";
import type { EventStore } from "../store/eventStore.js";
import type { StartupRead } from "./startupReads.js";
import type { WatchHandle, WatchStream } from "./watchHub.js";

/** One update ready for the wire: encoded once, the same bytes for every watcher it goes to. */
export interface Outgoing {
  readonly version: number;
  readonly terminal: boolean;
  readonly bytes: Uint8Array;
}

/** What all the watchers of a hub share: one object, so that a watcher holds no closures of its own. */
export interface WatcherContext {
  readonly store: Pick<EventStore, "readAfter">;
  readonly logger: Logger;
  /** Events read from the log per round trip; also the most a paused watcher holds. */
  readonly catchUpBatch: number;
  /** First delay before a catch-up that found the store unavailable is tried again. */
  readonly catchUpRetryMs: number;
  /** The delay doubles up to this. */
  readonly catchUpRetryMaxMs: number;
  outgoing(record: RecordedEvent): Outgoing;
  /** Events sent from the log that Pub/Sub should have brought. */
  repaired(events: number): void;
  /** The watcher has ended: take it off its channel. */
  left(watcher: Watcher): void;
}

/**
 * Where a watcher stands.
 * - starting: on its channel (live updates reach it), its first read under way; nothing sent yet.
 * - startingBehind: starting, and it must read the log once started (an update came, a loss was
 *   reported, or it replays after after_version).
 * - live: the next live update is sent as it comes.
 * - catchingUp: reading the log after its cursor, one batch per round trip.
 * - catchingUpAgain: catching up, and something came meanwhile: one more pass once level.
 * - paused: its client is slow; nothing is sent and at most one batch is held until 'drain'.
 * - ended: off its channel; its stream ended with OK or UNAVAILABLE, or was left to its caller.
 */
export type WatcherPhase = "starting" | "startingBehind" | "live" | "catchingUp" | "catchingUpAgain" | "paused" | "ended";

/**
 * What moves a watcher.
 * - behind: the log may hold versions past the cursor (a gap in live updates, a re-subscription,
 *   the safety net, a retry).
 * - started: the first message is out, or the replay position is set.
 * - refused: write() returned false.
 * - drained: the client reads again.
 * - level: a catch-up pass read to the end of the log.
 * - failed: a catch-up pass stopped on an error.
 * - ended: a terminal state was sent, the client went away, or the hub is closing.
 */
export type WatcherEvent = "behind" | "started" | "refused" | "drained" | "level" | "failed" | "ended";

/**
 * Every transition; an event a phase has no entry for leaves it as it is. A
 * slow client's watcher stays paused whatever happens until 'drain', then
 * reads the log: what it skipped is there.
 */
const NEXT: { readonly [P in WatcherPhase]: { readonly [E in WatcherEvent]?: WatcherPhase } } = {
  starting: { behind: "startingBehind", started: "live", refused: "paused", ended: "ended" },
  startingBehind: { started: "catchingUp", refused: "paused", ended: "ended" },
  live: { behind: "catchingUp", drained: "catchingUp", refused: "paused", ended: "ended" },
  catchingUp: { behind: "catchingUpAgain", drained: "catchingUpAgain", level: "live", failed: "live", refused: "paused", ended: "ended" },
  catchingUpAgain: { level: "catchingUp", failed: "live", refused: "paused", ended: "ended" },
  paused: { drained: "catchingUp", ended: "ended" },
  ended: {},
};

/** The next phase: the whole state machine, pure. */
export function nextPhase(phase: WatcherPhase, event: WatcherEvent): WatcherPhase {
  return NEXT[phase][event] ?? phase;
}

/** How an ended watch leaves its stream: ended with OK, ended with UNAVAILABLE, or to its caller. */
export type Ending = "ok" | "unavailable" | "untouched";

const NOTHING_HELD: readonly Outgoing[] = [];

/**
 * One watch: its cursor (the last version sent) and its phase. The hub hands
 * it live updates at cursor + 1 while it is live and tells it when it may be
 * behind; everything else, the catch-up from the log, the slow client and
 * the end, happens here.
 */
export class Watcher implements WatchHandle {
  private phase: WatcherPhase = "starting";
  private sent = 0;
  /** The versions up to here were asked for (after_version); sending them from the log is no repair. */
  private replayUntil = 0;
  /**
   * What was read from the log but not sent because the client stopped
   * reading: at most one batch, held only while paused. Sent on 'drain'
   * before reading further, so a client that reads in small steps does not
   * cost one log read per step.
   */
  private backlog = NOTHING_HELD;
  /**
   * The state after the last record read from the log, kept while a catch-up
   * is unfinished (across pauses): the next read folds on from it instead of
   * reading the log from version 1 again.
   */
  private readState: DeliveryState | undefined;
  /** This watcher's own backoff: another watcher's success says nothing about its reads. */
  private retryDelayMs: number;
  private retryTimer: NodeJS.Timeout | undefined;
  readonly deliveryId: string;
  private readonly stream: WatchStream;
  private readonly context: WatcherContext;

  constructor(deliveryId: string, stream: WatchStream, context: WatcherContext) {
    this.deliveryId = deliveryId;
    this.stream = stream;
    this.context = context;
    this.retryDelayMs = context.catchUpRetryMs;
  }

  get state(): WatcherPhase {
    return this.phase;
  }

  /** The last version sent. */
  get cursor(): number {
    return this.sent;
  }

  /**
   * Sends the first message from the state read at the start (the snapshot),
   * or sets the cursor at after_version and catches up from there. Throws
   * DeliveryNotFound or InvalidInput before anything is sent.
   */
  start({ state, snapshot }: StartupRead, afterVersion: number | undefined): void {
    if (state.status === "NONE") throw new DeliveryNotFound(this.deliveryId);
    this.replayUntil = state.version;
    if (afterVersion === undefined) {
      this.send({ version: state.version, terminal: isTerminal(state.status), bytes: snapshot() });
    } else {
      if (afterVersion > state.version) {
        const id = this.deliveryId;
        throw new InvalidInput(`after_version ${afterVersion} is beyond the current version ${state.version} of delivery ${id}`, "after_version");
      }
      this.sent = afterVersion;
      // Already past its terminal state: nothing will ever come.
      if (isTerminal(state.status) && afterVersion === state.version) this.end("ok");
      else this.on("behind");
    }
    if (this.phase === "ended") return;
    this.stream.onDrain(() => this.on("drained"));
    this.on("started");
  }

  /**
   * Writes the update at cursor + 1 (the hub's live updates go only to a
   * live watcher); ends the watch after a terminal state; pauses when the
   * client is slow.
   */
  send(update: Outgoing): void {
    const accepted = this.stream.write(update.bytes);
    this.sent = update.version;
    if (update.terminal) this.end("ok");
    else if (!accepted) this.on("refused");
  }

  /** The log may hold versions past the cursor. */
  behind(): void {
    this.on("behind");
  }

  /** The client went away: unregister at once. Idempotent. */
  close(): void {
    this.end("untouched");
  }

  /** Ends the watch, once: off its channel, nothing held, no retry, then the stream as `ending` says. */
  end(ending: Ending): void {
    if (this.phase === "ended") return;
    this.on("ended");
    if (ending === "ok") this.stream.end();
    else if (ending === "unavailable") this.stream.abort();
  }

  /** The one place the phase changes, with what entering a phase starts. */
  private on(event: WatcherEvent): void {
    const from = this.phase;
    const to = nextPhase(from, event);
    if (to === from) return;
    this.phase = to;
    if (to === "ended") {
      this.backlog = NOTHING_HELD;
      this.readState = undefined;
      this.cancelRetry();
      this.context.left(this);
    } else if (to === "catchingUp" && from !== "catchingUpAgain") {
      // From catchingUpAgain, the pass under way goes on by itself.
      void this.catchUp();
    }
  }

  /** catchingUp or catchingUpAgain: a pass over the log is under way. */
  private get readingLog(): boolean {
    return this.phase === "catchingUp" || this.phase === "catchingUpAgain";
  }

  /** Reads from the log until level with it (or paused, or ended): one pass at a time, entered only through on(). */
  private async catchUp(): Promise<void> {
    const { store, catchUpBatch, outgoing, logger } = this.context;
    try {
      for (;;) {
        // The slow client's held batch goes first; then the log, from the cursor on.
        let batch = this.backlog;
        this.backlog = NOTHING_HELD;
        const fromLog = batch.length === 0;
        if (fromLog) {
          const records = await store.readAfter(this.deliveryId, this.sent, catchUpBatch, this.readState);
          this.readState = records.at(-1)?.delivery ?? this.readState;
          batch = records.map(outgoing);
          this.storeAnswered();
        }
        let next = 0;
        let repaired = 0;
        while (next < batch.length && this.readingLog) {
          const update = batch[next++]!;
          if (update.version <= this.sent) continue;
          if (update.version !== this.sent + 1) {
            // The log is gap-free by construction; a hole means it was damaged or trimmed.
            logger.error({ deliveryId: this.deliveryId, cursor: this.sent, found: update.version }, "gap in the log; watcher stopped");
            this.on("failed");
            break;
          }
          if (update.version > this.replayUntil) repaired++;
          this.send(update);
        }
        if (repaired > 0) this.context.repaired(repaired);
        // The client stopped reading: hold the rest of the batch until 'drain' (the log has everything after it).
        if (this.phase === "paused") this.backlog = batch.slice(next);
        if (!this.readingLog) return;
        if (!fromLog || batch.length === catchUpBatch) continue;
        this.readState = undefined;
        this.on("level");
        if (this.phase !== "catchingUp") return;
      }
    } catch (error) {
      if (this.phase === "ended") return;
      this.on("failed");
      if (error instanceof StoreUnavailable) this.retryLater();
      else logger.error({ err: error, deliveryId: this.deliveryId }, "catch-up failed; the safety net retries");
    }
  }

  /** Tries the log again after this watcher's own delay, doubled each time up to the cap. */
  private retryLater(): void {
    if (this.retryTimer !== undefined) return;
    const delayMs = this.retryDelayMs;
    this.retryDelayMs = Math.min(delayMs * 2, this.context.catchUpRetryMaxMs);
    this.retryTimer = setTimeout(Watcher.retry, delayMs, this);
    this.retryTimer.unref();
  }

  private static retry(watcher: Watcher): void {
    watcher.retryTimer = undefined;
    watcher.on("behind");
  }

  /** The store answered this watcher: its backoff starts over, and a retry still waiting has nothing left to do. */
  private storeAnswered(): void {
    this.retryDelayMs = this.context.catchUpRetryMs;
    this.cancelRetry();
  }

  private cancelRetry(): void {
    if (this.retryTimer === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }
}
