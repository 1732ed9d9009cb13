/**
 * Fanout: W watchers of one delivery spread over the watcher processes and
 * connections; 20 IncreaseBudget commands at 10/s (latency from the command's
 * acknowledgement, and from its send, to each watcher's receipt), then a
 * closed loop (the next command once every watcher has the last version:
 * delivered messages/s). From W=1,000 this section's windows are twice as
 * long (40 commands, 3 s). At W=5,000 a 1.5 s loop is only ~40 rounds, and
 * one collection pause in a server or a watcher process moved a trial's
 * figures by a fifth. At W=1,000 the p99 of 20 commands is in effect the
 * worst command's: the bare server's own p99 spread from 12 to 34 ms between
 * trials of one run, and one trial decided a target at 1.20 against 1.2.
 * Baseline: the bare server pushing an update of the same size. Peers: NATS
 * JetStream KV watches (memory and file storage) and core NATS
 * subscriptions, through the same watcher processes (bench/lib/natsPeer.mjs).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { limitedBy, medianUtil, utilisation } from "../lib/measure.mjs";
import { NATS_PEERS, natsPeerRows, natsWatchSetup } from "../lib/natsPeer.mjs";
import { fmt, metText, ratioText, ratioTarget, trio, trioOf } from "../lib/report.mjs";
import { nowNs, percentile, round, sortNumbers, spread } from "../lib/stats.mjs";
import { watchSetup } from "../lib/watchSetup.mjs";

/**
 * One trial on a set-up server: open W, the 10/s cadence, the closed loop.
 * Also the firehose and cluster sections' trial: a command's `version` may be
 * any key the watchers report (the firehose's "<id>:<version>"), and then the
 * cadence waits for every command's key, not the highest version.
 * `cfg`: the sizes of the windows (cadenceCommands, closedLoopMs), ctx.cfg's unless given.
 */
export async function fanoutTrial(ctx, setup, W, run, cfg = ctx.cfg) {
  const { kind, server, watchers, whenAll, command, open, close } = setup;
  try {
    const opened = await open(W);
    // A few pushes to all W streams, unmeasured: the first ones after opening thousands of
    // streams are slow on both servers (JIT, and the first GCs of the grown heap).
    for (let i = 0; i < 3; i++) await whenAll((await command()).version);
    await sleep(100);
    ctx.debug("opened");

    // Cadence: one command every 100 ms, sent on a timer (not waiting for the previous).
    let stopProfile = await ctx.servers.profileWindow(server, `fanout-w${W}-cadence-${kind}-run${run + 1}`);
    const a = await ctx.measure.snapshot(server, watchers);
    const startNs = nowNs();
    const pending = [];
    for (let k = 0; k < cfg.cadenceCommands; k++) {
      const due = startNs + k * ctx.settings.cadenceMs * 1e6;
      const wait = (due - nowNs()) / 1e6;
      if (wait > 0) await sleep(wait);
      pending.push(command());
    }
    const acks = await Promise.all(pending);
    const lastAll = acks.every((x) => typeof x.version === "number")
      ? await whenAll(Math.max(...acks.map((x) => x.version)))
      : Math.max(...(await Promise.all(acks.map((x) => whenAll(x.version)))));
    const b = await ctx.measure.snapshot(server, watchers);
    await stopProfile();
    const cadenceStats = await watchers.stats(acks.map((x) => [x.version, x.ackNs, x.sentNs]));
    ctx.debug(`cadence per version [version, first ms, last ms]: ${JSON.stringify(cadenceStats.perVersion)}`);
    const ackSorted = sortNumbers(acks.map((x) => (x.ackNs - x.sentNs) / 1e6));
    const cadence = {
      ...cadenceStats,
      ack_p50_ms: percentile(ackSorted, 50),
      ack_max_ms: ackSorted[ackSorted.length - 1],
      delivered_per_s: cadenceStats.received / ((lastAll - startNs) / 1e9),
      util: utilisation(a, b),
    };
    ctx.debug("cadence done");

    // Closed loop: the next command once every watcher has the last version.
    stopProfile = await ctx.servers.profileWindow(server, `fanout-w${W}-closed-${kind}-run${run + 1}`);
    const c = await ctx.measure.snapshot(server, watchers);
    const loopStart = nowNs();
    const loopAcks = [];
    let lastNs = loopStart;
    while (nowNs() - loopStart < cfg.closedLoopMs * 1e6) {
      const x = await command();
      loopAcks.push(x);
      lastNs = await whenAll(x.version);
    }
    const d = await ctx.measure.snapshot(server, watchers);
    await stopProfile();
    const loopStats = await watchers.stats(loopAcks.map((x) => [x.version, x.ackNs, x.sentNs]));
    const closed = {
      ...loopStats,
      rounds: loopAcks.length,
      delivered_per_s: loopStats.received / ((lastNs - loopStart) / 1e9),
      util: utilisation(c, d),
    };
    const lost = cadence.expected - cadence.received + closed.expected - closed.received;
    // The watchers' gap counts run from the open, so the last stats hold the whole trial.
    const gaps = { missed: closed.missedVersions, repeated: closed.repeatedVersions, maxMissedPerWatcher: closed.maxMissedPerStream };
    if (lost !== 0 || cadenceStats.errors || gaps.missed || gaps.repeated) {
      ctx.log(`  ${kind} W=${W}: ${lost} messages missing, ${gaps.missed} versions skipped and ${gaps.repeated} repeated, ${cadenceStats.errors} stream errors (${cadenceStats.firstError})`);
    }
    ctx.debug("closed loop done");
    return { openMs: opened.ms, cadence, closed, gaps };
  } finally {
    await close();
  }
}

