/**
 * Memory: RSS per idle watcher at the largest W. A fresh server child
 * (default V8 flags) warmed up with 50 watches, then (RSS with W idle
 * watchers - RSS before) / W, both read after a full GC; also split into the
 * V8 young generation, the rest of the RSS and the V8 heap in use. Baseline:
 * the bare server's idle streams. Peers: nats-server's RSS growth with W idle
 * KV watches (or core NATS subscriptions), read from /proc (Go: no GC forced).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { natsPeerRows, natsWatchSetup } from "../lib/natsPeer.mjs";
import { metText, ratioText, ratioTarget, trio, trioOf } from "../lib/report.mjs";
import { round, spread } from "../lib/stats.mjs";
import { watchSetup } from "../lib/watchSetup.mjs";

/**
 * RSS per idle watcher of our server child, and its split: the V8 young
 * generation (which V8 grows with the allocation rate while the watches open,
 * and which holds no watcher), the rest of the RSS, and the V8 heap in use.
 * `open(W)` opens the watches (also the scale section's, around its fanout
 * trial's open); returns the figures and what open returned.
 */
export async function idleMemory(ctx, server, open, W) {
  const before = await server.usage({ gc: true });
  const opened = await open(W);
  await sleep(ctx.cfg.idleMs);
  const idle = await server.usage({ gc: true });
  const perWatcher = (field) => (idle.mem[field] - before.mem[field]) / W;
  const youngPhysical = (u) => (u.spaces.new_space?.physical ?? 0) + (u.spaces.new_large_object_space?.physical ?? 0);
  const figures = {
    rss_per_watcher: perWatcher("rss"),
    rss_without_young_per_watcher: (idle.mem.rss - youngPhysical(idle) - (before.mem.rss - youngPhysical(before))) / W,
    young_per_watcher: (youngPhysical(idle) - youngPhysical(before)) / W,
    heap_used_per_watcher: perWatcher("heapUsed"),
    heap_total_per_watcher: perWatcher("heapTotal"),
    external_per_watcher: perWatcher("external"),
    spaces_per_watcher: Object.fromEntries(
      Object.keys(idle.spaces).map((name) => [name, Math.round((idle.spaces[name].size - (before.spaces[name]?.size ?? 0)) / W)]),
    ),
    rss_before: before.mem.rss,
    rss_idle: idle.mem.rss,
  };
  return { figures, opened };
}

async function memoryTrial(ctx, kind, W, run) {
  const { server, open, close } = await watchSetup(ctx, kind, W, run);
  try {
    return (await idleMemory(ctx, server, open, W)).figures;
  } finally {
    await close();
  }
}

/** nats-server's RSS growth per idle watch, after the same warm-up (50 watches opened and closed). */
async function natsMemoryTrial(ctx, peer, W, run) {
  const { server, open, close } = await natsWatchSetup(ctx, peer, W, run);
  try {
    const before = await server.rss();
    await open(W);
    await sleep(ctx.cfg.idleMs);
    const idle = await server.rss();
    return { rss_per_watcher: (idle - before) / W, rss_before: before, rss_idle: idle };
  } finally {
    await close();
  }
}

