/**
 * Cluster (`node bench/run.mjs --cluster`; also in the full run when the
 * redis-server on PATH can run a cluster for the service, Redis >= 7): the
 * service on a 3-primary Redis Cluster (3 primaries + 3 replicas,
 * bench/lib/redisCluster.mjs, REDIS_CLUSTER_NODES) against the service on a
 * single redis-server, in the same run, each a fresh store of its own with
 * the same STORE_PARTITIONS: 24, what the README sets for 3 primaries (a
 * multiple of them: 8 partitions each; the default 16 splits 5/6/5), or
 * BENCH_CLUSTER_PARTITIONS:
 *
 *   commands c16 and c64  the commands section's load (create, start, increase budget,
 *                         pick up, deliver) and windows; RPS, latency, server CPU/call
 *   fanout w1000          the fanout section's trial with W = 1,000 WatchDelivery watchers
 *                         (20 in a smoke)
 *   primary CPU shares    each primary's share of the primaries' Redis CPU (INFO cpu
 *                         used_cpu_sys + used_cpu_user, deltas over the commands windows).
 *                         Target: each within a third +- 10 % (30.0 % to 36.7 %).
 *
 * On two shared cores the service's one event loop, not Redis, is the limit of
 * both sides: a cluster spreads Redis's work, which was not the bottleneck,
 * and adds the client's slot routing and more connections. The section says so
 * in its output.
 */
import { Redis } from "ioredis";
import { partitionTags } from "../../dist/store/redis/keys.js";
import { hashSlot } from "../../dist/store/redis/slots.js";
import { clientFor } from "../lib/grpcClient.mjs";
import { createMeasure, limitedBy, medianOf, medianUtil } from "../lib/measure.mjs";
import { clusterSupport, startRedisCluster } from "../lib/redisCluster.mjs";
import { startRedis } from "../lib/redisServer.mjs";
import { fmt, metText, ratioText, trio, trioOf } from "../lib/report.mjs";
import { createServerProcesses } from "../lib/serverProcesses.mjs";
import { round } from "../lib/stats.mjs";
import { unaryRun } from "../lib/unaryLoad.mjs";
import { watchSetup } from "../lib/watchSetup.mjs";
import { commandWorker } from "./commands.mjs";
import { fanoutTrial, summariseTrials } from "./fanout.mjs";

const LEVELS = [16, 64];
const SHARE_TOLERANCE = 0.1;
export const LIMIT_NOTE = "on two shared cores the service (its one event loop), not Redis, is the limit: the cluster spreads Redis's work, which was not the bottleneck";

/** A single redis-server with the handle the measurement needs. */
async function startSingle() {
  const server = await startRedis();
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  admin.on("error", () => {});
  return {
    url: server.url,
    port: server.port,
    async cpuSeconds() {
      const info = await admin.info("cpu");
      const field = (name) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
      return field("used_cpu_user") + field("used_cpu_sys");
    },
    async stop() {
      admin.disconnect();
      await server.stop();
    },
  };
}

/** STORE_PARTITIONS on both sides: the README's setting for a cluster of 3 primaries. */
const CLUSTER_PARTITIONS = 24;

/** Which primary owns each partition's hash slot: partitions per primary port. */
function partitionsPerPrimary(primaries, partitions) {
  const out = Object.fromEntries(primaries.map((p) => [p.port, 0]));
  for (const tag of partitionTags(partitions)) {
    const slot = hashSlot(tag);
    const owner = primaries.find((p) => p.slots.some(([a, b]) => slot >= a && slot <= b));
    if (owner) out[owner.port]++;
  }
  return out;
}

function summariseCommands(runs) {
  const out = {};
  const detail = {};
  for (const [side, prefix] of [["cluster", ""], ["single", "single_"]]) {
    for (const key of ["rps", "p50_ms", "p99_ms", "server_us_per_call", "client_us_per_call"]) {
      const s = medianOf(runs[side], key);
      out[`${prefix}${key}`] = round(s.median);
      detail[`${prefix}${key}`] = trioOf(s);
    }
    const u = medianUtil(runs[side]);
    out[`${prefix}cores`] = { client: round(u.client), server: round(u.server), redis: round(u.redis), ...(u.redisBusiest !== undefined ? { redis_busiest_node: round(u.redisBusiest) } : {}), other_processes: round(u.others) };
    out[`${prefix}event_loop_busy`] = { client: round(u.clientElu), server: round(u.serverElu) };
    out[`${prefix}limited_by`] = limitedBy(u, true);
    out[`${prefix}errors`] = runs[side].reduce((a, r) => a + r.errors, 0);
  }
  out.detail = detail;
  return out;
}

