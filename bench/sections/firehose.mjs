/**
 * Firehose: WatchDeliveries, every change of every delivery on one stream.
 *
 * w<W> (W = 100; 20 in a smoke): W WatchDeliveries watchers (no filter, no
 * snapshot) spread over the watcher processes and connections of the fanout
 * section (bench/watcherChild.mjs, transport "firehose"), while IncreaseBudget
 * commands go round-robin over D = 1,000 ACTIVE deliveries (100 in a smoke;
 * created and started before the watchers open). The same trial as fanout's
 * (bench/sections/fanout.mjs: three unmeasured pushes, 20 commands at 10/s
 * for the latency from each command's acknowledgement to each watcher's
 * receipt, then a closed loop for delivered messages/s); a receipt is matched
 * to its command by "<delivery id>:<version>".
 *
 * Baseline: the per-delivery fanout at the same message rate: W WatchDelivery
 * watchers of one delivery and the same IncreaseBudget commands on it (the
 * fanout section's trial at W). Each command reaches W watchers on both sides,
 * so the messages per command and per second are the same, through the same
 * watcher processes and connections; what differs is the path (the firehose
 * reads the partition's change feed and the event from Redis after a wake-up,
 * the per-delivery watch gets the event in its Pub/Sub message), and the
 * firehose's deliveries are spread over the partitions. W WatchDelivery
 * watchers on each of the D deliveries (W x D streams) would be the literal
 * equivalent, but 100,000 streams are ten times the service's MAX_WATCHERS.
 * Each side on a server process of its own (the feed's tailers, once started,
 * stay for the life of the process). Targets: delivered/s >= 0.8 x and the
 * p99 (10 cmd/s) <= 1.5 x the baseline's.
 *
 * snapshot_10k_ms: WatchDeliveries with include_snapshot over 10,000 stored
 * deliveries (500 in a smoke; READY, ACTIVE and COMPLETED, written straight
 * through the service's Redis store as the list section does) until caught_up,
 * on a fresh redis-server and service of their own, one stream from this
 * process (the generated client, grpc-js defaults), after one unmeasured
 * snapshot. Target: < 1,000 ms.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { evolve, initialState } from "../../dist/domain/index.js";
import { createRedisEventStore } from "../../dist/store/redis/redisEventStore.js";
import { benchId, BUDGET, NOTES } from "../lib/fixtures.mjs";
import { callUnary, clientFor } from "../lib/grpcClient.mjs";
import { createMeasure, limitedBy, utilisation } from "../lib/measure.mjs";
import { startPrivateService } from "../lib/privateService.mjs";
import { fmt, metText, ratioTarget, ratioText, trio, trioOf } from "../lib/report.mjs";
import { nowNs, round, spread } from "../lib/stats.mjs";
import { startTogether, watchSetup } from "../lib/watchSetup.mjs";
import { FANOUT_ROWS, fanoutTrial, summariseTrials } from "./fanout.mjs";

const SNAPSHOT_TARGET_MS = 1_000;

/** `n` deliveries created and started through the service, 32 at a time. */
async function createActive(client, n, tag) {
  const ids = Array.from({ length: n }, () => benchId(tag));
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < ids.length) {
        const id = ids[next++];
        await callUnary(client, "createDelivery", { deliveryId: id, budget: BUDGET, notes: NOTES, requestId: `${id}-c` });
        await callUnary(client, "startDelivery", { deliveryId: id, expectedVersion: undefined, requestId: `${id}-s` });
      }
    }),
  );
  return ids;
}

/**
 * The firehose's shape of bench/lib/watchSetup.mjs: a service child, a watcher
 * pool, D started deliveries; command() -> {version: "<id>:<version>", ackNs,
 * sentNs}, IncreaseBudget round-robin over them.
 */
