/**
 * The watchers of the fanout, memory, firehose, cluster and scale sections, spread over `processes`
 * child processes (bench/watcherChild.mjs), each with its share of the
 * `channels` connections: one process alone saturates its event loop below
 * the 50,000 messages/s of W=5,000 at 10 pushes/s. The same pool serves every
 * kind of server: gRPC WatchDelivery streams, NATS KV watches, core NATS
 * subscriptions.
 */
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startChild } from "./child.mjs";
import { percentile, sortNumbers } from "./stats.mjs";

const WATCHER_CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "watcherChild.mjs");

/**
 * `target` of open(): {transport: "grpc", port, deliveryId}, {transport: "firehose", port}
 * (WatchDeliveries; versions are then keys "<delivery id>:<version>"),
 * {transport: "nats-kv", url, bucket, key} or {transport: "nats-core", url, subject}.
 */
export async function startWatcherPool({ processes: n, channels }) {
  const children = await Promise.all(Array.from({ length: n }, (_, i) => startChild(WATCHER_CHILD, [], { name: `watchers ${i + 1}` })));
  const share = (total, i) => Math.floor(total / n) + (i < total % n ? 1 : 0);
  // A version is complete once every process has it on every stream.
  const reports = new Map();
  const done = new Map();
  const waiting = new Map();
  for (const child of children) {
    child.onMessage((m) => {
      if (m.type !== "all") return;
      const r = reports.get(m.version) ?? { count: 0, lastNs: 0 };
      r.count++;
      r.lastNs = Math.max(r.lastNs, m.lastNs);
      reports.set(m.version, r);
      if (r.count < n) return;
      reports.delete(m.version);
      const waiter = waiting.get(m.version);
      if (waiter) {
        waiting.delete(m.version);
        waiter(r.lastNs);
      } else done.set(m.version, r.lastNs);
    });
  }
  return {
    async open(target, count) {
      const results = await Promise.all(
        children.map((c, i) => c.request("open", { transport: "grpc", ...target, count: share(count, i), channels: Math.max(1, channels / n) }, 90_000)),
      );
      return { opened: count, ms: Math.max(...results.map((r) => r.ms)) };
    },
    /** Resolves with the time the last stream got `version`. */
    whenAll(version, timeoutMs = 15_000) {
      if (done.has(version)) {
        const t = done.get(version);
        done.delete(version);
        return Promise.resolve(t);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(version);
          reject(new Error(`version ${version} did not reach every watcher within ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(version, (t) => {
          clearTimeout(timer);
          resolve(t);
        });
      });
    },
    async stats(acks) {
      const parts = await Promise.all(children.map((c) => c.request("stats", { acks })));
      const sorted = sortNumbers(parts.flatMap((p) => p.fromAck));
      const fromSend = sortNumbers(parts.flatMap((p) => p.fromSend));
      return {
        received: sorted.length,
        expected: parts.reduce((a, p) => a + p.expected, 0),
        p50_ms: percentile(sorted, 50),
        p99_ms: percentile(sorted, 99),
        max_ms: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
        from_send_p50_ms: percentile(fromSend, 50),
        from_send_p99_ms: percentile(fromSend, 99),
        messageBytes: Math.max(...parts.map((p) => p.messageBytes)),
        // Since the last open: versions a stream skipped or got twice, summed over the streams,
        // and the most one stream skipped.
        missedVersions: parts.reduce((a, p) => a + p.missedVersions, 0),
        repeatedVersions: parts.reduce((a, p) => a + p.repeatedVersions, 0),
        maxMissedPerStream: Math.max(...parts.map((p) => p.maxMissedPerStream)),
        errors: parts.reduce((a, p) => a + p.errors, 0),
        firstError: parts.find((p) => p.firstError)?.firstError,
        perVersion: parts.map((p) => p.perVersion),
      };
    },
    closeAll: (body = {}) => Promise.all(children.map((c) => c.request("closeAll", body))),
    usage: () => Promise.all(children.map((c) => c.request("usage"))),
    stop: () => Promise.all(children.map((c) => c.stop())),
  };
}
