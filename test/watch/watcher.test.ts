/**
 * One watcher's phases and its own retry backoff. The timing is the point,
 * so the clock is faked: a watcher whose store reads fail must retry after
 * 100, 200, 400 ... ms, whatever other watchers' reads do meanwhile.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDeliveryApp, type DeliveryApp } from "../../src/app/deliveryApp.js";
import { StoreUnavailable } from "../../src/domain/index.js";
import { watchEncoder } from "../../src/grpc/watchDelivery.js";
import { silentLogger } from "../../src/logger.js";
import type { EventStore } from "../../src/store/eventStore.js";
import { createMemoryEventStore } from "../../src/store/memory/memoryEventStore.js";
import { nextPhase, type WatcherEvent, type WatcherPhase } from "../../src/watch/watcher.js";
import { createWatchHub, type WatchHub } from "../../src/watch/watchHub.js";
import { type FakeSource, fakeSource, fakeStream } from "./watchHubFakes.js";

const PHASES: readonly WatcherPhase[] = ["starting", "startingBehind", "live", "catchingUp", "catchingUpAgain", "paused", "ended"];
const EVENTS: readonly WatcherEvent[] = ["behind", "started", "refused", "drained", "level", "failed", "ended"];

describe("watcher phases", () => {
  it("keeps a paused watcher paused until its client drains", () => {
    for (const event of EVENTS.filter((e) => e !== "drained" && e !== "ended")) expect(nextPhase("paused", event)).toBe("paused");
    expect(nextPhase("paused", "drained")).toBe("catchingUp");
  });

  it("ends from every phase, and nothing leaves the end", () => {
    for (const phase of PHASES) expect(nextPhase(phase, "ended")).toBe("ended");
    for (const event of EVENTS) expect(nextPhase("ended", event)).toBe("ended");
  });

  it("reads the log once more when something arrives during a catch-up", () => {
    expect(nextPhase("catchingUp", "behind")).toBe("catchingUpAgain");
    expect(nextPhase("catchingUpAgain", "level")).toBe("catchingUp");
    expect(nextPhase("catchingUp", "level")).toBe("live");
  });
});

interface Setup {
  readonly hub: WatchHub;
  readonly app: DeliveryApp;
  readonly source: FakeSource;
  /** Deliveries whose log reads fail as an unreachable Redis does. */
  readonly unavailable: Set<string>;
  /** When (fake ms since the setup) each log read of "down" was tried. */
  readonly downReads: number[];
  /** Appends two events to a delivery and hands the source only the second: a gap its watchers repair from the log. */
  gap(deliveryId: string): Promise<void>;
}

const RETRY_MS = 100;
const SAFETY_NET_MS = 1_000;

let hub: WatchHub | undefined;

afterEach(async () => {
  await hub?.close();
  hub = undefined;
  vi.useRealTimers();
});

async function setup(): Promise<Setup> {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
  const t0 = Date.now();
  const inner = createMemoryEventStore();
  const app = createDeliveryApp({ store: inner });
  const unavailable = new Set<string>();
  const downReads: number[] = [];
  const store: EventStore = {
    ...inner,
    async readAfter(id, afterVersion, limit) {
      if (id === "down") downReads.push(Date.now() - t0);
      if (unavailable.has(id)) throw new StoreUnavailable("the event store is unavailable: test");
      return inner.readAfter(id, afterVersion, limit);
    },
  };
  const source = fakeSource();
  hub = createWatchHub({
    store,
    source,
    encoder: watchEncoder,
    logger: silentLogger,
    catchUpRetryMs: RETRY_MS,
    safetyNetIntervalMs: SAFETY_NET_MS,
  });
  for (const id of ["down", "up"]) await app.execute(id, { type: "CreateDelivery", budgetMinor: 100, notes: "" });
  const gap = async (deliveryId: string) => {
    for (let i = 0; i < 2; i++) await app.execute(deliveryId, { type: "IncreaseBudget", amountMinor: 1 });
    const { state } = await inner.load(deliveryId);
    source.deliver((await inner.readAt(deliveryId, state.version))!);
  };
  return { hub, app, source, unavailable, downReads, gap };
}

/** Advances the fake clock to `untilMs`, 50 ms at a time, with `step` before each. */
async function runUntil(untilMs: number, step: () => Promise<void> = async () => {}): Promise<void> {
  while (Date.now() < untilMs) {
    await step();
    await vi.advanceTimersByTimeAsync(50);
  }
}

describe("watcher retry backoff", () => {
  it("doubles its own delay up to the safety net's interval while other watchers' reads succeed", async () => {
    const s = await setup();
    const t0 = Date.now();
    s.unavailable.add("down");
    const up = fakeStream();
    await s.hub.watch("up", undefined, up);
    // Catches up from after version 1 at once, and fails.
    await s.hub.watch("down", 1, fakeStream());
    // Meanwhile the watcher of "up" repairs a gap, successfully, every 50 ms.
    await runUntil(t0 + 3_600, () => s.gap("up"));
    expect(s.downReads).toEqual([0, 100, 300, 700, 1_500, 2_500, 3_500]);
    expect(up.versions.at(-1)).toBeGreaterThan(100);
  });

  it("starts its backoff over after its own read succeeds", async () => {
    const s = await setup();
    const t0 = Date.now();
    s.unavailable.add("down");
    const down = fakeStream();
    await s.hub.watch("down", 1, down);
    await runUntil(t0 + 400);
    expect(s.downReads).toEqual([0, 100, 300]);
    s.unavailable.delete("down");
    await runUntil(t0 + 800);
    expect(s.downReads).toEqual([0, 100, 300, 700]);

    s.unavailable.add("down");
    await s.gap("down");
    await runUntil(t0 + 950);
    expect(s.downReads).toEqual([0, 100, 300, 700, 800, 900]);
    expect(down.versions).toEqual([]);
  });
});
