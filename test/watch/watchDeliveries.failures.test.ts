/**
 * WatchDeliveries (the firehose) under two failures its issue names:
 *
 *  - a Redis restart (appendonly yes) while commands run on several
 *    deliveries through two replicas, each replica with a watcher; and an
 *    outage met by a watcher its client held back (it stays open);
 *  - a client that stops reading while 10,000 changes are made, next to one
 *    that keeps reading.
 *
 * Real redis-server, real gRPC on a real port. Waiting is on events or polled
 * with a deadline (../support/async.ts); nothing sleeps as synchronisation.
 */
import { randomUUID } from "node:crypto";
import { type ClientReadableStream, type StatusObject } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Delivery, evolve, type RecordedEvent } from "../../src/domain/index.js";
import { decodeResumeToken } from "../../src/feed/resumeToken.js";
import type { FeedHub, FeedStream } from "../../src/feed/feedHub.js";
import {
  type DeliveryServiceClient,
  DeliveryStatus,
  WatchDeliveriesRequest,
  type WatchDeliveriesResponse,
} from "../../src/gen/delivery/v1/delivery.js";
import type { EventStore } from "../../src/store/eventStore.js";
import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import { waitUntil, within } from "../support/async.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { range, retryWhileUnavailable, SAFETY_NET_OFF_MS } from "./watchSupport.js";

// ---------------------------------------------------------------------------
// Helpers (this file only)
// ---------------------------------------------------------------------------

/** One change as the client decoded it. */
interface Change {
  readonly id: string;
  readonly version: number;
  /** The version of the state carried with the event (must equal `version`). */
  readonly stateVersion: number;
  readonly budget: bigint;
  readonly previous: DeliveryStatus;
  readonly token: string;
}

interface FeedRecorder {
  readonly stream: ClientReadableStream<WatchDeliveriesResponse>;
  readonly changes: Change[];
  /** Every message kind in arrival order ("change", "caughtUp", "checkpoint", "snapshot"). */
  readonly kinds: string[];
  /** The token of the last message that carried one. */
  lastToken(): string;
  caughtUp(): boolean;
  /** The final status, once the stream has ended; undefined while it is open. */
  readonly endedWith: StatusObject | undefined;
  readonly ended: Promise<StatusObject>;
  cancel(): void;
}

/** Opens WatchDeliveries and records what it receives; `paused` leaves the stream unread until `stream.resume()`. */
function watchFeed(client: DeliveryServiceClient, request: Partial<WatchDeliveriesRequest>, options: { paused?: boolean } = {}): FeedRecorder {
  const stream = client.watchDeliveries(WatchDeliveriesRequest.fromPartial(request));
  const changes: Change[] = [];
  const kinds: string[] = [];
  let token = "";
  let endedWith: StatusObject | undefined;
  stream.on("data", (m: WatchDeliveriesResponse) => {
    const k = m.kind;
    kinds.push(k?.$case ?? "none");
    if (m.resumeToken !== "") token = m.resumeToken;
    if (k?.$case === "change") {
      changes.push({
        id: k.change.event?.deliveryId ?? "",
        version: Number(k.change.event?.version ?? -1n),
        stateVersion: Number(k.change.delivery?.version ?? -1n),
        budget: k.change.delivery?.budget ?? -1n,
        previous: k.change.previousStatus,
        token: m.resumeToken,
      });
    }
  });
  // Reported through 'status'.
  stream.on("error", () => {});
  const ended = new Promise<StatusObject>((resolve) =>
    stream.on("status", (s: StatusObject) => {
      endedWith = s;
      resolve(s);
    }),
  );
  if (options.paused) stream.pause();
  return {
    stream,
    changes,
    kinds,
    lastToken: () => token,
    caughtUp: () => kinds.includes("caughtUp"),
    get endedWith() {
      return endedWith;
    },
    ended,
    cancel: () => stream.cancel(),
  };
}

/** Versions per delivery, in arrival order. */
function versionsById(changes: readonly Change[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const c of changes) {
    const list = out.get(c.id);
    if (list) list.push(c.version);
    else out.set(c.id, [c.version]);
  }
  return out;
}

