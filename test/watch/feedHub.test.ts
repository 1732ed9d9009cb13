/**
 * The WatchDeliveries tailer and the partition's messages: an entry that
 * follows the tailer's position is handed out as it came, without reading the
 * feed; an entry after a gap, a bare wake-up, or an entry already read make
 * it read the feed (or nothing). Driven by a fake source over the memory store.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createDeliveryApp } from "../../src/app/deliveryApp.js";
import type { RecordedEvent } from "../../src/domain/index.js";
import { createFeedHub, type FeedHub, type FeedMessage, type FeedStream } from "../../src/feed/feedHub.js";
import { silentLogger } from "../../src/logger.js";
import type { EventStore, FeedChange } from "../../src/store/eventStore.js";
import { createMemoryEventStore } from "../../src/store/memory/memoryEventStore.js";
import type { UpdateSource } from "../../src/watch/updateSource.js";
import { waitUntil } from "../support/async.js";

interface Received {
  readonly kind: FeedMessage["kind"];
  readonly change?: string;
}

const messages = new Map<string, FeedMessage>();
let serial = 0;
/** Each message's bytes name it; the test looks the message up by them. */
const encoder = {
  encode(message: FeedMessage): Uint8Array {
    const key = String(serial++);
    messages.set(key, message);
    return Buffer.from(key);
  },
};

function collectingStream(): FeedStream & { readonly received: Received[] } {
  const received: Received[] = [];
  return {
    received,
    write(bytes) {
      const message = messages.get(Buffer.from(bytes).toString())!;
      received.push(message.kind === "change" ? { kind: "change", change: `${message.record.event.deliveryId}@${message.record.event.version}` } : { kind: message.kind });
      return true;
    },
    onDrain() {},
    abort() {},
    fail() {},
  };
}

let hub: FeedHub | undefined;
afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

async function setup() {
  const inner = createMemoryEventStore();
  let feedReads = 0;
  let logReads = 0;
  const store: EventStore = {
    ...inner,
    feed: {
      ...inner.feed,
      read(partition, after, limit) {
        feedReads++;
        return inner.feed.read(partition, after, limit);
      },
    },
    readAt(id, version) {
      logReads++;
      return inner.readAt(id, version);
    },
  };
  let announce: (partition: number, change?: FeedChange) => void = () => {};
  const source: UpdateSource = {
    async subscribe() {},
    unsubscribe() {},
    onUpdate() {},
    async subscribePartition() {},
    onPartition(listener) {
      announce = listener;
    },
    onResubscribed() {},
    async close() {},
  };
  hub = createFeedHub({ store, source, encoder, logger: silentLogger, safetyNetIntervalMs: 60_000 });
  const app = createDeliveryApp({ store: inner });
  const stream = collectingStream();
  await hub.watch({ statuses: [], includeSnapshot: false }, stream);
  await waitUntil(() => stream.received.length === 1, "caught_up");
  /** Appends, and returns the change as the partition's message would carry it. */
  const append = async (id: string, create: boolean): Promise<FeedChange> => {
    const record: RecordedEvent = create
      ? await app.execute(id, { type: "CreateDelivery", budgetMinor: 100, notes: "" })
      : await app.execute(id, { type: "IncreaseBudget", amountMinor: 1 });
    const entries = await inner.feed.read(0, "0-0", 10_000);
    return { previous: entries.at(-2)?.id ?? "0-0", entry: entries.at(-1)!, record };
  };
  return { hub: hub!, stream, append, announce: (change?: FeedChange) => announce(0, change), reads: () => ({ feed: feedReads, log: logReads }) };
}

describe("the WatchDeliveries tailer", () => {
  it("hands out each announced entry that follows its position without reading the feed or the log", async () => {
    const s = await setup();
    const before = s.reads();
    const changes = [await s.append("a", true), await s.append("b", true), await s.append("a", false)];
    for (const change of changes) s.announce(change);

    expect(s.stream.received.slice(1)).toEqual(["a@1", "b@1", "a@2"].map((change) => ({ kind: "change", change })));
    expect(s.reads()).toEqual(before);
  });

  it("reads the feed after a gap, sends each change once, and drops an announcement it already read", async () => {
    const s = await setup();
    const first = await s.append("a", true);
    const second = await s.append("a", false);
    const third = await s.append("b", true);
    // The first announcement was lost: the second does not follow the tailer's position.
    s.announce(second);
    await waitUntil(() => s.stream.received.length === 4, "the changes read from the feed");
    const afterGap = s.reads();
    expect(afterGap.feed).toBeGreaterThanOrEqual(1);
    // Late announcements of entries the read already handed out: nothing read, nothing sent.
    s.announce(first);
    s.announce(third);
    expect(s.reads()).toEqual(afterGap);

    expect(s.stream.received.slice(1)).toEqual(["a@1", "a@2", "b@1"].map((change) => ({ kind: "change", change })));
  });

  it("hands out a change this process appended at once, and drops the partition's message of it that follows", async () => {
    const s = await setup();
    const before = s.reads();
    const change = await s.append("a", true);
    s.hub.appended(change);
    expect(s.stream.received.slice(1)).toEqual([{ kind: "change", change: "a@1" }]);
    s.announce(change);
    expect(s.stream.received).toHaveLength(2);
    expect(s.reads()).toEqual(before);
  });

  it("reads the feed on a bare wake-up (a message without the entry)", async () => {
    const s = await setup();
    await s.append("a", true);
    const before = s.reads();
    s.announce();
    await waitUntil(() => s.stream.received.length === 2, "the change read from the feed");
    expect(s.reads().feed).toBeGreaterThan(before.feed);
    expect(s.stream.received[1]).toEqual({ kind: "change", change: "a@1" });
  });
});
