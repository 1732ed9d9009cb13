/**
 * Shared pieces of the end-to-end tests on a real Redis Cluster, a real
 * Sentinel setup and a frozen Redis: targets built through the real config
 * parser, a WatchDeliveries recorder, delivery ids placed on chosen
 * primaries, and writers that retry UNAVAILABLE with the same request id
 * and record what was acknowledged.
 */
import { randomUUID } from "node:crypto";
import { type ClientReadableStream, status, type StatusObject } from "@grpc/grpc-js";
import { expect } from "vitest";
import { type DeliveryServiceClient, WatchDeliveriesRequest, type WatchDeliveriesResponse } from "../../src/gen/delivery/v1/delivery.js";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { type ClusterTarget, parseRedisTarget, type SentinelTarget, type SingleTarget } from "../../src/store/redis/redisTarget.js";
import { isServiceError } from "../support/deliveries.js";
import type { RedisClusterHandle } from "../support/redisCluster.js";
import type { RedisSentinelHandle } from "../support/redisSentinel.js";
import { call } from "../support/testServer.js";
import type { WatchRecorder } from "../support/watch.js";

type Env = Record<string, string>;

/** A Cluster target as the service reads it from the environment. */
export function clusterTargetOf(cluster: RedisClusterHandle, env: Env = {}): ClusterTarget {
  const target = parseRedisTarget({ REDIS_CLUSTER_NODES: cluster.seeds, ...env });
  if (target.mode !== "cluster") throw new Error(`expected a cluster target, got ${target.mode}`);
  return target;
}

/** A Sentinel target as the service reads it from the environment. */
export function sentinelTargetOf(sentinel: RedisSentinelHandle, env: Env = {}): SentinelTarget {
  const target = parseRedisTarget({ REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_MASTER: sentinel.masterName, ...env });
  if (target.mode !== "sentinel") throw new Error(`expected a sentinel target, got ${target.mode}`);
  return target;
}

/** A single-Redis target as the service reads it from the environment. */
export function singleTargetOf(url: string, env: Env = {}): SingleTarget {
  const target = parseRedisTarget({ REDIS_URL: url, ...env });
  if (target.mode !== "single") throw new Error(`expected a single target, got ${target.mode}`);
  return target;
}

export const uid = () => Math.random().toString(36).slice(2, 8);

/** The integers from `from` to `to`, inclusive. */
export const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/** The log key of a delivery under `keyPrefix` (the service's default 16 partitions). */
export const logKeyOf = (keyPrefix: string, id: string) => createRedisKeys(keyPrefix).delivery(id).log;

/**
 * `perPrimary` fresh delivery ids for each of `primaryPorts` (as of the
 * cluster's last refresh), in round-robin order: ids[i] is on
 * primaryPorts[i % primaryPorts.length].
 */
export function idsOnPrimaries(cluster: RedisClusterHandle, keyPrefix: string, primaryPorts: readonly number[], perPrimary: number, label: string): string[] {
  const byPort = new Map<number, string[]>(primaryPorts.map((p) => [p, []]));
  const tag = uid();
  for (let n = 0; [...byPort.values()].some((ids) => ids.length < perPrimary); n++) {
    if (n > 100_000) throw new Error("could not place delivery ids on every primary");
    const id = `${label}-${tag}-${n}`;
    const ids = byPort.get(cluster.primaryForKey(logKeyOf(keyPrefix, id)).port);
    if (ids && ids.length < perPrimary) ids.push(id);
  }
  return range(0, perPrimary * primaryPorts.length - 1).map((i) => byPort.get(primaryPorts[i % primaryPorts.length]!)![Math.floor(i / primaryPorts.length)]!);
}

// ---------------------------------------------------------------------------
// WatchDeliveries recorder (as in test/watch/watchDeliveries.test.ts)
// ---------------------------------------------------------------------------

export interface Received {
  readonly kind: string;
  readonly token: string;
  readonly id?: string;
  readonly version?: number;
}

export interface FeedRecorder {
  readonly stream: ClientReadableStream<WatchDeliveriesResponse>;
  readonly messages: Received[];
  readonly ended: Promise<StatusObject>;
  caughtUp(): boolean;
  cancel(): void;
}

export function watchAll(client: DeliveryServiceClient, request: Partial<WatchDeliveriesRequest> = {}): FeedRecorder {
  const stream = client.watchDeliveries(WatchDeliveriesRequest.fromPartial(request));
  const messages: Received[] = [];
  stream.on("data", (m: WatchDeliveriesResponse) => {
    const k = m.kind;
    if (k?.$case === "snapshot") messages.push({ kind: "snapshot", token: m.resumeToken, id: k.snapshot.delivery?.id, version: Number(k.snapshot.delivery?.version) });
    else if (k?.$case === "change") messages.push({ kind: "change", token: m.resumeToken, id: k.change.event?.deliveryId, version: Number(k.change.event?.version) });
    else messages.push({ kind: k?.$case ?? "none", token: m.resumeToken });
  });
  const ended = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
  stream.on("error", () => {});
  return { stream, messages, ended, caughtUp: () => messages.some((m) => m.kind === "caughtUp"), cancel: () => stream.cancel() };
}

/** Versions per delivery of the changes in a list of messages. */
export function versionsById(messages: readonly Received[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of messages) if (m.kind === "change") out.set(m.id!, [...(out.get(m.id!) ?? []), m.version!]);
  return out;
}