async function run(ctx) {
  const W = Math.max(...ctx.cfg.watchers);
  const peers = ctx.nats.peers;
  const runs = { real: [], bare: [], ...Object.fromEntries(peers.map((p) => [p, []])) };
  const failures = {};
  for (let r = 0; r < ctx.runs; r++) {
    for (const kind of ["bare", "real"]) {
      const m = await memoryTrial(ctx, kind, W, r);
      runs[kind].push(m);
      ctx.log(`memory W=${W} run ${r + 1} ${kind}: ${m.rss_per_watcher.toFixed(0)} B RSS (${m.rss_without_young_per_watcher.toFixed(0)} B without the young generation), ${m.heap_used_per_watcher.toFixed(0)} B heap in use per idle watcher`);
    }
    for (const peer of peers) {
      if (failures[peer]) continue;
      try {
        const m = await natsMemoryTrial(ctx, peer, W, r);
        runs[peer].push(m);
        ctx.log(`memory W=${W} run ${r + 1} ${peer}: ${m.rss_per_watcher.toFixed(0)} B nats-server RSS per idle watcher`);
      } catch (error) {
        failures[peer] = String(error?.message ?? error);
        ctx.log(`memory W=${W} run ${r + 1} ${peer}: failed: ${failures[peer]}`);
      }
    }
  }
  const both = (field) => ({ real: spread(runs.real.map((m) => m[field])), bare: spread(runs.bare.map((m) => m[field])) });
  const spacesMedian = (trials) => {
    const names = Object.keys(trials[0]?.spaces_per_watcher ?? {});
    return Object.fromEntries(names.map((n) => [n, round(spread(trials.map((t) => t.spaces_per_watcher[n])).median)]).filter(([, v]) => v !== 0));
  };
  const rss = both("rss_per_watcher");
  const heap = both("heap_used_per_watcher");
  const heapTotal = both("heap_total_per_watcher");
  const external = both("external_per_watcher");
  const noYoung = both("rss_without_young_per_watcher");
  const young = both("young_per_watcher");
  const out = {
    bytes_per_watcher: round(rss.real.median),
    baseline_bytes_per_stream: round(rss.bare.median),
    // Where it went (bytes per watcher): V8 heap in use, V8 heap reserved (by space), buffers outside the heap.
    heap_used_bytes_per_watcher: round(heap.real.median),
    baseline_heap_used_bytes_per_stream: round(heap.bare.median),
    heap_total_bytes_per_watcher: round(heapTotal.real.median),
    baseline_heap_total_bytes_per_stream: round(heapTotal.bare.median),
    external_bytes_per_watcher: round(external.real.median),
    baseline_external_bytes_per_stream: round(external.bare.median),
    heap_space_bytes_per_watcher: spacesMedian(runs.real),
    baseline_heap_space_bytes_per_stream: spacesMedian(runs.bare),
    rss_without_young_generation_bytes_per_watcher: round(noYoung.real.median),
    baseline_rss_without_young_generation_bytes_per_stream: round(noYoung.bare.median),
    young_generation_bytes_per_watcher: round(young.real.median),
    baseline_young_generation_bytes_per_stream: round(young.bare.median),
    nats_status: ctx.nats.status,
  };
  const detail = {
    bytes_per_watcher: trioOf(rss.real),
    baseline_bytes_per_stream: trioOf(rss.bare),
    heap_used_bytes_per_watcher: trioOf(heap.real),
    baseline_heap_used_bytes_per_stream: trioOf(heap.bare),
    rss_without_young_generation_bytes_per_watcher: trioOf(noYoung.real),
    baseline_rss_without_young_generation_bytes_per_stream: trioOf(noYoung.bare),
  };
  for (const peer of peers) {
    if (runs[peer].length) {
      const s = spread(runs[peer].map((m) => m.rss_per_watcher));
      out[`${peer}_bytes_per_watcher`] = round(s.median);
      out[`${peer}_rss_before_bytes`] = round(spread(runs[peer].map((m) => m.rss_before)).median);
      detail[`${peer}_bytes_per_watcher`] = trioOf(s);
    }
    if (failures[peer]) out[`${peer}_error`] = failures[peer];
  }
  out.detail = detail;
  return { [`w${W}`]: out };
}

const targets = (piece) => {
  const m = piece.w5000;
  if (!m) return [];
  return [
    ratioTarget("memory w5000 per idle watcher", m.bytes_per_watcher, m.baseline_bytes_per_stream, "<=", 1.1),
    ratioTarget("memory w5000 per idle watcher vs NATS KV", m.bytes_per_watcher, m.nats_bytes_per_watcher, "<=", 0.5),
  ].filter(Boolean);
};

function rows(piece, targetList) {
  const out = [];
  for (const [w, m] of Object.entries(piece ?? {})) {
    out.push([`memory ${w} RSS bytes/idle watcher`, trio(m.detail.baseline_bytes_per_stream), trio(m.detail.bytes_per_watcher), ratioText(m.bytes_per_watcher, m.baseline_bytes_per_stream), metText(targetList, `memory ${w} per idle watcher`)]);
    out.push([`  without the V8 young generation`, trio(m.detail.baseline_rss_without_young_generation_bytes_per_stream), trio(m.detail.rss_without_young_generation_bytes_per_watcher), ratioText(m.rss_without_young_generation_bytes_per_watcher, m.baseline_rss_without_young_generation_bytes_per_stream), ""]);
    out.push([`  V8 heap in use per watcher`, trio(m.detail.baseline_heap_used_bytes_per_stream), trio(m.detail.heap_used_bytes_per_watcher), ratioText(m.heap_used_bytes_per_watcher, m.baseline_heap_used_bytes_per_stream), ""]);
    out.push(
      ...natsPeerRows(m, (peer, label) =>
        m[`${peer}_bytes_per_watcher`] === undefined
          ? []
          : [[`  vs ${label}: nats-server RSS bytes/idle watcher`, trio(m.detail[`${peer}_bytes_per_watcher`]), trio(m.detail.bytes_per_watcher), ratioText(m.bytes_per_watcher, m[`${peer}_bytes_per_watcher`]), ""]],
      ),
    );
  }
  return out;
}

export default { name: "memory", run, targets, rows };