/** What is wrong with one delivery's versions (expected exactly 1..last, once each, in order), or undefined. */
function versionProblem(actual: readonly number[] | undefined, last: number): string | undefined {
  const got = actual ?? [];
  const bad = got.findIndex((v, i) => v !== i + 1);
  if (bad < 0 && got.length === last) return undefined;
  const at = bad < 0 ? got.length : bad;
  return `expected 1..${last} once each, got ${got.length} changes; first difference at index ${at}: ${got.slice(Math.max(0, at - 2), at + 3).join(",")}`;
}

/** Every problem of a recorder against the expected last version of each delivery (and nothing for any other delivery). */
function feedProblems(recorder: FeedRecorder, lastVersions: ReadonlyMap<string, number>): string[] {
  const problems: string[] = [];
  const byId = versionsById(recorder.changes);
  for (const [id, last] of lastVersions) {
    const problem = versionProblem(byId.get(id), last);
    if (problem) problems.push(`${id}: ${problem}`);
  }
  for (const id of byId.keys()) if (!lastVersions.has(id)) problems.push(`${id}: a change of a delivery nobody changed`);
  return problems;
}

/** Per partition, the last position a token says its watcher has had. */
function tokenPositions(token: string, partitions: number, retentionMs: number): readonly string[] {
  return decodeResumeToken(token, [], partitions, retentionMs, Date.now()).positions;
}

/** What the hub handed to the transport for one WatchDeliveries stream. */
interface StreamTally {
  writes: number;
  bytes: number;
  /** write() answered false (the transport's buffer is full). */
  refusals: number;
  /** Writes made after a refusal and before the next 'drain': the hub must make none. */
  writesWhileRefused: number;
  refused: boolean;
  drains: number;
  /** What the hub ended the stream with, if it failed it. */
  failed: string | undefined;
}

/**
 * Counts, per WatchDeliveries stream of a server, what the feed hub writes to
 * the transport: the handler calls `hub.watch(request, stream)` on the object
 * the server exposes as `server.feed`, so wrapping that method sees every
 * stream the hub is given. Anything the server holds for a client that reads
 * nothing was handed over by one of these writes.
 */
function tallyFeedStreams(feed: FeedHub): StreamTally[] {
  const tallies: StreamTally[] = [];
  const original = feed.watch.bind(feed);
  (feed as { watch: FeedHub["watch"] }).watch = (request, stream) => {
    const tally: StreamTally = { writes: 0, bytes: 0, refusals: 0, writesWhileRefused: 0, refused: false, drains: 0, failed: undefined };
    tallies.push(tally);
    const counted: FeedStream = {
      write(bytes) {
        tally.writes++;
        tally.bytes += bytes.byteLength;
        if (tally.refused) tally.writesWhileRefused++;
        const accepted = stream.write(bytes);
        if (!accepted) {
          tally.refusals++;
          tally.refused = true;
        }
        return accepted;
      },
      onDrain(listener) {
        stream.onDrain(() => {
          tally.drains++;
          tally.refused = false;
          listener();
        });
      },
      abort: () => stream.abort(),
      fail: (error) => {
        tally.failed = String(error);
        stream.fail(error);
      },
    };
    return original(request, counted);
  };
  return tallies;
}

/**
 * Appends, straight through the store and pipelined on one connection (each
 * delivery's appends in order), a creation and then `versions - 1` budget
 * increases of each delivery, round by round across the deliveries: the
 * service only sees their feed entries and publications.
 */
async function appendAcross(store: EventStore, ids: readonly string[], versions: number, budget: number): Promise<void> {
  const states = new Map<string, Delivery | undefined>(ids.map((id) => [id, undefined]));
  const at = Date.now();
  for (let v = 1; v <= versions; v++) {
    const appends: Promise<void>[] = [];
    for (const id of ids) {
      const before = states.get(id);
      const event = {
        deliveryId: id,
        version: v,
        occurredAtMs: at,
        requestId: "",
        actor: "",
        data: v === 1 ? ({ type: "created", budgetMinor: budget, notes: "" } as const) : ({ type: "budgetIncreased", amountMinor: 1 } as const),
      };
      const record: RecordedEvent = { event, delivery: evolve(before ?? { status: "NONE", version: 0 }, event) };
      appends.push(
        store.append({ record, expectedVersion: v - 1, previousStatus: before?.status ?? "NONE", fingerprint: "bulk" }).then((r) => {
          if (r.outcome !== "appended") throw new Error(`append of ${id} version ${v}: ${r.outcome}`);
        }),
      );
      states.set(id, record.delivery);
    }
    // A round at a time: 100-1,000 commands in flight, each delivery's next version after its last.
    await Promise.all(appends);
  }
}