/** The figures of a fanout trial, by JSON key (prefixed by kind). */
const FIELDS = {
  delivered_per_s: (t) => t.closed.delivered_per_s,
  p50_ms: (t) => t.cadence.p50_ms,
  p99_ms: (t) => t.cadence.p99_ms,
  max_ms: (t) => t.cadence.max_ms,
  cadence_delivered_per_s: (t) => t.cadence.delivered_per_s,
  command_ack_p50_ms: (t) => t.cadence.ack_p50_ms,
  command_ack_max_ms: (t) => t.cadence.ack_max_ms,
  from_send_p50_ms: (t) => t.cadence.from_send_p50_ms,
  from_send_p99_ms: (t) => t.cadence.from_send_p99_ms,
  closed_loop_p50_ms: (t) => t.closed.p50_ms,
  closed_loop_p99_ms: (t) => t.closed.p99_ms,
  open_ms: (t) => t.openMs,
  message_bytes: (t) => t.cadence.messageBytes || t.closed.messageBytes,
};

/** Our kinds and the NATS peers, with their JSON prefix. */
const PREFIX = { real: "", bare: "baseline_", ...Object.fromEntries(Object.keys(NATS_PEERS).map((p) => [p, `${p}_`])) };

/** Writes one kind's figures into `out` and `detail`, under its prefix. */
function summariseKind(kind, trials, out, detail) {
  summariseTrials(trials, PREFIX[kind], kind === "real", out, detail);
  // A peer's figures count only if every watcher got every revision exactly once.
  if (kind in NATS_PEERS) out[`${PREFIX[kind]}counts`] = out[`${PREFIX[kind]}lost_messages`] === 0 && out[`${PREFIX[kind]}missed_revisions`] === 0 && out[`${PREFIX[kind]}repeated_revisions`] === 0;
}

