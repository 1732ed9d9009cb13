/**
 * Closed-loop unary load (the commands and reads sections): `concurrency`
 * workers each call, wait, call again, against the service, the empty-RPC
 * baseline and, at the top level, the same-size baseline.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { clientFor } from "./grpcClient.mjs";
import { limitedBy, medianOf, medianUtil, utilisation } from "./measure.mjs";
import { metText, ratioText, trio } from "./report.mjs";
import { nowNs, percentile, round, sortNumbers } from "./stats.mjs";

/**
 * One window at a concurrency: warm-up first; the window is timed and the
 * server's CPU read (in its own process) at both ends.
 */
export async function unaryRun(ctx, { server, worker, concurrency, profileName }) {
  const state = { recording: false, stop: false, latencies: [], errors: 0, firstError: undefined };
  const timed = async (call) => {
    const started = nowNs();
    try {
      await call();
    } catch (error) {
      state.errors++;
      state.firstError ??= error;
      return false;
    }
    if (state.recording) state.latencies.push((nowNs() - started) / 1e6);
    return true;
  };
  const workers = Array.from({ length: concurrency }, (_, i) => worker(i, timed, state));
  await sleep(ctx.cfg.warmupMs);
  const stopProfile = await ctx.servers.profileWindow(server, profileName);
  const before = await ctx.measure.snapshot(server);
  state.recording = true;
  await sleep(ctx.cfg.durationMs);
  state.recording = false;
  const after = await ctx.measure.snapshot(server);
  await stopProfile();
  state.stop = true;
  await Promise.all(workers);
  if (state.errors > 0) ctx.log(`  ${state.errors} errors, first: ${state.firstError?.message}`);
  const calls = state.latencies.length;
  const sorted = sortNumbers(state.latencies);
  const wallS = (after.t - before.t) / 1e9;
  return {
    rps: calls / wallS,
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    server_us_per_call: (after.server - before.server) / calls,
    client_us_per_call: (after.client - before.client) / calls,
    errors: state.errors,
    util: utilisation(before, after),
  };
}

/**
 * Every level of one section. Kinds of server: "real" (the service), "bare"
 * (the empty unary RPC: the baseline of the targets) and, at the highest
 * concurrency only, "sized" (a bare server answering with fixed responses of
 * the real size: what the payload alone costs).
 * makeWorker(client, runTag, prepared) -> worker(i, timed, state);
 * prepare(realClient) runs once before the first window.
 */
export async function runUnarySection(ctx, name, makeWorker, prepare) {
  const { cfg } = ctx;
  const top = Math.max(...cfg.levels);
  const kindsAt = (c) => (c === top ? ["bare", "sized", "real"] : ["bare", "real"]);
  const [real, bare, sized] = await Promise.all([ctx.servers.startServer("real"), ctx.servers.startServer("bare"), ctx.servers.startServer("sized")]);
  const servers = { real, bare, sized };
  const clients = Object.fromEntries(Object.entries(servers).map(([kind, server]) => [kind, clientFor(server.port)]));
  const results = {};
  const warmed = new Set();
  try {
    const prepared = prepare ? await prepare(clients.real) : undefined;
    for (const c of cfg.levels) {
      const runs = { real: [], bare: [], sized: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const kind of kindsAt(c)) {
          if (!warmed.has(kind)) {
            // The "sized" server runs at the top level only: one unmeasured run gives it the JIT
            // warm-up the others had at the lower levels.
            warmed.add(kind);
            if (kind === "sized") await unaryRun(ctx, { server: servers[kind], worker: makeWorker(clients[kind], `warm-${Date.now()}`, prepared), concurrency: c });
          }
          const worker = makeWorker(clients[kind], `${kind}-${c}-${r}-${Date.now()}`, prepared);
          const result = await unaryRun(ctx, { server: servers[kind], worker, concurrency: c, profileName: `${name}-c${c}-${kind}-run${r + 1}` });
          runs[kind].push(result);
          ctx.log(`${name} c${c} run ${r + 1} ${kind}: ${result.rps.toFixed(0)} rps, p99 ${result.p99_ms.toFixed(2)} ms, server ${result.server_us_per_call.toFixed(0)} µs/call, client ${result.client_us_per_call.toFixed(0)} µs/call`);
        }
      }
      results[`c${c}`] = summariseUnary(runs);
    }
  } finally {
    for (const c of Object.values(clients)) c.close();
    await Promise.all(Object.values(servers).map((s) => s.stop()));
  }
  return results;
}

function summariseUnary(runs) {
  const out = {};
  const detail = {};
  const kinds = [["real", ""], ["bare", "baseline_"], ...(runs.sized.length ? [["sized", "sized_baseline_"]] : [])];
  for (const [kind, prefix] of kinds) {
    for (const key of ["rps", "p50_ms", "p99_ms", "server_us_per_call", "client_us_per_call"]) {
      const s = medianOf(runs[kind], key);
      out[`${prefix}${key}`] = round(s.median);
      detail[`${prefix}${key}`] = { min: round(s.min), median: round(s.median), max: round(s.max) };
    }
    const u = medianUtil(runs[kind]);
    out[`${prefix}cores`] = { client: round(u.client), server: round(u.server), redis: round(u.redis), other_processes: round(u.others) };
    out[`${prefix}event_loop_busy`] = { client: round(u.clientElu), server: round(u.serverElu) };
    out[`${prefix}limited_by`] = limitedBy(u, kind === "real");
    out[`${prefix}errors`] = runs[kind].reduce((a, r) => a + r.errors, 0);
  }
  out.detail = detail;
  return out;
}

/** The table rows of a unary section's summary piece ({c1: ..., c16: ...}). */
export function unaryRows(section, piece, targets) {
  const rows = [];
  for (const [level, s] of Object.entries(piece ?? {})) {
    for (const [key, label] of [["rps", "RPS"], ["p50_ms", "p50 ms"], ["p99_ms", "p99 ms"], ["server_us_per_call", "server µs/call"]]) {
      const name = key === "rps" ? `${section} ${level} RPS` : key === "server_us_per_call" ? `${section} ${level} server CPU/call` : "";
      rows.push([`${section} ${level} ${label}`, trio(s.detail[`baseline_${key}`]), trio(s.detail[key]), ratioText(s[key], s[`baseline_${key}`]), metText(targets, name)]);
    }
    rows.push([`  limited by`, s.baseline_limited_by, s.limited_by, "", ""]);
    if (s.sized_baseline_rps !== undefined) {
      for (const [key, label] of [["rps", "RPS"], ["server_us_per_call", "server µs/call"], ["client_us_per_call", "client µs/call"]]) {
        rows.push([`  vs same-size responses: ${label}`, trio(s.detail[`sized_baseline_${key}`]), trio(s.detail[key]), ratioText(s[key], s[`sized_baseline_${key}`]), ""]);
      }
    }
  }
  return rows;
}