// ---------------------------------------------------------------------------
// 1. A Redis restart
// ---------------------------------------------------------------------------

const RESTART_DELIVERIES = 6;
/** Accepted increases per delivery, at least (the commands go on until Redis is back, however fast the first ones are). */
const RESTART_MIN_INCREASES = 15;
const RESTART_BUDGET = 1_000n;

describe("WatchDeliveries across a Redis restart (appendonly yes), two replicas", () => {
  let redisServer: RedisServerHandle;
  let a: TestService;
  let b: TestService;
  let admin: Redis;
  let store: EventStore;

  beforeAll(async () => {
    // A private Redis with an append-only file: its data, the feed included, outlives the restart.
    redisServer = await startRedisServer({ appendonly: true });
    // No safety net: what reaches the watchers after the restart came through Pub/Sub or the hub's repair on resubscribing.
    a = await startTestService({ redisUrl: redisServer.url, safetyNetIntervalMs: SAFETY_NET_OFF_MS });
    b = await startTestService({ redisUrl: redisServer.url, keyPrefix: a.keyPrefix, safetyNetIntervalMs: SAFETY_NET_OFF_MS });
    admin = connectRedis(redisServer.url);
    // An ioredis error between the restart's stop and start is expected: nothing reads this one then.
    admin.on("error", () => {});
    store = createRedisEventStore({ redis: admin, keyPrefix: a.keyPrefix });
  });

  afterAll(async () => {
    admin?.disconnect();
    await b?.stop();
    await a?.stop();
    await redisServer?.kill();
  });

  it("keeps both replicas' watchers open and gives each every acknowledged version of every delivery once, in order, no gap", async () => {
    const watchers = [watchFeed(a.client(), {}), watchFeed(b.client(), {})];
    await waitUntil(() => watchers.every((w) => w.caughtUp()), "both watchers to be caught up");
    const commandClients = [a.client(), b.client()];

    let unavailable = 0;
    const acknowledged = new Map<string, number[]>();
    const ids = range(1, RESTART_DELIVERIES).map((i) => `restart-${randomUUID().slice(0, 8)}-${i}`);
    // Each command keeps its request_id across retries: a retry of an append
    // that did happen returns the original outcome instead of a second event.
    let sent = 0;
    const send = async (id: string, command: (client: DeliveryServiceClient, requestId: string) => Promise<{ event?: { version: bigint } | undefined }>) => {
      const requestId = randomUUID();
      // Alternate the replicas: each watcher sees changes made through the other one.
      const client = commandClients[sent++ % commandClients.length]!;
      const { event } = await retryWhileUnavailable(() => command(client, requestId), () => unavailable++);
      acknowledged.get(id)!.push(Number(event?.version));
    };

    for (const id of ids) {
      acknowledged.set(id, []);
      await send(id, (client, requestId) => call(client, "createDelivery", { deliveryId: id, budget: RESTART_BUDGET, requestId }, { deadlineMs: 3_000 }));
    }
    let restarted = false;
    // One sequential writer per delivery, all side by side.
    const commands = Promise.all(
      ids.map(async (id) => {
        while (acknowledged.get(id)!.length < RESTART_MIN_INCREASES + 1 || !restarted) {
          await send(id, (client, requestId) => call(client, "increaseBudget", { deliveryId: id, amount: 1n, requestId }, { deadlineMs: 3_000 }));
        }
      }),
    );
    const acceptedSoFar = () => [...acknowledged.values()].reduce((n, list) => n + list.length, 0);
    await waitUntil(() => acceptedSoFar() >= RESTART_DELIVERIES * 4, "some commands before the outage");
    await redisServer.stop();
    await waitUntil(() => unavailable >= 1, "a command refused during the outage");
    await redisServer.restart();
    restarted = true;
    await within(commands, "the commands to go through after the restart", 20_000);
    expect(unavailable).toBeGreaterThanOrEqual(1);
    // And one more change of each delivery, certainly made after the restart.
    await Promise.all(
      ids.map((id) => send(id, (client, requestId) => call(client, "increaseBudget", { deliveryId: id, amount: 1n, requestId }, { deadlineMs: 3_000 }))),
    );

    // The log, as the service reads it back: every delivery's events 1..last,
    // and exactly the versions the commands were acknowledged with.
    const lastVersions = new Map<string, number>();
    for (const id of ids) {
      const { delivery } = await call(a.client(), "getDelivery", { deliveryId: id });
      const last = Number(delivery?.version);
      const { events } = await call(b.client(), "listDeliveryEvents", { deliveryId: id, pageSize: 1_000 });
      expect(events.map((e) => Number(e.version)), `${id}: the log`).toEqual(range(1, last));
      expect(acknowledged.get(id), `${id}: the acknowledged versions`).toEqual(range(1, last));
      expect(last).toBeGreaterThanOrEqual(RESTART_MIN_INCREASES + 1);
      lastVersions.set(id, last);
    }

    // Quiet: both watchers have had every entry of every partition's feed (their last token is at the heads).
    const partitions = await store.feed.partitions();
    const heads = await store.feed.heads();
    await waitUntil(
      () => watchers.every((w) => feedProblems(w, lastVersions).length === 0 && tokenPositions(w.lastToken(), partitions, store.feed.retentionMs).join() === heads.join()),
      "both watchers to have every acknowledged version",
      10_000,
    ).catch((error: unknown) => {
      // Say what is missing rather than only that it timed out.
      throw new Error(`${String(error)}: ${watchers.map((w, i) => `watcher ${i}: ${feedProblems(w, lastVersions).join("; ") || "token behind the heads"}`).join(" | ")}`);
    });

    // Never ended by itself (neither during the outage nor after).
    expect(watchers.map((w) => w.endedWith)).toEqual([undefined, undefined]);
    for (const w of watchers) {
      expect(feedProblems(w, lastVersions)).toEqual([]);
      // Each change carries its event's state: the budget after `version - 1` increases of 1, from READY but the creation.
      const wrongState = w.changes.filter(
        (c) =>
          c.stateVersion !== c.version ||
          c.budget !== RESTART_BUDGET + BigInt(c.version - 1) ||
          c.previous !== (c.version === 1 ? DeliveryStatus.DELIVERY_STATUS_UNSPECIFIED : DeliveryStatus.DELIVERY_STATUS_READY),
      );
      expect(wrongState).toEqual([]);
      expect(w.changes.every((c) => c.token !== "")).toBe(true);
      w.cancel();
    }
  }, 40_000);

  it("keeps a watcher that is held back by its client open through an outage, and gives it everything after", async () => {
    // The watchers of the test before are cancelled: gone once the server has heard of it.
    await waitUntil(() => a.server.feed.watcherCount === 0, "no other watch on this replica");
    const held = watchFeed(a.client(), {}, { paused: true });
    await waitUntil(() => a.server.feed.watcherCount === 1, "the held-back watch to register");
    const ids = range(1, 100).map((i) => `held-${randomUUID().slice(0, 8)}-${i}`);
    await appendAcross(store, ids, 15, 0);
    const total = ids.length * 15;

    // Redis goes away, then the client reads: the hub's replay from its positions meets the outage.
    await redisServer.stop();
    held.stream.resume();
    let last = -1;
    let still = 0;
    await waitUntil(
      () => {
        const n = held.changes.length;
        still = n === last ? still + 1 : 0;
        last = n;
        return still >= 20;
      },
      "the held-back watcher to have everything the transport held",
      10_000,
    );
    // The transport cannot have held everything: the rest waits for Redis, on a stream still open.
    expect(held.changes.length).toBeLessThan(total);
    expect(held.endedWith).toBeUndefined();

    await redisServer.restart();
    const lastVersions = new Map(ids.map((id) => [id, 15]));
    await waitUntil(() => feedProblems(held, lastVersions).length === 0, "every change once the store is back", 15_000);
    expect(held.endedWith).toBeUndefined();
    held.cancel();
  }, 40_000);
});