/** Writes the figures of fanout trials into `out` and `detail` under `prefix`; `withRedis`: Redis counts in what limits them. */
export function summariseTrials(trials, prefix, withRedis, out, detail) {
  for (const [key, pick] of Object.entries(FIELDS)) {
    const s = spread(trials.map(pick));
    out[`${prefix}${key}`] = round(s.median);
    detail[`${prefix}${key}`] = trioOf(s);
  }
  const closedUtil = medianUtil(trials.map((t) => t.closed));
  const cadenceUtil = medianUtil(trials.map((t) => t.cadence));
  out[`${prefix}limited_by`] = limitedBy(closedUtil, withRedis);
  out[`${prefix}cores`] = { client: round(closedUtil.client), server: round(closedUtil.server), redis: round(closedUtil.redis), other_processes: round(closedUtil.others) };
  out[`${prefix}event_loop_busy`] = { client: round(closedUtil.clientElu), server: round(closedUtil.serverElu) };
  out[`${prefix}cadence_limited_by`] = limitedBy(cadenceUtil, withRedis);
  out[`${prefix}lost_messages`] = trials.reduce((acc, t) => acc + (t.cadence.expected - t.cadence.received) + (t.closed.expected - t.closed.received), 0);
  // Over all runs and watchers: versions (revisions) a watcher skipped or got twice. Must be 0 to count.
  out[`${prefix}missed_revisions`] = trials.reduce((acc, t) => acc + t.gaps.missed, 0);
  out[`${prefix}repeated_revisions`] = trials.reduce((acc, t) => acc + t.gaps.repeated, 0);
  out[`${prefix}max_missed_per_watcher`] = Math.max(0, ...trials.map((t) => t.gaps.maxMissedPerWatcher));
}

function logTrial(ctx, kind, W, r, t) {
  ctx.log(
    `fanout W=${W} run ${r + 1} ${kind}: opened in ${t.openMs.toFixed(0)} ms; ` +
      `10/s p50 ${t.cadence.p50_ms.toFixed(1)} p99 ${t.cadence.p99_ms.toFixed(1)} max ${t.cadence.max_ms.toFixed(1)} ms; ` +
      `closed loop ${t.closed.delivered_per_s.toFixed(0)} msg/s (${t.closed.rounds} rounds, p99 ${t.closed.p99_ms.toFixed(1)} ms)` +
      (kind in NATS_PEERS ? `; ${t.gaps.missed} revisions skipped, ${t.gaps.repeated} repeated` : ""),
  );
}

/** This section's windows at W: twice as long from W=1,000 (not in a smoke). */
function windowsAt(ctx, W) {
  const { cfg } = ctx;
  return W >= 1_000 && !ctx.smoke ? { ...cfg, cadenceCommands: 2 * cfg.cadenceCommands, closedLoopMs: 2 * cfg.closedLoopMs } : cfg;
}

async function run(ctx) {
  const fanout = {};
  const peers = ctx.nats.peers;
  for (const W of ctx.cfg.watchers) {
    const runs = Object.fromEntries(["real", "bare", ...peers].map((k) => [k, []]));
    const failures = {};
    for (let r = 0; r < ctx.runs; r++) {
      // Our two servers, then the NATS peers, alternating run by run.
      for (const kind of ["bare", "real"]) {
        const t = await fanoutTrial(ctx, await watchSetup(ctx, kind, W, r), W, r, windowsAt(ctx, W));
        runs[kind].push(t);
        logTrial(ctx, kind, W, r, t);
      }
      for (const peer of peers) {
        if (failures[peer]) continue;
        try {
          const t = await fanoutTrial(ctx, await natsWatchSetup(ctx, peer, W, r), W, r, windowsAt(ctx, W));
          runs[peer].push(t);
          logTrial(ctx, peer, W, r, t);
        } catch (error) {
          // A peer that fails stays out of this W; our figures do not depend on it.
          failures[peer] = String(error?.message ?? error);
          ctx.log(`fanout W=${W} run ${r + 1} ${peer}: failed: ${failures[peer]}`);
        }
      }
    }
    const out = {};
    const detail = {};
    for (const kind of ["real", "bare"]) summariseKind(kind, runs[kind], out, detail);
    out.nats_status = ctx.nats.status;
    for (const peer of peers) {
      if (runs[peer].length) summariseKind(peer, runs[peer], out, detail);
      if (failures[peer]) out[`${peer}_error`] = failures[peer];
    }
    out.detail = detail;
    fanout[`w${W}`] = out;
  }
  return fanout;
}

