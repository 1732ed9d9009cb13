/**
 * The hub alone, driven step by step with fakes: the races that end-to-end
 * tests can only hit by luck.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeliveryApp, type DeliveryApp } from "../../src/app/deliveryApp.js";
import type { RecordedEvent } from "../../src/domain/index.js";
import { watchEncoder } from "../../src/grpc/watchDelivery.js";
import { silentLogger } from "../../src/logger.js";
import { createMemoryEventStore } from "../../src/store/memory/memoryEventStore.js";
import { createWatchHub, type WatchHub, type WatchHubDeps } from "../../src/watch/watchHub.js";
import { waitUntil } from "../support/async.js";
import { controlledStore, type ControlledStore, deferred, type FakeSource, fakeSource, fakeStream } from "./watchHubFakes.js";
import { range, SAFETY_NET_OFF_MS } from "./watchSupport.js";

interface Setup {
  readonly hub: WatchHub;
  readonly store: ControlledStore;
  readonly source: FakeSource;
  readonly app: DeliveryApp;
  /** Whether appends reach the source (false: Pub/Sub loses them). */
  publish: boolean;
}

const hubs: WatchHub[] = [];

function setup(options: Partial<Pick<WatchHubDeps, "catchUpBatch" | "observer">> = {}): Setup {
  const source = fakeSource();
  const s: { publish: boolean } = { publish: true };
  const inner = createMemoryEventStore({
    onAppended: (record: RecordedEvent) => {
      if (s.publish) queueMicrotask(() => source.deliver(record));
    },
  });
  const store = controlledStore(inner);
  const hub = createWatchHub({
    store,
    source,
    encoder: watchEncoder,
    logger: silentLogger,
    safetyNetIntervalMs: SAFETY_NET_OFF_MS,
    ...options,
  });
  hubs.push(hub);
  return Object.assign(s, { hub, store, source, app: createDeliveryApp({ store: inner }) });
}

async function create(app: DeliveryApp, id: string): Promise<void> {
  await app.execute(id, { type: "CreateDelivery", budgetMinor: 100, notes: "" });
}

async function increase(app: DeliveryApp, id: string, times = 1): Promise<void> {
  for (let i = 0; i < times; i++) await app.execute(id, { type: "IncreaseBudget", amountMinor: 1 });
}

afterEach(async () => {
  await Promise.all(hubs.splice(0).map((hub) => hub.close()));
});

