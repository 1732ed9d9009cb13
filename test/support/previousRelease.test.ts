/**
 * Self-test of previousRelease.ts: release 1 built from git (cached), run as a
 * process on a Redis of its own, filled, and what it wrote checked on the raw
 * keys against the manifest. The first run in a fresh cache builds (npm ci +
 * tsc, minutes); later runs take seconds.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildPreviousRelease,
  callPreviousRelease,
  fillWithPreviousRelease,
  type JsonObject,
  type PreviousRelease,
  type PreviousReleaseManifest,
  startPreviousRelease,
} from "./previousRelease.js";
import { type RedisServerHandle, startRedisServer } from "./redisServer.js";

const BUILD_TIMEOUT_MS = 16 * 60_000;

describe("previous release (release 1) as a process", () => {
  let redisServer: RedisServerHandle | undefined;
  let redis: Redis | undefined;
  let old: PreviousRelease | undefined;
  let manifest: PreviousReleaseManifest;

  beforeAll(async () => {
    const buildStarted = performance.now();
    const dir = await buildPreviousRelease();
    console.log(`[previous release] build (or cache hit) ${((performance.now() - buildStarted) / 1000).toFixed(1)} s: ${dir}`);
    redisServer = await startRedisServer();
    redis = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await redis.connect();
    const started = performance.now();
    old = await startPreviousRelease({ redisUrl: redisServer.url, dir });
    manifest = await fillWithPreviousRelease(old.client);
    console.log(
      `[previous release] start + fill ${((performance.now() - started) / 1000).toFixed(1)} s: ` +
        `${manifest.deliveries.length} deliveries, ${manifest.deliveries.reduce((n, d) => n + d.version, 0)} events`,
    );
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await old?.stop();
    redis?.disconnect();
    await redisServer?.stop();
  });

  it("writes deliveries in every status, with both kinds of ids, replays and enough of them", () => {
    expect(manifest.deliveries.length).toBeGreaterThanOrEqual(20);
    const statuses = new Set(manifest.deliveries.map((d) => d.status));
    expect([...statuses].sort()).toEqual([
      "DELIVERY_STATUS_ACTIVE",
      "DELIVERY_STATUS_CANCELLED",
      "DELIVERY_STATUS_COLLECTED",
      "DELIVERY_STATUS_COMPLETED",
      "DELIVERY_STATUS_READY",
    ]);
    expect(new Set(manifest.deliveries.map((d) => d.idChosenBy))).toEqual(new Set(["client", "server"]));
    // Cancelled from each status it can be cancelled in (the event before the cancellation says which).
    const cancelledFrom = new Set(
      manifest.deliveries
        .filter((d) => d.status === "DELIVERY_STATUS_CANCELLED")
        .map((d) => d.steps[d.steps.length - 2]?.delivery.status),
    );
    expect(cancelledFrom).toEqual(new Set(["DELIVERY_STATUS_READY", "DELIVERY_STATUS_ACTIVE", "DELIVERY_STATUS_COLLECTED"]));
    const collectedPartly = manifest.deliveries.find(
      (d) => d.status === "DELIVERY_STATUS_COLLECTED" && d.final.deliveredQuantity !== "0",
    );
    expect(collectedPartly).toBeDefined();
    expect(manifest.deliveries.some((d) => d.steps.some((s) => s.method === "increaseBudget"))).toBe(true);
    expect(manifest.deliveries.some((d) => /[^\x00-\x7f]/.test(String(d.final.notes)))).toBe(true);
    expect(manifest.replays.length).toBeGreaterThanOrEqual(1);
    for (const d of manifest.deliveries) {
      expect(d.steps.every((s) => s.requestId !== "" && s.event.requestId === s.requestId)).toBe(true);
      expect(d.requestIds).toEqual(d.steps.map((s) => s.requestId));
      expect(d.final).toEqual(d.steps.at(-1)?.delivery);
    }
    expect(manifest.listOrder).toEqual(manifest.deliveries.map((d) => d.id));
  });

  it("stores release 1's layout: the keys, their types and one stream entry <version>-0 per event", async () => {
    const r = redis!;
    for (const d of manifest.deliveries) {
      const events = `delivery:{${d.id}}:events`;
      const state = `delivery:{${d.id}}:state`;
      const requests = `delivery:{${d.id}}:requests`;
      expect([await r.type(events), await r.type(state), await r.type(requests)], d.scenario).toEqual(["stream", "hash", "hash"]);

      const entries = await r.xrange(events, "-", "+");
      expect(entries.map(([id]) => id), d.scenario).toEqual(d.steps.map((s) => `${s.version}-0`));
      for (const [index, [, fields]] of entries.entries()) {
        // Fields event and delivery: canonical proto JSON (ts-proto toJSON: 64-bit integers as
        // strings, Timestamps as RFC 3339, default values left out), not the manifest's proto-loader shape.
        expect(fields.filter((_, i) => i % 2 === 0), d.scenario).toEqual(["event", "delivery"]);
        const event = JSON.parse(fields[1]!) as { version: string; deliveryId: string; requestId: string; occurredAt: string };
        const delivery = JSON.parse(fields[3]!) as { version: string; id: string; status: string };
        const step = d.steps[index]!;
        const occurredAt = step.event.occurredAt as { seconds: string; nanos: number };
        expect([event.version, event.deliveryId, event.requestId, delivery.version, delivery.id, delivery.status]).toEqual([
          String(index + 1),
          d.id,
          d.requestIds[index],
          String(index + 1),
          d.id,
          step.delivery.status,
        ]);
        expect(Date.parse(event.occurredAt)).toBe(Number(occurredAt.seconds) * 1000 + Math.floor(occurredAt.nanos / 1e6));
      }

      const stateHash = await r.hgetall(state);
      expect(Object.keys(stateHash).sort()).toEqual(["delivery", "version"]);
      expect(stateHash.version).toBe(String(d.version));
      expect(stateHash.delivery).toBe(entries.at(-1)?.[1][3]);

      // requestKey -> "<version>:<fingerprint>"; a replay adds nothing.
      const requestHash = await r.hgetall(requests);
      expect(Object.keys(requestHash).sort(), d.scenario).toEqual([...d.requestIds].sort());
      for (const [index, requestId] of d.requestIds.entries()) {
        expect(requestHash[requestId]).toMatch(new RegExp(`^${index + 1}:[A-Za-z0-9_-]{22}$`));
      }
    }

    // The global index: one entry per created delivery, field id, in creation order.
    expect(await r.type("deliveries")).toBe("stream");
    const index = await r.xrange("deliveries", "-", "+");
    expect(index.map(([, fields]) => fields)).toEqual(manifest.deliveries.map((d) => ["id", d.id]));
    expect(index.map(([, fields]) => fields[1])).toEqual(manifest.listOrder);

    // Nothing else: 3 keys per delivery and the index.
    const keys = await r.keys("*");
    expect(keys.length).toBe(manifest.deliveries.length * 3 + 1);
  });

  it("answers ListDeliveryEvents with the events it answered the commands with", async () => {
    for (const d of manifest.deliveries) {
      const { events } = await callPreviousRelease(old!.client, "listDeliveryEvents", { deliveryId: d.id });
      expect(events, d.scenario).toEqual(d.steps.map((s) => s.event));
    }
  });

  it("replays a recorded request_id with the recorded event, writing nothing", async () => {
    const d = manifest.deliveries.find((x) => x.scenario === "completed-in-parts")!;
    const step = d.steps[2]!; // the pickup, long since followed by deliveries
    const before = await redis!.xlen(`delivery:{${d.id}}:events`);
    const response = await callPreviousRelease(old!.client, step.method, step.request);
    expect(response.event).toEqual(step.event);
    expect(response.delivery).toEqual(step.delivery);
    expect(await redis!.xlen(`delivery:{${d.id}}:events`)).toBe(before);
    // The fill's own replays answered the same way.
    for (const replay of manifest.replays) {
      const original = manifest.deliveries.find((x) => x.id === replay.deliveryId)!.steps[replay.version - 1]!;
      expect({ event: replay.event, delivery: replay.delivery }).toEqual({ event: original.event, delivery: original.delivery });
    }
  });

  it("keeps uint64/int64 as strings in the manifest (client made from the old proto)", () => {
    const d = manifest.deliveries.find((x) => x.scenario === "collected-free-many")!;
    const final: JsonObject = d.final;
    expect(final.quantity).toBe("4999999999");
    const max = manifest.deliveries.find((x) => x.scenario === "ready-max-budget")!;
    expect(max.final.budget).toBe(String(Number.MAX_SAFE_INTEGER));
  });
});
