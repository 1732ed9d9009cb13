/**
 * Scale: the capacity plan's figure, W = 20,000 WatchDelivery watchers of one
 * delivery on one service process (400 in a smoke), over 4 watcher processes
 * (bench/watcherChild.mjs) with 2 connections each. The fanout section's trial
 * (bench/sections/fanout.mjs: three unmeasured pushes, 20 IncreaseBudget
 * commands at 10/s for the latency from each command's acknowledgement to
 * each watcher's receipt, then a closed loop for delivered messages/s), on a
 * server child whose MAX_WATCHERS allows W; around its open, the memory
 * section's measurement (bench/sections/memory.mjs: RSS with W idle watchers
 * - RSS before, both after a full GC, over W; the 50 warm-up watches of
 * bench/lib/watchSetup.mjs first). Baseline: the bare server, the same trial.
 * Commands the service refuses under the overload are sent again (see scaleTrial).
 * No targets. One run whatever --runs (each side opens 20,000 streams).
 */
import { limitedBy, medianUtil } from "../lib/measure.mjs";
import { fmt, ratioText, trio, trioOf } from "../lib/report.mjs";
import { round, spread } from "../lib/stats.mjs";
import { watchSetup } from "../lib/watchSetup.mjs";
import { FANOUT_ROWS, fanoutTrial, summariseTrials } from "./fanout.mjs";
import { idleMemory } from "./memory.mjs";

/** The memory figures kept, by JSON key (prefixed like the fanout's). */
const MEMORY_FIELDS = {
  rss_bytes_per_watcher: "rss_per_watcher",
  rss_without_young_generation_bytes_per_watcher: "rss_without_young_per_watcher",
  heap_used_bytes_per_watcher: "heap_used_per_watcher",
};

/**
 * The fanout trial on a server child whose MAX_WATCHERS allows W and a watcher
 * pool of the scale's processes and connections, with the memory section's
 * measurement around its open. At 10/s, W=20,000 is more than one process can
 * write (200,000 messages/s): the commands queue on the one delivery, and some
 * come back ABORTED (contention outlasted the service's 5 s budget) or
 * UNAVAILABLE (a Redis reply waited behind the fan-out past its 2 s deadline);
 * they are sent again with the same request_id and counted (watchSetup's `retry`).
 */
async function scaleTrial(ctx, kind, W, run) {
  const setup = await watchSetup(ctx, kind, W, run, {
    env: { BENCH_MAX_WATCHERS: String(maxWatchers(W)) },
    pool: { processes: ctx.cfg.scaleProcesses, channels: ctx.cfg.scaleChannels },
    retry: true,
  });
  let memory;
  const open = async (count) => {
    const m = await idleMemory(ctx, setup.server, setup.open, count);
    memory = m.figures;
    return m.opened;
  };
  const t = await fanoutTrial(ctx, { ...setup, open }, W, run);
  return { ...t, memory, retried: setup.retried() };
}

/** Room above W for the warm-up's 50 watches, whose cancellation the service may not have counted yet. */
const maxWatchers = (W) => Math.max(10_000, W + 1_000);

async function run(ctx) {
  const W = ctx.cfg.scaleWatchers;
  const runs = { real: [], bare: [] };
  for (const kind of ["bare", "real"]) {
    const t = await scaleTrial(ctx, kind, W, 0);
    runs[kind].push(t);
    ctx.log(
      `scale W=${W} over ${ctx.cfg.scaleProcesses} processes ${kind}: opened in ${t.openMs.toFixed(0)} ms; ${t.memory.rss_per_watcher.toFixed(0)} B RSS per idle watcher; ` +
        `10/s p50 ${t.cadence.p50_ms.toFixed(1)} p99 ${t.cadence.p99_ms.toFixed(1)} max ${t.cadence.max_ms.toFixed(1)} ms (${limitedBy(t.cadence.util, kind === "real")}); ` +
        `closed loop ${t.closed.delivered_per_s.toFixed(0)} msg/s (${t.closed.rounds} rounds; ${limitedBy(t.closed.util, kind === "real")})` +
        (t.retried.ABORTED + t.retried.UNAVAILABLE ? `; commands sent again: ${t.retried.ABORTED} ABORTED, ${t.retried.UNAVAILABLE} UNAVAILABLE` : ""),
    );
  }
  const out = { watchers: W, client_processes: ctx.cfg.scaleProcesses, client_connections: ctx.cfg.scaleChannels, max_watchers: maxWatchers(W) };
  const detail = {};
  summariseTrials(runs.real, "", true, out, detail);
  summariseTrials(runs.bare, "baseline_", false, out, detail);
  for (const [prefix, trials] of [["", runs.real], ["baseline_", runs.bare]]) {
    for (const [key, field] of Object.entries(MEMORY_FIELDS)) {
      const s = spread(trials.map((t) => t.memory[field]));
      out[`${prefix}${key}`] = round(s.median);
      detail[`${prefix}${key}`] = trioOf(s);
    }
    out[`${prefix}rss_idle_bytes`] = round(spread(trials.map((t) => t.memory.rss_idle)).median);
    out[`${prefix}retried_commands`] = { ABORTED: trials.reduce((acc, t) => acc + t.retried.ABORTED, 0), UNAVAILABLE: trials.reduce((acc, t) => acc + t.retried.UNAVAILABLE, 0) };
    const cadenceUtil = medianUtil(trials.map((t) => t.cadence));
    out[`${prefix}cadence_cores`] = { client: round(cadenceUtil.client), server: round(cadenceUtil.server), redis: round(cadenceUtil.redis), other_processes: round(cadenceUtil.others) };
    out[`${prefix}cadence_event_loop_busy`] = { client: round(cadenceUtil.clientElu), server: round(cadenceUtil.serverElu) };
  }
  out.detail = detail;
  return { [`w${W}`]: out };
}

const ROWS = [
  ...FANOUT_ROWS,
  ["cadence_delivered_per_s", "delivered msg/s (10 cmd/s)"],
  ["rss_bytes_per_watcher", "RSS bytes/idle watcher"],
  ["rss_without_young_generation_bytes_per_watcher", "  without the V8 young generation"],
];

function rows(piece) {
  const out = [];
  for (const [w, f] of Object.entries(piece ?? {})) {
    const where = `over ${f.client_processes} processes`;
    for (const [key, label] of ROWS) out.push([`scale ${w} ${label}${key === "delivered_per_s" ? ` ${where}` : ""}`, trio(f.detail[`baseline_${key}`]), trio(f.detail[key]), ratioText(f[key], f[`baseline_${key}`]), ""]);
    out.push([`  messages lost`, fmt(f.baseline_lost_messages), fmt(f.lost_messages), "", ""]);
    const retried = (r) => (r ? `${fmt(r.ABORTED)} ABORTED, ${fmt(r.UNAVAILABLE)} UNAVAILABLE` : "-");
    out.push([`  commands sent again`, retried(f.baseline_retried_commands), retried(f.retried_commands), "", ""]);
    out.push([`  limited by (closed loop)`, f.baseline_limited_by, f.limited_by, "", ""]);
    out.push([`  limited by (10 cmd/s)`, f.baseline_cadence_limited_by, f.cadence_limited_by, "", ""]);
  }
  return out;
}

export default { name: "scale", run, rows };