function targets(piece) {
  return ["w1000", "w5000"].flatMap((w) => {
    const f = piece[w];
    if (!f) return [];
    // The targets of this release: level with the bare push, and at W=5,000 ahead of NATS KV (memory storage).
    const bare = [
      ratioTarget(`fanout ${w} delivered/s`, f.delivered_per_s, f.baseline_delivered_per_s, ">=", w === "w5000" ? 0.95 : 0.9),
      ratioTarget(`fanout ${w} p99`, f.p99_ms, f.baseline_p99_ms, "<=", 1.2),
    ];
    if (w !== "w5000") return bare;
    return [
      ...bare,
      ratioTarget(`fanout ${w} delivered/s vs NATS KV`, f.delivered_per_s, f.nats_delivered_per_s, ">=", 0.75),
      ratioTarget(`fanout ${w} p99 vs NATS KV`, f.p99_ms, f.nats_p99_ms, "<=", 0.5),
    ].filter(Boolean);
  });
}

/** The rows of a fanout trial's figures (the firehose and scale sections add their own). */
export const FANOUT_ROWS = [
  ["delivered_per_s", "delivered msg/s (closed loop)"],
  ["p50_ms", "p50 ms (10 cmd/s)"],
  ["p99_ms", "p99 ms (10 cmd/s)"],
  ["max_ms", "max ms (10 cmd/s)"],
  ["from_send_p99_ms", "p99 ms from send (10 cmd/s)"],
  ["command_ack_p50_ms", "command ack p50 ms (10 cmd/s)"],
  ["closed_loop_p99_ms", "p99 ms (closed loop)"],
];
/** The NATS rows: the peer in the baseline column, ours beside it, ratio ours / peer. */
const PEER_ROWS = [
  ["delivered_per_s", "delivered msg/s (closed loop)"],
  ["p50_ms", "p50 ms (10 cmd/s)"],
  ["p99_ms", "p99 ms (10 cmd/s)"],
  ["max_ms", "max ms (10 cmd/s)"],
  ["from_send_p99_ms", "p99 ms from send (10 cmd/s)"],
  ["command_ack_p50_ms", "put ack p50 ms (10 cmd/s)"],
];

function rows(piece, targetList) {
  const out = [];
  for (const [w, f] of Object.entries(piece ?? {})) {
    for (const [key, label] of FANOUT_ROWS) {
      const name = key === "delivered_per_s" ? `fanout ${w} delivered/s` : key === "p99_ms" ? `fanout ${w} p99` : "";
      out.push([`fanout ${w} ${label}`, trio(f.detail[`baseline_${key}`]), trio(f.detail[key]), ratioText(f[key], f[`baseline_${key}`]), metText(targetList, name)]);
    }
    out.push([`  limited by (closed loop)`, f.baseline_limited_by, f.limited_by, "", ""]);
    out.push(
      ...natsPeerRows(f, (peer, label) => {
        if (f[`${peer}_delivered_per_s`] === undefined) return [];
        const p = `${peer}_`;
        const gaps = (prefix) => `${fmt(f[`${prefix}missed_revisions`])} / ${fmt(f[`${prefix}repeated_revisions`])}`;
        const counts = f[`${p}counts`];
        return [
          ...PEER_ROWS.map(([key, text]) => [`  vs ${label}: ${text}`, trio(f.detail[`${p}${key}`]), trio(f.detail[key]), ratioText(f[key], f[`${p}${key}`]), ""]),
          [`  vs ${label}: revisions missed / repeated`, gaps(p), gaps(""), "", counts ? "counts (0 skipped, 0 repeated, 0 lost)" : `DOES NOT COUNT (${f[`${p}lost_messages`]} lost)`],
          [`  vs ${label}: limited by (closed loop)`, f[`${p}limited_by`], f.limited_by, "", ""],
        ];
      }),
    );
  }
  return out;
}

export default { name: "fanout", run, targets, rows };
