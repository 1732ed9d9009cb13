/**
 * WatchDeliveries end to end: real gRPC clients, real Redis (and the
 * in-memory store for the contract part), two replicas, lost Pub/Sub, slow
 * clients, tokens, checkpoints and shutdown.
 */
import { type ClientReadableStream, status, type StatusObject } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DeliveryServiceClient,
  DeliveryStatus,
  WatchDeliveriesRequest,
  type WatchDeliveriesResponse,
} from "../../src/gen/delivery/v1/delivery.js";
import { waitUntil, within } from "../support/async.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { statusDetailsOf } from "../support/statusDetails.js";
import { call, startTestService, type TestService } from "../support/testServer.js";

const S = DeliveryStatus;

interface Received {
  readonly kind: string;
  readonly token: string;
  readonly id?: string;
  readonly version?: number;
  readonly previous?: DeliveryStatus;
  readonly status?: DeliveryStatus;
}

interface FeedRecorder {
  readonly stream: ClientReadableStream<WatchDeliveriesResponse>;
  readonly messages: Received[];
  readonly ended: Promise<StatusObject>;
  caughtUp(): boolean;
  cancel(): void;
}

function watchAll(client: DeliveryServiceClient, request: Partial<WatchDeliveriesRequest>, options: { paused?: boolean } = {}): FeedRecorder {
  const stream = client.watchDeliveries(WatchDeliveriesRequest.fromPartial(request));
  const messages: Received[] = [];
  stream.on("data", (m: WatchDeliveriesResponse) => {
    const k = m.kind;
    if (k?.$case === "snapshot") messages.push({ kind: "snapshot", token: m.resumeToken, id: k.snapshot.delivery?.id, version: Number(k.snapshot.delivery?.version), status: k.snapshot.delivery?.status });
    else if (k?.$case === "change")
      messages.push({
        kind: "change",
        token: m.resumeToken,
        id: k.change.event?.deliveryId,
        version: Number(k.change.event?.version),
        previous: k.change.previousStatus,
        status: k.change.delivery?.status,
      });
    else messages.push({ kind: k?.$case ?? "none", token: m.resumeToken });
  });
  const ended = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
  stream.on("error", () => {});
  if (options.paused) stream.pause();
  return { stream, messages, ended, caughtUp: () => messages.some((m) => m.kind === "caughtUp"), cancel: () => stream.cancel() };
}