async function firehoseSetup(ctx, W, D, run) {
  const [server, watchers] = await startTogether([ctx.servers.startServer("real"), ctx.startWatcherPool()]);
  const client = clientFor(server.port);
  const close = async () => {
    client.close();
    await watchers.stop();
    await server.stop();
  };
  try {
    const ids = await createActive(client, D, "h");
    let n = 0;
    const command = async () => {
      const k = n++;
      const deliveryId = ids[k % ids.length];
      const sentNs = nowNs();
      const response = await callUnary(client, "increaseBudget", { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-${run}-${k}`, amount: 1n });
      const ackNs = nowNs();
      return { version: `${deliveryId}:${Number(response.event.version)}`, ackNs, sentNs };
    };
    const open = async (count) => {
      const opened = await watchers.open({ transport: "firehose", port: server.port }, count);
      const usage = await server.usage();
      if (usage.feedWatchers !== count) throw new Error(`firehose: the server has ${usage.feedWatchers} WatchDeliveries watchers, expected ${count}`);
      return opened;
    };
    // Warm-up: the code paths of a watch, a change and a cancel, then idle.
    await open(Math.min(W, 50));
    await watchers.whenAll((await command()).version);
    await watchers.closeAll();
    await sleep(200);
    return { kind: "firehose", server, watchers, whenAll: watchers.whenAll, command, open, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** The events that take a delivery from nothing to each status the snapshot holds. */
const LIVES = {
  READY: [{ type: "created", budgetMinor: 1_000_000, notes: NOTES }],
  ACTIVE: [{ type: "created", budgetMinor: 1_000_000, notes: NOTES }, { type: "started" }],
  COMPLETED: [
    { type: "created", budgetMinor: 1_000_000, notes: NOTES },
    { type: "started" },
    { type: "productsPickedUp", purchasePriceMinor: 300, quantity: 10 },
    { type: "productsDelivered", sellPriceMinor: 450, quantity: 10 },
  ],
};

/** `n` deliveries (half READY, a quarter ACTIVE, a quarter COMPLETED) written straight through the store, pipelined. */
async function fill(store, n) {
  const all = Array.from({ length: n }, (_, i) => ({ id: benchId("s"), life: LIVES[["READY", "ACTIVE", "READY", "COMPLETED"][i % 4]], state: initialState }));
  const append = (d, data) => {
    const version = d.state.version + 1;
    const event = { deliveryId: d.id, version, occurredAtMs: Date.now(), requestId: randomUUID(), actor: "", data };
    const record = { event, delivery: evolve(d.state, event) };
    const previousStatus = d.state.status;
    d.state = record.delivery;
    return store.append({ record, expectedVersion: version - 1, previousStatus, fingerprint: "bench" });
  };
  for (let start = 0; start < n; start += 2_000) {
    const batch = all.slice(start, start + 2_000);
    for (let step = 0; step < 4; step++) {
      const due = batch.filter((d) => d.life.length > step);
      // The very first append alone: it loads the script (EVALSHA falls back to EVAL once).
      if (start === 0 && step === 0) {
        const first = due.shift();
        await append(first, first.life[0]);
      }
      const outcomes = await Promise.all(due.map((d) => append(d, d.life[step])));
      const bad = outcomes.find((o) => o.outcome !== "appended");
      if (bad) throw new Error(`firehose fill: ${JSON.stringify(bad)}`);
    }
  }
}

/** One WatchDeliveries with include_snapshot: the time to caught_up, the snapshot messages before it. */
function snapshotOnce(client, expected) {
  return new Promise((resolve, reject) => {
    const started = nowNs();
    let snapshots = 0;
    const ids = new Set();
    const call = client.watchDeliveries({ statuses: [], resumeToken: "", includeSnapshot: true });
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`snapshot: ${snapshots}/${expected} before caught_up in 30 s`));
    }, 30_000);
    call.on("data", (m) => {
      const kind = m.kind?.$case;
      if (kind === "snapshot") {
        snapshots++;
        ids.add(m.kind.snapshot.delivery.id);
      } else if (kind === "caughtUp") {
        const ms = (nowNs() - started) / 1e6;
        clearTimeout(timer);
        call.cancel();
        if (snapshots !== expected || ids.size !== expected) reject(new Error(`snapshot: ${snapshots} snapshot messages (${ids.size} distinct deliveries) before caught_up, expected ${expected}`));
        else resolve({ ms, snapshots });
      }
    });
    call.on("error", (error) => {
      if (error.code === 1) return; // CANCELLED: ours
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function snapshotPart(ctx, N) {
  const svc = await startPrivateService(ctx);
  const connection = new Redis(svc.redis.url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  try {
    const started = nowNs();
    await fill(createRedisEventStore({ redis: connection }), N);
    const fillMs = (nowNs() - started) / 1e6;
    const measure = createMeasure({ redis: { cpuSeconds: svc.redis.cpuSeconds } });
    await snapshotOnce(svc.client, N); // unmeasured: the feed hub's start, the JIT
    const runs = [];
    for (let r = 0; r < ctx.runs; r++) {
      const a = await measure.snapshot(svc.server);
      const once = await snapshotOnce(svc.client, N);
      const b = await measure.snapshot(svc.server);
      const util = utilisation(a, b);
      runs.push({ ms: once.ms, serverUsPerDelivery: (b.server - a.server) / N, util });
      ctx.log(`firehose snapshot of ${N} deliveries run ${r + 1}: caught_up after ${once.ms.toFixed(0)} ms (server ${((b.server - a.server) / N).toFixed(1)} µs/delivery; ${limitedBy(util, true)})`);
    }
    const ms = spread(runs.map((x) => x.ms));
    const mid = runs.find((x) => x.ms === ms.median) ?? runs[0];
    return {
      ms: round(ms.median),
      detail: trioOf(ms),
      deliveries: N,
      fill_ms: round(fillMs),
      server_us_per_delivery: round(spread(runs.map((x) => x.serverUsPerDelivery)).median),
      limited_by: limitedBy(mid.util, true),
    };
  } finally {
    connection.disconnect();
    await svc.stop();
  }
}

function logTrial(ctx, label, W, r, t) {
  ctx.log(
    `firehose W=${W} run ${r + 1} ${label}: opened in ${t.openMs.toFixed(0)} ms; ` +
      `10/s p50 ${t.cadence.p50_ms.toFixed(1)} p99 ${t.cadence.p99_ms.toFixed(1)} max ${t.cadence.max_ms.toFixed(1)} ms; ` +
      `closed loop ${t.closed.delivered_per_s.toFixed(0)} msg/s (${t.closed.rounds} rounds, p99 ${t.closed.p99_ms.toFixed(1)} ms); ${t.cadence.messageBytes || t.closed.messageBytes} B messages`,
  );
  const lost = t.cadence.expected - t.cadence.received + t.closed.expected - t.closed.received;
  if (lost || t.gaps.missed || t.gaps.repeated) ctx.log(`  ${label}: ${lost} messages missing, ${t.gaps.missed} versions skipped, ${t.gaps.repeated} repeated`);
}

const snapshotKey = (n) => `snapshot_${n % 1_000 === 0 ? `${n / 1_000}k` : n}_ms`;

async function run(ctx) {
  const W = ctx.smoke ? 20 : 100;
  const D = ctx.smoke ? 100 : 1_000;
  const N = ctx.smoke ? 500 : 10_000;
  const trials = { firehose: [], fanout: [] };
  for (let r = 0; r < ctx.runs; r++) {
    // The baseline first, as in the fanout section; each side on fresh processes.
    const base = await fanoutTrial(ctx, await watchSetup(ctx, "real", W, r), W, r);
    trials.fanout.push(base);
    logTrial(ctx, "per-delivery fanout (baseline)", W, r, base);
    const hose = await fanoutTrial(ctx, await firehoseSetup(ctx, W, D, r), W, r);
    trials.firehose.push(hose);
    logTrial(ctx, "firehose", W, r, hose);
  }
  const w = { watchers: W, deliveries: D };
  const detail = {};
  summariseTrials(trials.firehose, "", true, w, detail);
  summariseTrials(trials.fanout, "baseline_", true, w, detail);
  w.detail = detail;
  const snap = await snapshotPart(ctx, N);
  return {
    [`w${W}`]: w,
    [snapshotKey(N)]: snap.ms,
    snapshot: { ...snap, key: snapshotKey(N) },
  };
}

function targets(piece) {
  const w = piece.w100;
  return [
    w && ratioTarget("firehose w100 delivered/s", w.delivered_per_s, w.baseline_delivered_per_s, ">=", 0.8),
    w && ratioTarget("firehose w100 p99", w.p99_ms, w.baseline_p99_ms, "<=", 1.5),
    piece.snapshot_10k_ms !== undefined && { name: "firehose snapshot 10k", value: piece.snapshot_10k_ms, target: `< ${fmt(SNAPSHOT_TARGET_MS)} ms`, met: piece.snapshot_10k_ms < SNAPSHOT_TARGET_MS },
  ].filter(Boolean);
}

const ROWS = [...FANOUT_ROWS, ["message_bytes", "message bytes"]];

function rows(piece, targetList) {
  const out = [];
  for (const [key, f] of Object.entries(piece ?? {})) {
    if (!/^w\d+$/.test(key)) continue;
    for (const [field, label] of ROWS) {
      const name = field === "delivered_per_s" ? `firehose ${key} delivered/s` : field === "p99_ms" ? `firehose ${key} p99` : "";
      const suffix = field === "delivered_per_s" ? " (per-delivery fanout as baseline)" : "";
      out.push([`firehose ${key} ${label}${suffix}`, trio(f.detail[`baseline_${field}`]), trio(f.detail[field]), ratioText(f[field], f[`baseline_${field}`]), metText(targetList, name)]);
    }
    out.push([`  limited by (closed loop)`, f.baseline_limited_by, f.limited_by, "", ""]);
  }
  const s = piece.snapshot;
  if (s) {
    out.push([`firehose snapshot of ${fmt(s.deliveries)} deliveries, ms to caught_up`, "", trio(s.detail), "", metText(targetList, s.deliveries === 10_000 ? "firehose snapshot 10k" : "")]);
    out.push([`  server µs/delivery; limited by`, "", `${fmt(s.server_us_per_delivery)}; ${s.limited_by}`, "", ""]);
  }
  return out;
}

export default { name: "firehose", run, targets, rows };