/** Each primary's share of the primaries' CPU over windows (cores per node per window, averaged). */
function primaryShares(windows, primaryPorts) {
  const cores = Object.fromEntries(primaryPorts.map((p) => [p, windows.reduce((a, w) => a + (w.util.redisNodes?.[p] ?? 0), 0) / Math.max(1, windows.length)]));
  const total = Object.values(cores).reduce((a, b) => a + b, 0);
  return Object.fromEntries(primaryPorts.map((p) => [p, total > 0 ? cores[p] / total : Number.NaN]));
}

async function run(ctx) {
  const support = clusterSupport();
  if (!support.ok) {
    ctx.log(`cluster: skipped: ${support.reason}`);
    return { skipped: support.reason };
  }
  const W = ctx.smoke ? 20 : 1_000;
  const partitions = Number(process.env.BENCH_CLUSTER_PARTITIONS ?? CLUSTER_PARTITIONS);
  ctx.log(`cluster: ${LIMIT_NOTE}`);
  const single = await startSingle();
  let cluster;
  const servers = [];
  const clients = [];
  try {
    const startedAt = Date.now();
    cluster = await startRedisCluster();
    const primaries = cluster.primaries();
    const primaryPorts = primaries.map((p) => String(p.port));
    const replicaPorts = cluster.replicas().map((p) => String(p.port));
    const effectivePartitions = partitions;
    const perPrimary = partitionsPerPrimary(primaries, effectivePartitions);
    ctx.log(`cluster: 3 primaries (${primaries.map((p) => `${p.port}: slots ${p.slots.map((r) => r.join("-")).join(",")}, ${perPrimary[p.port]} of ${effectivePartitions} partitions`).join("; ")}) + 3 replicas, healthy in ${Date.now() - startedAt} ms; single redis-server on ${single.port}`);

    const sides = {
      single: { ...ctx, measure: createMeasure({ redis: single }), servers: { ...createServerProcesses({ redisUrl: single.url, partitions, log: ctx.log }), profileWindow: ctx.servers.profileWindow } },
      cluster: { ...ctx, measure: createMeasure({ redis: cluster }), servers: { ...createServerProcesses({ clusterNodes: cluster.seeds, partitions, log: ctx.log }), profileWindow: ctx.servers.profileWindow } },
    };

    // Commands: one server per side for every window; an unmeasured c16 window each first.
    const server = {};
    const client = {};
    for (const side of ["single", "cluster"]) {
      server[side] = await sides[side].servers.startServer("real");
      servers.push(server[side]);
      client[side] = clientFor(server[side].port);
      clients.push(client[side]);
      await unaryRun(sides[side], { server: server[side], worker: commandWorker(client[side], `warm-${side}-${Date.now()}`), concurrency: LEVELS[0] });
    }
    const commands = {};
    const clusterWindows = [];
    for (const c of LEVELS) {
      const runs = { single: [], cluster: [] };
      for (let r = 0; r < ctx.runs; r++) {
        for (const side of ["single", "cluster"]) {
          const worker = commandWorker(client[side], `${side}-${c}-${r}-${Date.now()}`);
          const result = await unaryRun(sides[side], { server: server[side], worker, concurrency: c, profileName: `cluster-commands-c${c}-${side}-run${r + 1}` });
          runs[side].push(result);
          if (side === "cluster") clusterWindows.push({ level: c, ...result });
          const nodes = result.util.redisNodes ? `; primaries ${primaryPorts.map((p) => result.util.redisNodes[p].toFixed(2)).join(" / ")} cores, replicas ${replicaPorts.map((p) => result.util.redisNodes[p].toFixed(2)).join(" / ")}` : "";
          ctx.log(`cluster commands c${c} run ${r + 1} ${side}: ${result.rps.toFixed(0)} rps, p99 ${result.p99_ms.toFixed(2)} ms, server ${result.server_us_per_call.toFixed(0)} µs/call, Redis ${result.util.redis.toFixed(2)} cores${nodes}`);
        }
      }
      commands[`c${c}`] = summariseCommands(runs);
      commands[`c${c}`].primary_cpu_share = Object.fromEntries(Object.entries(primaryShares(clusterWindows.filter((w) => w.level === c), primaryPorts)).map(([p, s]) => [p, round(s)]));
    }
    const keys = await cluster.dbsizes();
    for (const c of clients) c.close();
    clients.length = 0;
    await Promise.all(servers.map((s) => s.stop()));
    servers.length = 0;

    // Fanout W: the fanout section's trial on each side, fresh processes each.
    const trials = { single: [], cluster: [] };
    for (let r = 0; r < ctx.runs; r++) {
      for (const side of ["single", "cluster"]) {
        const t = await fanoutTrial(sides[side], await watchSetup(sides[side], "real", W, r), W, r);
        trials[side].push(t);
        ctx.log(
          `cluster fanout W=${W} run ${r + 1} ${side}: 10/s p50 ${t.cadence.p50_ms.toFixed(1)} p99 ${t.cadence.p99_ms.toFixed(1)} ms; closed loop ${t.closed.delivered_per_s.toFixed(0)} msg/s (${t.closed.rounds} rounds); ${limitedBy(t.closed.util, true)}`,
        );
      }
    }
    const fan = {};
    const detail = {};
    summariseTrials(trials.cluster, "", true, fan, detail);
    summariseTrials(trials.single, "single_", true, fan, detail);
    fan.detail = detail;

    const shares = primaryShares(clusterWindows, primaryPorts);
    ctx.log(`cluster: primaries' shares of Redis CPU over the commands: ${primaryPorts.map((p) => `${p} ${(shares[p] * 100).toFixed(1)} %`).join(", ")} (partitions ${primaryPorts.map((p) => perPrimary[p]).join("/")})`);
    return {
      note: LIMIT_NOTE,
      redis: support.version,
      topology: { primaries: primaries.map((p) => ({ port: p.port, slots: p.slots, partitions: perPrimary[p.port], keys: keys[p.port] })), replicas: cluster.replicas().map((p) => ({ port: p.port, of: p.primaryPort, keys: keys[p.port] })) },
      partitions: effectivePartitions,
      commands,
      fanout: { [`w${W}`]: fan },
      // Over every cluster commands window (c16 and c64, every run).
      primary_cpu_share: Object.fromEntries(primaryPorts.map((p) => [p, round(shares[p])])),
      primary_cpu_share_range: [round((1 - SHARE_TOLERANCE) / 3), round((1 + SHARE_TOLERANCE) / 3)],
    };
  } finally {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
    await cluster?.stop();
    await single.stop();
  }
}