// ---------------------------------------------------------------------------
// Writers that retry UNAVAILABLE with the same request id
// ---------------------------------------------------------------------------

/** An acknowledged command: its request id and the version the service answered with. */
export interface Ack {
  readonly requestId: string;
  readonly version: number;
  readonly atMs: number;
}

export interface RetryStats {
  unavailable: number;
}

/**
 * Runs `attempt` until it succeeds, again after every UNAVAILABLE (the same
 * request, hence the same request_id), until `timeoutMs` is over.
 */
export async function untilAcknowledged<T>(attempt: () => Promise<T>, stats: RetryStats, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!isServiceError(error) || error.code !== status.UNAVAILABLE || Date.now() > deadline) throw error;
      stats.unavailable++;
      // Backoff between retries, not synchronisation.
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** One writer's delivery, what was acknowledged on it and how often it was told UNAVAILABLE. */
export interface Writer {
  readonly id: string;
  readonly acks: Ack[];
  readonly stats: RetryStats;
  /** Resolves once the writer has stopped and cancelled its delivery (the cancellation is the last ack). */
  readonly done: Promise<void>;
}

/**
 * Wraps waits so that the first writer to fail (an error other than
 * UNAVAILABLE, or UNAVAILABLE past its deadline) fails the wait at once with
 * that error, instead of at the wait's deadline. Also marks every writer's
 * outcome as handled.
 */
export function guardAgainst(writers: readonly Writer[]): <T>(p: Promise<T>) => Promise<T> {
  const failure = new Promise<never>((_, reject) => {
    for (const w of writers) w.done.catch(reject);
  });
  failure.catch(() => {});
  return (p) => Promise.race([p, failure]);
}

/** Creates `id` (with a request id, retried while UNAVAILABLE) and records the ack. */
export async function createAcknowledged(client: DeliveryServiceClient, id: string, acks: Ack[], stats: RetryStats): Promise<void> {
  const requestId = randomUUID();
  const { event } = await untilAcknowledged(() => call(client, "createDelivery", { deliveryId: id, budget: 1_000n, requestId }), stats);
  acks.push({ requestId, version: Number(event?.version), atMs: Date.now() });
}

/**
 * IncreaseBudget on `id` over and over until `stop()` says so, each with a
 * fresh request id that every retry repeats; then CancelDelivery (terminal:
 * the watchers end with OK). `acks` already holds the creation.
 */
export function startWriter(client: DeliveryServiceClient, id: string, acks: Ack[], stop: () => boolean): Writer {
  const stats: RetryStats = { unavailable: 0 };
  const done = (async () => {
    while (!stop()) {
      const requestId = randomUUID();
      const { event } = await untilAcknowledged(() => call(client, "increaseBudget", { deliveryId: id, amount: 1n, requestId }), stats);
      acks.push({ requestId, version: Number(event?.version), atMs: Date.now() });
    }
    const requestId = randomUUID();
    const { event } = await untilAcknowledged(() => call(client, "cancelDelivery", { deliveryId: id, reason: "test over", requestId }), stats);
    acks.push({ requestId, version: Number(event?.version), atMs: Date.now() });
  })();
  return { id, acks, stats, done };
}

/**
 * The log of `id` is exactly the acknowledged commands: versions 1..n, each
 * acknowledged request id once, at the version it was acknowledged with,
 * and no other request id. Returns the events' request ids by version.
 */
export async function expectLogIsAcknowledged(client: DeliveryServiceClient, id: string, acks: readonly Ack[]): Promise<string[]> {
  const { events } = await call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: 0n, pageSize: 1000 });
  expect(events.length, `${id}: more events than one page`).toBeLessThan(1000);
  const versions = events.map((e) => Number(e.version));
  expect(versions, `${id}: versions`).toEqual(range(1, events.length));
  const requestIds = events.map((e) => e.requestId);
  expect(new Set(requestIds).size, `${id}: a request id twice in the log`).toBe(requestIds.length);
  const missing = acks.filter((a) => requestIds[a.version - 1] !== a.requestId);
  expect(missing, `${id}: acknowledged commands not in the log at their version`).toEqual([]);
  expect([...requestIds].sort(), `${id}: the log holds exactly the acknowledged commands`).toEqual(acks.map((a) => a.requestId).sort());
  return requestIds;
}

/** What is wrong with a watcher's messages against the log (request ids by version), or undefined. */
export function watchProblem(w: WatchRecorder, log: readonly string[]): string | undefined {
  const versions = w.versions();
  const expected = range(1, log.length);
  const at = versions.findIndex((v, i) => v !== expected[i]);
  if (at >= 0 || versions.length !== expected.length) {
    const i = at < 0 ? versions.length : at;
    return `versions 1..${log.length} expected, got ${versions.length} messages; at index ${i}: ${versions.slice(Math.max(0, i - 2), i + 3).join(",")}`;
  }
  const wrong = w.messages.findIndex((m, i) => m.event?.requestId !== log[i] || m.delivery?.version !== m.event?.version);
  if (wrong >= 0) return `message ${wrong} (version ${versions[wrong]}) is not the logged event`;
  if (w.endedWith?.code !== status.OK) return `ended with ${w.endedWith ? status[w.endedWith.code] : "nothing"} ${w.endedWith?.details ?? ""}`;
  return undefined;
}

/** Nearest-rank percentile of sorted numbers. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
