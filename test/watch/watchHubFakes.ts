/**
 * Fakes for driving the hub step by step: a source whose deliveries and
 * re-subscriptions the test decides, a stream with a small buffer that the
 * test reads, and a store whose calls can be held or failed.
 */
import { StoreUnavailable, type RecordedEvent } from "../../src/domain/index.js";
import { WatchDeliveryResponse } from "../../src/gen/delivery/v1/delivery.js";
import type { EventStore } from "../../src/store/eventStore.js";
import type { UpdateSource } from "../../src/watch/updateSource.js";
import type { WatchStream } from "../../src/watch/watchHub.js";

export interface Deferred<T = void> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export interface FakeSource extends UpdateSource {
  readonly subscribed: Set<string>;
  deliver(record: RecordedEvent): void;
  resubscribed(): void;
}

/** Delivers only what the test hands it: anything else is "lost". */
export function fakeSource(): FakeSource {
  const subscribed = new Set<string>();
  let onUpdate: (id: string, record: RecordedEvent) => void = () => {};
  let onResubscribed: () => void = () => {};
  return {
    subscribed,
    deliver: (record) => onUpdate(record.event.deliveryId, record),
    resubscribed: () => onResubscribed(),
    async subscribe(id) {
      subscribed.add(id);
    },
    unsubscribe(id) {
      subscribed.delete(id);
    },
    onUpdate(listener) {
      onUpdate = listener;
    },
    onResubscribed(listener) {
      onResubscribed = listener;
    },
    // WatchDeliveries' wake-ups; the WatchDelivery hub never asks for them.
    async subscribePartition() {},
    onPartition() {},
    async close() {},
  };
}

export interface FakeStream extends WatchStream {
  /** Versions written (a snapshot counts with its delivery's version). */
  readonly versions: number[];
  readonly snapshots: number;
  readonly ended: boolean;
  readonly aborted: boolean;
  /** write() has returned false and the client has not read since. */
  readonly full: boolean;
  /** The client reads everything buffered; 'drain' follows asynchronously, as in Node streams. */
  read(): void;
}

/** A stream whose write() returns false once `capacity` messages wait unread. */
export function fakeStream(capacity = Number.POSITIVE_INFINITY): FakeStream {
  const versions: number[] = [];
  let snapshots = 0;
  let unread = 0;
  let full = false;
  let ended = false;
  let aborted = false;
  const drainListeners: (() => void)[] = [];
  return {
    versions,
    get snapshots() {
      return snapshots;
    },
    get ended() {
      return ended;
    },
    get aborted() {
      return aborted;
    },
    get full() {
      return full;
    },
    write(bytes) {
      if (ended || aborted) throw new Error("write after the end of the stream");
      const message = WatchDeliveryResponse.decode(bytes);
      if (!message.event) snapshots++;
      versions.push(Number(message.event?.version ?? message.delivery?.version));
      unread++;
      if (unread >= capacity) full = true;
      return !full;
    },
    onDrain(listener) {
      drainListeners.push(listener);
    },
    end() {
      ended = true;
    },
    abort() {
      aborted = true;
    },
    read() {
      unread = 0;
      if (!full) return;
      full = false;
      setImmediate(() => drainListeners.forEach((l) => l()));
    },
  };
}

export interface ControlledStore extends EventStore {
  readonly readAfterCalls: number;
  /** Each readAfter's afterVersion and the version of the state it was handed (undefined: none). */
  readonly readAfterHints: readonly (readonly [number, number | undefined])[];
  readonly loadCalls: number;
  /** While set, load() waits for it after reading (the state it returns is the one read before). */
  holdLoad: Promise<void> | undefined;
  /** While true, readAfter() fails as an unreachable Redis does. */
  unavailable: boolean;
}

export function controlledStore(inner: EventStore): ControlledStore {
  let readAfterCalls = 0;
  const readAfterHints: [number, number | undefined][] = [];
  let loadCalls = 0;
  const store: ControlledStore = {
    ...inner,
    holdLoad: undefined,
    unavailable: false,
    get readAfterCalls() {
      return readAfterCalls;
    },
    get loadCalls() {
      return loadCalls;
    },
    readAfterHints,
    async load(id, requestKey) {
      loadCalls++;
      const loaded = await inner.load(id, requestKey);
      if (store.holdLoad) await store.holdLoad;
      return loaded;
    },
    async readAfter(id, afterVersion, limit, stateAt) {
      readAfterCalls++;
      readAfterHints.push([afterVersion, stateAt?.version]);
      if (store.unavailable) throw new StoreUnavailable("the event store is unavailable: test");
      return inner.readAfter(id, afterVersion, limit, stateAt);
    },
  };
  return store;
}