// ---------------------------------------------------------------------------
// 2. A paused client during 10,000 changes
// ---------------------------------------------------------------------------

/** Many short logs: each change the hub sends is read back from its delivery's log (the whole log up to it). */
const PAUSED_DELIVERIES = 200;
const PAUSED_VERSIONS = 50;
const CHANGES = PAUSED_DELIVERIES * PAUSED_VERSIONS;
/** Far below CHANGES: what the hub may hand to the transport for a client that reads nothing. */
const MAX_WRITES_TO_A_PAUSED_CLIENT = 1_000;

describe("WatchDeliveries with a paused client", () => {
  let service: TestService;
  let redis: Redis;
  let store: EventStore;
  let tallies: StreamTally[];

  beforeAll(async () => {
    service = await startTestService({ redisUrl: testRedisUrl() });
    tallies = tallyFeedStreams(service.server.feed);
    redis = connectRedis(testRedisUrl());
    store = createRedisEventStore({ redis, keyPrefix: service.keyPrefix });
  });

  afterAll(async () => {
    await service?.stop();
    redis?.disconnect();
  });

  it("holds back only the paused client, within bounds, during 10,000 changes, then gives it every one once, in order", async () => {
    // Each on a channel of its own: a stalled HTTP/2 connection must not be shared.
    const normal = watchFeed(service.client(), {});
    const paused = watchFeed(service.client(), {}, { paused: true });
    // Both registered and live: the hub has written each its caught_up (the paused client has not read it).
    await waitUntil(() => normal.caughtUp(), "the normal watcher to be caught up");
    await waitUntil(() => tallies.length === 2 && tallies.every((t) => t.writes >= 1) && service.server.feed.watcherCount === 2, "the paused watcher to be live");
    const [, pausedTally] = tallies as [StreamTally, StreamTally];

    const ids = range(1, PAUSED_DELIVERIES).map((i) => `paused-${randomUUID().slice(0, 8)}-${i}`);
    const lastVersions = new Map(ids.map((id) => [id, PAUSED_VERSIONS]));
    await within(appendAcross(store, ids, PAUSED_VERSIONS, 1_000), "the 10,000 appends", 20_000);
    expect((await store.currentVersions(ids)).every((v) => v === PAUSED_VERSIONS)).toBe(true);

    // The normal client has every change while the other one still reads nothing.
    await waitUntil(() => normal.changes.length >= CHANGES, "the normal watcher to get all 10,000 changes", 15_000).catch((error: unknown) => {
      throw new Error(`${String(error)}: it got ${normal.changes.length}; streams ${JSON.stringify(tallies)}; ended ${normal.endedWith?.code}`);
    });
    expect(feedProblems(normal, lastVersions)).toEqual([]);
    expect(paused.changes).toHaveLength(0);

    // Bounded: the transport pushed back, the hub stopped writing at once and
    // wrote far fewer than the 10,000 changes to the paused stream (what the
    // server holds for it is at most what it handed over; the hub itself only
    // keeps a position per partition).
    expect(pausedTally.refusals).toBeGreaterThanOrEqual(1);
    expect(pausedTally.writesWhileRefused).toBe(0);
    expect(pausedTally.writes).toBeLessThan(MAX_WRITES_TO_A_PAUSED_CLIENT);
    expect(pausedTally.bytes).toBeLessThan(tallies[0]!.bytes / 10);

    paused.stream.resume();
    await waitUntil(() => paused.changes.length >= CHANGES, "the paused watcher to get all 10,000 changes after resuming", 15_000).catch((error: unknown) => {
      throw new Error(`${String(error)}: it got ${paused.changes.length}; streams ${JSON.stringify(tallies)}; ended ${paused.endedWith?.code}`);
    });
    // Both level with the feed's heads: nothing more is on its way.
    const partitions = await store.feed.partitions();
    const heads = (await store.feed.heads()).join();
    await waitUntil(
      () => [normal, paused].every((w) => tokenPositions(w.lastToken(), partitions, store.feed.retentionMs).join() === heads),
      "both watchers' tokens to reach the feed's heads",
    );
    expect(feedProblems(paused, lastVersions)).toEqual([]);
    expect(feedProblems(normal, lastVersions)).toEqual([]);
    expect(paused.changes.every((c) => c.stateVersion === c.version)).toBe(true);
    expect([normal.endedWith, paused.endedWith]).toEqual([undefined, undefined]);
    expect(tallies.map((t) => t.failed)).toEqual([undefined, undefined]);
    normal.cancel();
    paused.cancel();
  }, 45_000);
});