/** Versions per delivery of the changes in a list of messages. */
function versionsById(messages: readonly Received[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of messages) if (m.kind === "change") out.set(m.id!, [...(out.get(m.id!) ?? []), m.version!]);
  return out;
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

async function create(client: DeliveryServiceClient, id: string) {
  await call(client, "createDelivery", { deliveryId: id, budget: 1_000_000n });
}

describe.each(["redis", "memory"] as const)("WatchDeliveries (%s)", (backend) => {
  let service: TestService;
  let client: DeliveryServiceClient;
  const uid = () => Math.random().toString(36).slice(2, 8);

  beforeAll(async () => {
    service = await startTestService({ ...(backend === "redis" ? { redisUrl: testRedisUrl() } : {}), safetyNetIntervalMs: 300 });
    client = service.client();
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("starts with caught_up and a token, then every change of every delivery once, in version order", async () => {
    const w = watchAll(client, {});
    await waitUntil(() => w.caughtUp(), "caught_up");
    expect(w.messages[0]).toMatchObject({ kind: "caughtUp" });
    expect(w.messages[0]!.token).not.toBe("");

    const ids = [0, 1, 2, 3, 4].map((i) => `all-${uid()}-${i}`);
    await Promise.all(
      ids.map(async (id) => {
        await create(client, id);
        for (let v = 2; v <= 6; v++) await call(client, "increaseBudget", { deliveryId: id, amount: 1n });
      }),
    );
    await waitUntil(() => ids.every((id) => (versionsById(w.messages).get(id) ?? []).length === 6), "every change");
    w.cancel();

    const byId = versionsById(w.messages);
    for (const id of ids) expect(byId.get(id)).toEqual(range(1, 6));
    for (const m of w.messages.slice(1)) expect(m.token).not.toBe("");
    const created = w.messages.find((m) => m.kind === "change" && m.id === ids[0] && m.version === 1);
    expect(created?.previous).toBe(S.DELIVERY_STATUS_UNSPECIFIED);
  });

  it("sends a delivery entering and leaving the filter, and nothing else", async () => {
    const w = watchAll(client, { statuses: [S.DELIVERY_STATUS_ACTIVE] });
    await waitUntil(() => w.caughtUp(), "caught_up");
    const id = `filter-${uid()}`;
    await create(client, id);
    await call(client, "startDelivery", { deliveryId: id });
    await call(client, "pickupProducts", { deliveryId: id, purchasePrice: 1n, quantity: 2n });
    await call(client, "deliverProducts", { deliveryId: id, sellPrice: 1n, quantity: 2n });
    // A marker that matches, after the others: everything before it has been decided.
    const marker = `filter-marker-${uid()}`;
    await create(client, marker);
    await call(client, "startDelivery", { deliveryId: marker });
    await waitUntil(() => versionsById(w.messages).has(marker), "the marker");
    w.cancel();

    const mine = w.messages.filter((m) => m.id === id);
    expect(mine.map((m) => [m.version, m.previous, m.status])).toEqual([
      [2, S.DELIVERY_STATUS_READY, S.DELIVERY_STATUS_ACTIVE],
      [3, S.DELIVERY_STATUS_ACTIVE, S.DELIVERY_STATUS_COLLECTED],
    ]);
  });

  it("with include_snapshot: every matching delivery once, then changes made during the scan, then caught_up, nothing lost or twice", async () => {
    const prefix = `snap-${uid()}`;
    const ids = range(0, 59).map((i) => `${prefix}-${i}`);
    for (const id of ids) await create(client, id);
    let writing = true;
    const writes = (async () => {
      let n = 0;
      while (writing || n < 20) {
        await call(client, "increaseBudget", { deliveryId: ids[n % ids.length]!, amount: 1n });
        n++;
      }
    })();
    const w = watchAll(client, { includeSnapshot: true });
    await waitUntil(() => w.caughtUp(), "caught_up", 15_000);
    writing = false;
    await writes;
    const finals = new Map<string, number>();
    for (const id of ids) finals.set(id, Number((await call(client, "getDelivery", { deliveryId: id })).delivery?.version));
    await waitUntil(() => ids.every((id) => {
      const snap = w.messages.find((m) => m.kind === "snapshot" && m.id === id)?.version ?? 0;
      return Math.max(snap, ...(versionsById(w.messages).get(id) ?? [0])) === finals.get(id);
    }), "every delivery's last version");
    w.cancel();

    const caughtAt = w.messages.findIndex((m) => m.kind === "caughtUp");
    expect(w.messages.slice(0, caughtAt).every((m) => m.token === "")).toBe(true);
    expect(w.messages[caughtAt]!.token).not.toBe("");
    const firstChange = w.messages.findIndex((m) => m.kind === "change");
    const lastSnapshot = w.messages.map((m) => m.kind).lastIndexOf("snapshot");
    expect(firstChange === -1 || firstChange > lastSnapshot).toBe(true);
    for (const id of ids) {
      const snaps = w.messages.filter((m) => m.kind === "snapshot" && m.id === id);
      expect(snaps, id).toHaveLength(1);
      const changes = versionsById(w.messages).get(id) ?? [];
      expect(changes, id).toEqual(range(snaps[0]!.version! + 1, finals.get(id)!));
    }
  });

  it("resumes exactly after any message's token: before and after together are every change once", async () => {
    const first = watchAll(client, {});
    await waitUntil(() => first.caughtUp(), "caught_up");
    const ids = range(0, 3).map((i) => `resume-${uid()}-${i}`);
    for (const id of ids) await create(client, id);
    for (let v = 2; v <= 8; v++) for (const id of ids) await call(client, "increaseBudget", { deliveryId: id, amount: 1n });
    await waitUntil(() => ids.every((id) => (versionsById(first.messages).get(id) ?? []).length === 8), "all changes");
    first.cancel();

    const mine = first.messages.filter((m) => m.kind === "change" && ids.includes(m.id!));
    for (const cut of [3, 11, 20]) {
      const before = mine.slice(0, cut + 1);
      const resumed = watchAll(client, { resumeToken: mine[cut]!.token });
      await waitUntil(() => resumed.caughtUp(), "caught_up after the token");
      resumed.cancel();
      const after = resumed.messages.filter((m) => m.kind === "change" && ids.includes(m.id!));
      const union = versionsById([...before, ...after]);
      for (const id of ids) expect(union.get(id), `cut ${cut} ${id}`).toEqual(range(1, 8));
    }
  });

  it("refuses a foreign token, one of another filter, and a token with include_snapshot", async () => {
    const w = watchAll(client, { statuses: [S.DELIVERY_STATUS_READY] });
    await waitUntil(() => w.caughtUp(), "caught_up");
    w.cancel();
    const token = w.messages[0]!.token;

    const cases: [Partial<WatchDeliveriesRequest>, string, string][] = [
      [{ resumeToken: "garbage" }, "INVALID_ARGUMENT", "RESUME_TOKEN_INVALID"],
      [{ resumeToken: token }, "INVALID_ARGUMENT", "RESUME_TOKEN_MISMATCH"],
      [{ resumeToken: token, statuses: [S.DELIVERY_STATUS_READY], includeSnapshot: true }, "INVALID_ARGUMENT", "INVALID_FIELD"],
      [{ statuses: [0] }, "INVALID_ARGUMENT", "INVALID_FIELD"],
      [{ resumeToken: "x".repeat(65_537) }, "INVALID_ARGUMENT", "INVALID_FIELD"],
    ];
    for (const [request, code, reason] of cases) {
      const end = await within(watchAll(client, request).ended, "the refusal");
      expect(status[end.code]).toBe(code);
      expect(statusDetailsOf(end)?.errorInfo?.reason).toBe(reason);
    }
    // The right filter, in another order and with repeats, is the same filter.
    const again = watchAll(client, { statuses: [S.DELIVERY_STATUS_READY, S.DELIVERY_STATUS_READY], resumeToken: token });
    await waitUntil(() => again.caughtUp(), "the resumed watch");
    again.cancel();
  });
});

describe("WatchDeliveries on Redis: time, failures, replicas", () => {
  const DAY = 86_400_000;
  let clock = Date.now();
  let a: TestService;
  let b: TestService;
  let admin: Redis;

  beforeAll(async () => {
    a = await startTestService({ redisUrl: testRedisUrl(), safetyNetIntervalMs: 200, now: () => clock, config: { watchCheckpointMs: 100 } });
    b = await startTestService({ redisUrl: testRedisUrl(), keyPrefix: a.keyPrefix, safetyNetIntervalMs: 200 });
    admin = connectRedis(testRedisUrl());
  });

  afterAll(async () => {
    admin?.disconnect();
    await b?.stop();
    await a?.stop();
  });

  it("sends checkpoints while nothing matches, and their token resumes without loss", async () => {
    const client = a.client();
    const w = watchAll(client, { statuses: [S.DELIVERY_STATUS_CANCELLED] });
    await waitUntil(() => w.caughtUp(), "caught_up");
    expect(w.messages.some((m) => m.kind === "checkpoint")).toBe(false);
    // The injected clock moves on (the hub's timer looks at it): nothing matched for 100 ms.
    clock += 150;
    await waitUntil(() => w.messages.some((m) => m.kind === "checkpoint"), "a checkpoint", 5_000);
    const checkpoint = w.messages.find((m) => m.kind === "checkpoint")!;
    w.cancel();
    const id = `cp-${Math.random().toString(36).slice(2, 8)}`;
    await create(client, id);
    await call(client, "cancelDelivery", { deliveryId: id });

    const resumed = watchAll(client, { statuses: [S.DELIVERY_STATUS_CANCELLED], resumeToken: checkpoint.token });
    await waitUntil(() => resumed.caughtUp(), "caught_up");
    resumed.cancel();
    expect(resumed.messages.filter((m) => m.id === id).map((m) => m.version)).toEqual([2]);
  });

  it("refuses a token older than the feed's retention with OUT_OF_RANGE", async () => {
    const client = a.client();
    const w = watchAll(client, {});
    await waitUntil(() => w.caughtUp(), "caught_up");
    w.cancel();
    const saved = clock;
    clock += 8 * DAY;
    try {
      const end = await within(watchAll(client, { resumeToken: w.messages[0]!.token }).ended, "the refusal");
      expect(status[end.code]).toBe("OUT_OF_RANGE");
      expect(statusDetailsOf(end)?.errorInfo?.reason).toBe("RESUME_TOKEN_EXPIRED");
    } finally {
      clock = saved;
    }
  });

  it("gives a watcher on one replica every change made on another, while Pub/Sub connections are killed", async () => {
    const w = watchAll(b.client(), {});
    await waitUntil(() => w.caughtUp(), "caught_up");
    const client = a.client();
    const ids = range(0, 2).map((i) => `loss-${Math.random().toString(36).slice(2, 8)}-${i}`);
    for (const id of ids) await create(client, id);
    for (let round = 0; round < 5; round++) {
      await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
      for (const id of ids) await call(client, "increaseBudget", { deliveryId: id, amount: 1n });
    }
    await waitUntil(() => ids.every((id) => (versionsById(w.messages).get(id) ?? []).length === 6), "every change", 10_000);
    w.cancel();
    for (const id of ids) expect(versionsById(w.messages).get(id)).toEqual(range(1, 6));
  });

  it("holds a paused client's stream back without loss: 2,000 changes, then every one once, in order", async () => {
    const w = watchAll(b.client(), {}, { paused: true });
    const writer = a.client();
    const ids = range(0, 9).map((i) => `slow-${Math.random().toString(36).slice(2, 8)}-${i}`);
    // Ten deliveries of 200 versions each, written side by side (each one's commands in order).
    await Promise.all(
      ids.map(async (id) => {
        await create(writer, id);
        for (let v = 2; v <= 200; v++) await call(writer, "increaseBudget", { deliveryId: id, amount: 1n });
      }),
    );
    w.stream.resume();
    await waitUntil(() => ids.every((id) => (versionsById(w.messages).get(id) ?? []).length === 200), "every change after the pause", 20_000);
    w.cancel();
    for (const id of ids) expect(versionsById(w.messages).get(id)).toEqual(range(1, 200));
  }, 40_000);

  it("ends open streams with UNAVAILABLE (SHUTTING_DOWN) at shutdown", async () => {
    const extra = await startTestService({ redisUrl: testRedisUrl(), keyPrefix: a.keyPrefix });
    const w = watchAll(extra.client(), {});
    await waitUntil(() => w.caughtUp(), "caught_up");
    await extra.stop();
    const end = await within(w.ended, "the end");
    expect(status[end.code]).toBe("UNAVAILABLE");
    expect(statusDetailsOf(end)?.errorInfo?.reason).toBe("SHUTTING_DOWN");
    expect(end.details).toMatch(/resume_token/);
  });
});