const shareTargetName = (i) => `cluster primary ${i + 1} CPU share`;

/** One target per primary (in slot order): its share of the primaries' CPU, in %, within a third +- 10 %. */
function targets(piece) {
  if (!piece?.primary_cpu_share) return [];
  const [lo, hi] = piece.primary_cpu_share_range;
  return piece.topology.primaries.map((p, i) => {
    const share = piece.primary_cpu_share[p.port];
    return { name: shareTargetName(i), value: round(share * 100), target: `${(lo * 100).toFixed(1)} to ${(hi * 100).toFixed(1)} % (a third +- 10 %)`, met: share >= lo && share <= hi };
  });
}

const pctText = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : "-");

function rows(piece, targetList) {
  if (!piece) return [];
  if (piece.skipped) return [["cluster: skipped", "", piece.skipped, "", ""]];
  const out = [["cluster (single redis-server as baseline; 3 primaries + 3 replicas)", "", piece.note, "", ""]];
  for (const [level, s] of Object.entries(piece.commands)) {
    for (const [key, label] of [["rps", "RPS"], ["p50_ms", "p50 ms"], ["p99_ms", "p99 ms"], ["server_us_per_call", "server µs/call"]]) {
      out.push([`cluster commands ${level} ${label}`, trio(s.detail[`single_${key}`]), trio(s.detail[key]), ratioText(s[key], s[`single_${key}`]), ""]);
    }
    out.push([`  Redis cores (cluster: all 6 nodes; busiest node)`, fmt(s.single_cores.redis), `${fmt(s.cores.redis)}; ${fmt(s.cores.redis_busiest_node)}`, "", ""]);
    out.push([`  limited by`, s.single_limited_by, s.limited_by, "", ""]);
  }
  for (const [w, f] of Object.entries(piece.fanout)) {
    for (const [key, label] of [["delivered_per_s", "delivered msg/s (closed loop)"], ["p50_ms", "p50 ms (10 cmd/s)"], ["p99_ms", "p99 ms (10 cmd/s)"], ["from_send_p99_ms", "p99 ms from send (10 cmd/s)"]]) {
      out.push([`cluster fanout ${w} ${label}`, trio(f.detail[`single_${key}`]), trio(f.detail[key]), ratioText(f[key], f[`single_${key}`]), ""]);
    }
    out.push([`  limited by (closed loop)`, f.single_limited_by, f.limited_by, "", ""]);
  }
  piece.topology.primaries.forEach((p, i) => {
    out.push([`cluster primary ${i + 1} (:${p.port}) share of Redis CPU (commands)`, "", `${pctText(piece.primary_cpu_share[p.port])} (${p.partitions}/${piece.partitions} partitions, ${fmt(p.keys)} keys)`, "", metText(targetList, shareTargetName(i))]);
  });
  return out;
}

export default { name: "cluster", run, targets, rows };
