/**
 * Helpers for the watch tests: a recorder around a real WatchDelivery client
 * stream, commands with retries, and polling with a deadline (never sleeps as
 * synchronisation).
 */
import { randomUUID } from "node:crypto";
import { type ClientReadableStream, type ServiceError, status, type StatusObject } from "@grpc/grpc-js";
import { expect } from "vitest";
import {
  type DeliveryServiceClient,
  DeliveryStatus,
  WatchDeliveryRequest,
  type WatchDeliveryResponse,
} from "../../src/gen/delivery/v1/delivery.js";
import { call } from "../support/testServer.js";

/** A safety-net interval no test outlives: what passes must have passed through Pub/Sub or its repair. */
export const SAFETY_NET_OFF_MS = 600_000;

export interface WatchEnd {
  readonly code: status;
  readonly details: string;
}

export interface WatchRecorder {
  readonly stream: ClientReadableStream<WatchDeliveryResponse>;
  readonly messages: WatchDeliveryResponse[];
  /** The version of each message: the event's, or the delivery's for a snapshot. */
  versions(): number[];
  lastVersion(): number;
  /** The final status, once every message before it has been read. */
  readonly ended: Promise<WatchEnd>;
  readonly endedWith: WatchEnd | undefined;
  cancel(): void;
}

/** Opens a watch and records everything it receives. */
export function watch(
  client: DeliveryServiceClient,
  request: { deliveryId: string; afterVersion?: bigint | number },
  options: { paused?: boolean } = {},
): WatchRecorder {
  const stream = client.watchDelivery(
    WatchDeliveryRequest.fromPartial({
      deliveryId: request.deliveryId,
      afterVersion: request.afterVersion === undefined ? undefined : BigInt(request.afterVersion),
    }),
  );
  const messages: WatchDeliveryResponse[] = [];
  let endedWith: WatchEnd | undefined;
  let statusSeen: StatusObject | undefined;
  let streamEnded = false;
  const ended = new Promise<WatchEnd>((resolve) => {
    // OK: 'status' can come before the last 'data' is read; wait for 'end' too.
    const settle = () => {
      if (!statusSeen || endedWith) return;
      if (statusSeen.code === status.OK && !streamEnded) return;
      endedWith = { code: statusSeen.code, details: statusSeen.details };
      resolve(endedWith);
    };
    stream.on("status", (s: StatusObject) => {
      statusSeen = s;
      settle();
    });
    stream.on("end", () => {
      streamEnded = true;
      settle();
    });
    stream.on("error", () => {
      // Reported through 'status'.
    });
  });
  stream.on("data", (message: WatchDeliveryResponse) => messages.push(message));
  if (options.paused) stream.pause();
  const versionOf = (m: WatchDeliveryResponse) => Number(m.event?.version ?? m.delivery?.version ?? -1n);
  return {
    stream,
    messages,
    versions: () => messages.map(versionOf),
    lastVersion: () => {
      const last = messages.at(-1);
      return last ? versionOf(last) : 0;
    },
    ended,
    get endedWith() {
      return endedWith;
    },
    cancel: () => stream.cancel(),
  };
}

/** Polls until the condition holds; fails with `what` after the deadline. */
export async function waitUntil(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Awaits a promise, failing after a deadline instead of hanging the test. */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function range(fromInclusive: number, toInclusive: number): number[] {
  return Array.from({ length: Math.max(0, toInclusive - fromInclusive + 1) }, (_, i) => fromInclusive + i);
}

/** What is wrong with a list of versions that should be exactly `expected`, or undefined. */
function versionMismatch(actual: readonly number[], expected: readonly number[]): string | undefined {
  const firstBad = actual.findIndex((v, i) => v !== expected[i]);
  if (firstBad < 0 && actual.length === expected.length) return undefined;
  const at = firstBad < 0 ? actual.length : firstBad;
  // A 10,000-element diff is unreadable: show where it goes wrong.
  return (
    `expected versions ${expected[0]}..${expected.at(-1)} once each (${expected.length} messages), ` +
    `got ${actual.length}; first difference at index ${at}: got ${actual.slice(Math.max(0, at - 2), at + 3).join(",")}`
  );
}

/**
 * Every version after `afterVersion` up to `lastVersion`, once each, in order,
 * each message carrying its event and the state after it.
 */
export function expectEveryVersion(recorder: WatchRecorder, afterVersion: number, lastVersion: number): void {
  const problem = versionMismatch(recorder.versions(), range(afterVersion + 1, lastVersion));
  const withoutState = recorder.messages.filter((m) => m.event === undefined || m.delivery?.version !== m.event.version);
  expect(problem).toBeUndefined();
  expect(withoutState).toHaveLength(0);
}

/** A snapshot first (at whatever version), then every later version up to lastVersion once, in order. */
export function expectSnapshotThenEveryVersion(recorder: WatchRecorder, lastVersion: number): void {
  const [first, ...rest] = recorder.messages;
  expect(first?.event).toBeUndefined();
  const snapshotVersion = Number(first?.delivery?.version ?? -1n);
  expect(snapshotVersion).toBeGreaterThanOrEqual(1);
  const versions = rest.map((m) => Number(m.event?.version ?? -1n));
  expect(versionMismatch(versions, range(snapshotVersion + 1, lastVersion))).toBeUndefined();
}

export async function createDelivery(client: DeliveryServiceClient, budget = 1_000n): Promise<string> {
  const { delivery } = await call(client, "createDelivery", { budget, notes: "watched", requestId: randomUUID() });
  if (!delivery) throw new Error("createDelivery returned no delivery");
  return delivery.id;
}

/**
 * The version the command produced. Contention that outlasts the service's
 * own retries (ABORTED) is retried here with the same request_id, as a
 * client would: loaded 2-core machines make it possible.
 */
export async function increaseBudget(client: DeliveryServiceClient, deliveryId: string, amount = 1n): Promise<number> {
  const requestId = randomUUID();
  for (let attempt = 1; ; attempt++) {
    try {
      const { event } = await call(client, "increaseBudget", { deliveryId, amount, requestId });
      return Number(event?.version);
    } catch (error) {
      if (!isServiceError(error) || error.code !== status.ABORTED || attempt >= 5) throw error;
    }
  }
}

export async function cancelDelivery(client: DeliveryServiceClient, deliveryId: string): Promise<number> {
  const { event, delivery } = await call(client, "cancelDelivery", { deliveryId, reason: "test over", requestId: randomUUID() });
  expect(delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_CANCELLED);
  return Number(event?.version);
}

export function isServiceError(error: unknown): error is ServiceError {
  return typeof error === "object" && error !== null && "code" in error && "details" in error;
}

/**
 * Retries a command (same request, hence same request_id) while the service
 * answers UNAVAILABLE, until it succeeds or the deadline passes.
 */
export async function retryWhileUnavailable<T>(
  attempt: () => Promise<T>,
  onUnavailable: () => void,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (!isServiceError(error) || error.code !== status.UNAVAILABLE || Date.now() > deadline) throw error;
      onUnavailable();
      // Backoff between retries, not synchronisation.
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}
