/**
 * Resource use over a measured window: the cores the client, the server, Redis
 * and everything else on the machine used, how busy each event loop was, and
 * what that says bound the figure.
 */
import os from "node:os";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { nowNs, spread } from "./stats.mjs";

export const cpuMicros = (u) => u.user + u.system;

/** CPU seconds the whole machine spent busy (all processes, ours and anyone else's). */
export function machineBusySeconds() {
  try {
    // cpu  user nice system idle iowait irq softirq steal ... (in USER_HZ ticks)
    const [user, nice, system, , , irq, softirq, steal = 0] = readFileSync("/proc/stat", "latin1").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return Number.NaN;
  }
}

/**
 * `redis` is the context's Redis handle (its cpuSeconds()), or a Redis Cluster
 * (bench/lib/redisCluster.mjs: nodeCpuSeconds() too, then each node's cores
 * are in utilisation().redisNodes and the busiest one decides whether "Redis"
 * is saturated); `server` anything
 * with usage() -> {cpu: {user, system} in µs, elu?} (a server child, a
 * nats-server); `watchers` a watcher pool or nothing.
 */
export function createMeasure({ redis }) {
  /** Resource use at one instant. */
  async function snapshot(server, watchers) {
    const [usage, redisNodes, watcherUsage] = await Promise.all([
      server.usage(),
      redis.nodeCpuSeconds ? redis.nodeCpuSeconds() : redis.cpuSeconds().then((s) => ({ all: s })),
      watchers ? watchers.usage() : [],
    ]);
    const redisCpu = Object.values(redisNodes).reduce((a, b) => a + b, 0);
    return {
      t: nowNs(),
      server: cpuMicros(usage.cpu),
      serverElu: usage.elu,
      // The client is this process, plus the watcher processes in the fanout section.
      client: cpuMicros(process.cpuUsage()) + watcherUsage.reduce((a, u) => a + cpuMicros(u.cpu), 0),
      clientElus: [performance.eventLoopUtilization(), ...watcherUsage.map((u) => u.elu)],
      redis: redisCpu,
      redisNodes: redis.nodeCpuSeconds ? redisNodes : undefined,
      machine: machineBusySeconds(),
    };
  }
  return { snapshot, utilisation, limitedBy, medianUtil };
}

/** Cores used and event loop utilisation between two snapshots. */
export function utilisation(a, b) {
  const wallS = (b.t - a.t) / 1e9;
  const client = (b.client - a.client) / 1e6 / wallS;
  const server = (b.server - a.server) / 1e6 / wallS;
  const redisCores = (b.redis - a.redis) / wallS;
  // Anything else on the machine (other people's builds and tests) competes for the same cores.
  const others = Math.max(0, (b.machine - a.machine) / wallS - client - server - redisCores);
  // Event loop utilisation over the window: the share of time a process's JavaScript thread was busy
  // (NaN for a server without one, such as nats-server).
  const elu = (x, y) => (x && y ? (y.active - x.active) / (y.active + y.idle - x.active - x.idle) : Number.NaN);
  // A cluster: each node's cores (by port), and the busiest node's.
  const redisNodes = a.redisNodes && b.redisNodes ? Object.fromEntries(Object.keys(b.redisNodes).map((port) => [port, (b.redisNodes[port] - a.redisNodes[port]) / wallS])) : undefined;
  return {
    client,
    server,
    redis: redisCores,
    ...(redisNodes ? { redisNodes, redisBusiest: Math.max(...Object.values(redisNodes)) } : {}),
    others,
    serverElu: elu(a.serverElu, b.serverElu),
    clientElu: Math.max(...b.clientElus.map((y, i) => elu(a.clientElus[i], y))),
  };
}

export const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : "-");

/**
 * What bound a figure: a process whose event loop was busy (nearly) all the
 * time, or Redis at a full core, or the machine's cores all in use; else the
 * round trips themselves (concurrency too low to saturate anything).
 */
export function limitedBy(u, withRedis) {
  const busiest = Number.isFinite(u.redisBusiest) ? ` (busiest node ${u.redisBusiest.toFixed(2)})` : "";
  const cores = `client ${u.client.toFixed(2)}, server ${u.server.toFixed(2)}${withRedis ? `, Redis ${u.redis.toFixed(2)}${busiest}` : ""} cores; event loop busy: client ${pct(u.clientElu)}, server ${pct(u.serverElu)}`;
  const noise = u.others >= 0.15 ? `; other processes ${u.others.toFixed(2)} cores` : "";
  const candidates = [
    ["client event loop", u.clientElu],
    // A server without a JavaScript event loop (nats-server, multi-threaded): its share of all the cores.
    Number.isFinite(u.serverElu) ? ["server event loop", u.serverElu] : ["server threads", u.server / os.availableParallelism()],
    // Redis is single-threaded: one core is its limit (a cluster's: its busiest node's).
    ...(withRedis ? [["Redis", Number.isFinite(u.redisBusiest) ? u.redisBusiest : u.redis]] : []),
  ]
    .filter(([, level]) => Number.isFinite(level))
    .sort((x, y) => y[1] - x[1]);
  const [top, level] = candidates[0];
  const total = u.client + u.server + (withRedis ? u.redis : 0) + (u.others ?? 0);
  const machine = os.availableParallelism();
  if (level >= 0.85) return `${top} saturated (${cores}${noise})`;
  if (total >= 0.85 * machine) return `the ${machine} shared cores, busiest: ${top} (${cores}${noise})`;
  if (level >= 0.65) return `mostly the ${top} (${cores}${noise})`;
  return `round trips, nothing saturated (${cores}${noise})`;
}

export const medianOf = (runs, key) => spread(runs.map((r) => r[key]));

export function medianUtil(runs) {
  const med = (key) => spread(runs.map((r) => r.util[key])).median;
  const out = { client: med("client"), server: med("server"), redis: med("redis"), others: med("others"), clientElu: med("clientElu"), serverElu: med("serverElu") };
  if (runs.every((r) => Number.isFinite(r.util.redisBusiest))) out.redisBusiest = med("redisBusiest");
  return out;
}