describe("watch hub", () => {
  it("repairs a loss reported by a re-subscription that comes while a watch is still starting", async () => {
    const s = setup();
    await create(s.app, "d1");
    const release = deferred();
    s.store.holdLoad = release.promise;
    const stream = fakeStream();
    // Subscribed, and the state at version 1 read; its sending is held back.
    const started = s.hub.watch("d1", undefined, stream);
    await waitUntil(() => s.source.subscribed.has("d1"), "the subscription");
    s.publish = false;
    await increase(s.app, "d1");
    s.source.resubscribed();
    release.resolve();
    await started;
    await waitUntil(() => stream.versions.length === 2, "version 2", 2_000);
    expect(stream.versions).toEqual([1, 2]);
    expect(stream.snapshots).toBe(1);
  });

  it("shares one state read and one snapshot among watches that start together", async () => {
    const s = setup();
    await create(s.app, "d1");
    const loadsBefore = s.store.loadCalls;
    const streams = range(1, 50).map(() => fakeStream());
    await Promise.all(streams.map((stream) => s.hub.watch("d1", undefined, stream)));
    expect(s.store.loadCalls - loadsBefore).toBe(1);
    for (const stream of streams) expect(stream.versions).toEqual([1]);
  });

  it("gives a watch that joins while a read is under way a read of its own, so an update between the two is not lost", async () => {
    const s = setup();
    await create(s.app, "d1");
    const release = deferred();
    s.store.holdLoad = release.promise;
    const early = fakeStream();
    // Reads version 1, then waits.
    const earlyStarted = s.hub.watch("d1", undefined, early);
    await waitUntil(() => s.store.loadCalls >= 1 && s.source.subscribed.has("d1"), "the first read");
    // Version 2 is published while only the early watch is registered.
    await increase(s.app, "d1");
    const late = fakeStream();
    const lateStarted = s.hub.watch("d1", undefined, late);
    release.resolve();
    await Promise.all([earlyStarted, lateStarted]);
    await waitUntil(() => early.versions.length === 2, "version 2 for the early watch", 2_000);
    expect(early.versions).toEqual([1, 2]);
    expect(late.versions).toEqual([2]);
  });

  it("retries a catch-up that found the store unavailable without waiting for the safety net", async () => {
    const s = setup();
    await create(s.app, "d1");
    const stream = fakeStream();
    await s.hub.watch("d1", undefined, stream);
    s.publish = false;
    await increase(s.app, "d1", 2);
    s.store.unavailable = true;
    s.source.resubscribed();
    await waitUntil(() => s.store.readAfterCalls >= 1, "a catch-up attempt");
    s.store.unavailable = false;
    await waitUntil(() => stream.versions.length === 3, "versions 2 and 3", 2_000);
    expect(stream.versions).toEqual([1, 2, 3]);
    expect(s.store.readAfterCalls).toBeGreaterThanOrEqual(2);
  });

  it("writes nothing to a watch that was starting when the hub closed", async () => {
    const s = setup();
    await create(s.app, "d1");
    const release = deferred();
    s.store.holdLoad = release.promise;
    const stream = fakeStream();
    const started = s.hub.watch("d1", undefined, stream);
    await waitUntil(() => s.hub.watcherCount === 1, "the watcher to register");
    await s.hub.close();
    release.resolve();
    await started;
    expect(stream.aborted).toBe(true);
    expect(stream.versions).toEqual([]);
    expect(stream.ended).toBe(false);
    expect(s.source.subscribed.size).toBe(0);
  });

  it("reads the log once per batch for a client that reads a few messages at a time", async () => {
    const s = setup({ catchUpBatch: 100 });
    await create(s.app, "d1");
    await increase(s.app, "d1", 999);
    const stream = fakeStream(16);
    await s.hub.watch("d1", 0, stream);
    for (let reads = 0; reads < 200 && stream.versions.length < 1_000; reads++) {
      await waitUntil(() => stream.full || stream.versions.length === 1_000, "the buffer to fill");
      stream.read();
    }
    expect(stream.versions).toEqual(range(1, 1_000));
    // 10 batches (and one to find the end), not one read per 16 messages.
    expect(s.store.readAfterCalls).toBeLessThanOrEqual(12);
    // Each read after the first hands the store the state it ends at: no read folds the log from version 1 again.
    const [first, ...rest] = s.store.readAfterHints;
    expect(first).toEqual([0, undefined]);
    for (const [after, stateVersion] of rest) expect(stateVersion).toBe(after);
  });

  it("sends nothing live to a watcher whose client is not reading, then everything in order once it reads", async () => {
    const s = setup({ catchUpBatch: 50 });
    await create(s.app, "d1");
    const slow = fakeStream(4);
    const fast = fakeStream();
    await s.hub.watch("d1", undefined, slow);
    await s.hub.watch("d1", undefined, fast);
    await increase(s.app, "d1", 200);
    await waitUntil(() => fast.versions.length === 201, "the fast watcher");
    expect(slow.versions).toEqual([1, 2, 3, 4]);
    expect(s.hub.watcherStates("d1").filter((w) => w.paused)).toEqual([{ cursor: 4, paused: true }]);

    await s.app.execute("d1", { type: "CancelDelivery", reason: "done" });
    for (let reads = 0; reads < 200 && !slow.ended; reads++) {
      await waitUntil(() => slow.full || slow.ended, "the buffer to fill");
      slow.read();
    }
    expect(slow.versions).toEqual(range(1, 202));
    expect(slow.ended).toBe(true);
    await waitUntil(() => fast.ended, "the fast watcher to end");
    expect(s.hub.watcherCount).toBe(0);
    expect(s.source.subscribed.size).toBe(0);
  });

  it("reports each live update once and counts as repaired only what Pub/Sub should have brought", async () => {
    const counts = { live: 0, repaired: 0 };
    const s = setup({
      observer: {
        liveUpdate: () => counts.live++,
        repairedFromLog: (events) => (counts.repaired += events),
      },
    });
    await create(s.app, "d1");
    await increase(s.app, "d1", 4);
    const streams = [fakeStream(), fakeStream(), fakeStream()];
    await s.hub.watch("d1", 0, streams[0]!);
    await s.hub.watch("d1", 2, streams[1]!);
    await s.hub.watch("d1", undefined, streams[2]!);
    await waitUntil(() => streams.every((st) => st.versions.at(-1) === 5), "the replays");
    expect(counts).toEqual({ live: 0, repaired: 0 });

    await increase(s.app, "d1");
    await waitUntil(() => streams.every((st) => st.versions.at(-1) === 6), "the live update");
    expect(counts).toEqual({ live: 1, repaired: 0 });

    s.publish = false;
    await increase(s.app, "d1", 2);
    s.source.resubscribed();
    await waitUntil(() => streams.every((st) => st.versions.at(-1) === 8), "the repair");
    expect(counts).toEqual({ live: 1, repaired: 2 * streams.length });
  });

  it("hands an event this process appended to its watchers at once, and drops Pub/Sub's copy that follows", async () => {
    const s = setup();
    await create(s.app, "d1");
    const stream = fakeStream();
    await s.hub.watch("d1", undefined, stream);
    await waitUntil(() => stream.versions.length === 1, "the snapshot");
    s.publish = false;
    const local = createDeliveryApp({ store: s.store, onAppended: (record) => s.hub.appended(record) });

    const record = await local.execute("d1", { type: "IncreaseBudget", amountMinor: 1 });
    // Synchronously, before any Pub/Sub message: nothing else could have brought it.
    expect(stream.versions).toEqual([1, 2]);
    s.source.deliver(record);
    s.hub.appended(record);
    await local.execute("d1", { type: "IncreaseBudget", amountMinor: 1 });
    expect(stream.versions).toEqual([1, 2, 3]);
    expect(s.store.readAfterCalls).toBe(0);
  });
});
