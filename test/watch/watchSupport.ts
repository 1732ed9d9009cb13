/**
 * Expectations of the watch tests (every version once, in order) and retries
 * across a Redis outage. The watch recorder, delivery calls and waiting are
 * shared: see ../support/watch.ts, ../support/deliveries.ts and
 * ../support/async.ts.
 */
import { status } from "@grpc/grpc-js";
import { expect } from "vitest";
import { isServiceError } from "../support/deliveries.js";
import type { WatchRecorder } from "../support/watch.js";

/** A safety-net interval no test outlives: what passes must have passed through Pub/Sub or its repair. */
export const SAFETY_NET_OFF_MS = 600_000;

/** The integers from `fromInclusive` to `toInclusive`, in order. */
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
