/**
 * `npm run bench`: the service against a bare grpc-js baseline, same run, same
 * client code (the generated DeliveryServiceClient), on loopback.
 *
 *   node bench/run.mjs [--smoke] [--runs N] [--only commands,reads,fanout,memory,catchup]
 *                      [--levels 1,16,64] [--watchers 100,1000,5000] [--cpu-prof] [--out file]
 *
 * --cpu-prof writes a V8 CPU profile of the server child per measured window to
 * bench/results/profiles/ (summarise with bench/profileTop.mjs). BENCH_SERVICE_DIST=dir
 * measures another build of the service (a patched copy of dist/ under bench/results/).
 *
 * Starts its own redis-server (free port, no persistence) and one server per
 * child process (fork + IPC: cpuUsage/memoryUsage are read inside the server
 * process before and after each run). Prints a table; writes a JSON summary
 * (default bench/results/latest.json) and prints its path last. Bounded: a
 * hard deadline stops everything.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { DeliveryServiceClient } from "../dist/gen/delivery/v1/delivery.js";
import { evolve } from "../dist/domain/index.js";
import { createRedisEventStore } from "../dist/store/redis/redisEventStore.js";
import { startChild } from "./lib/child.mjs";
import { benchId, BUDGET, lifecycleRequests, NOTES } from "./lib/fixtures.mjs";
import { startRedis } from "./lib/redisServer.mjs";
import { nowNs, percentile, round, sortNumbers, spread } from "./lib/stats.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: flags } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    runs: { type: "string" },
    only: { type: "string" },
    watchers: { type: "string" },
    levels: { type: "string" },
    "cpu-prof": { type: "boolean", default: false },
    out: { type: "string", default: path.join(here, "results", "latest.json") },
  },
});

const SMOKE = flags.smoke;
const RUNS = flags.runs ? Math.max(1, Number(flags.runs)) : SMOKE ? 1 : 3;
const SECTIONS = new Set((flags.only ?? "commands,reads,fanout,memory,catchup").split(","));
const CFG = SMOKE
  ? { warmupMs: 100, durationMs: 250, levels: [1, 16, 64], readIds: 64, watchers: [20], cadenceCommands: 5, closedLoopMs: 300, idleMs: 200, catchUpEvents: 200, deadlineMs: 90_000 }
  : { warmupMs: 300, durationMs: 1_500, levels: [1, 16, 64], readIds: 256, watchers: [100, 1_000, 5_000], cadenceCommands: 20, closedLoopMs: 1_500, idleMs: 700, catchUpEvents: 10_000, deadlineMs: 285_000 };
if (flags.watchers) CFG.watchers = flags.watchers.split(",").map(Number);
if (flags.levels) CFG.levels = flags.levels.split(",").map(Number);
const CADENCE_MS = 100;
const WATCH_CHANNELS = 4;
const WATCHER_PROCESSES = Number(process.env.BENCH_WATCHER_PROCESSES ?? 2);
const PROFILE_DIR = path.join(here, "results", "profiles");
const CANDIDATE = process.env.BENCH_SERVICE_DIST;

const startedAt = Date.now();
const debug = (line) => process.env.BENCH_DEBUG && log(`  debug: ${line}`);
const log = (line) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

let redis;
let redisAdmin;

async function startServerChild(kind, execArgv = []) {
  const args = kind === "real" ? ["real", redis.url] : kind === "sized" ? ["bare-sized"] : ["bare"];
  return startChild(path.join(here, "serverChild.mjs"), args, { execArgv: ["--expose-gc", ...execArgv], name: `${kind} server` });
}

/**
 * With --cpu-prof: a V8 CPU profile of the server child over exactly the
 * measured window (started and stopped over IPC), one file per window.
 * Returns the stop function (a no-op without --cpu-prof).
 */
async function profileWindow(server, name) {
  if (!flags["cpu-prof"] || !name) return async () => {};
  mkdirSync(PROFILE_DIR, { recursive: true });
  await server.request("profileStart", { intervalUs: 250 });
  return async () => {
    const { file } = await server.request("profileStop", { file: path.join(PROFILE_DIR, `${name}.cpuprofile`) });
    log(`  profile: ${path.relative(process.cwd(), file)}`);
  };
}

const clientFor = (port) =>
  new DeliveryServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

const callUnary = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, (error, response) => (error ? reject(error) : resolve(response))));

const cpuMicros = (u) => u.user + u.system;

async function redisCpuSeconds() {
  const info = await redisAdmin.info("cpu");
  const field = (name) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
  return field("used_cpu_user") + field("used_cpu_sys");
}

/** Which source was measured: the commit and the files of src/ changed since (read-only git). */
function sourceState() {
  const git = (...args) => execFileSync("git", args, { cwd: path.resolve(here, ".."), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  try {
    return { commit: git("rev-parse", "HEAD"), changed_in_src: git("status", "--porcelain", "--", "src").split("\n").filter(Boolean) };
  } catch {
    return { commit: "unknown" };
  }
}

/** CPU seconds the whole machine spent busy (all processes, ours and anyone else's). */
function machineBusySeconds() {
  try {
    // cpu  user nice system idle iowait irq softirq steal ... (in USER_HZ ticks)
    const [user, nice, system, , , irq, softirq, steal = 0] = readFileSync("/proc/stat", "latin1").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Resource use over a window: cores used by the client, the server and Redis. */
async function snapshot(server, watchers) {
  const [usage, redisCpu, watcherUsage] = await Promise.all([server.request("usage"), redisCpuSeconds(), watchers ? watchers.usage() : []]);
  return {
    t: nowNs(),
    server: cpuMicros(usage.cpu),
    serverElu: usage.elu,
    // The client is this process, plus the watcher processes in the fanout section.
    client: cpuMicros(process.cpuUsage()) + watcherUsage.reduce((a, u) => a + cpuMicros(u.cpu), 0),
    clientElus: [performance.eventLoopUtilization(), ...watcherUsage.map((u) => u.elu)],
    redis: redisCpu,
    machine: machineBusySeconds(),
  };
}

function utilisation(a, b) {
  const wallS = (b.t - a.t) / 1e9;
  const client = (b.client - a.client) / 1e6 / wallS;
  const server = (b.server - a.server) / 1e6 / wallS;
  const redisCores = (b.redis - a.redis) / wallS;
  // Anything else on the machine (other people's builds and tests) competes for the same cores.
  const others = Math.max(0, (b.machine - a.machine) / wallS - client - server - redisCores);
  // Event loop utilisation over the window: the share of time a process's JavaScript thread was busy.
  const elu = (x, y) => (y.active - x.active) / (y.active + y.idle - x.active - x.idle);
  return {
    client,
    server,
    redis: redisCores,
    others,
    serverElu: elu(a.serverElu, b.serverElu),
    clientElu: Math.max(...b.clientElus.map((y, i) => elu(a.clientElus[i], y))),
  };
}

/**
 * What bound a figure: a process whose event loop was busy (nearly) all the
 * time, or Redis at a full core, or the machine's cores all in use; else the
 * round trips themselves (concurrency too low to saturate anything).
 */
function limitedBy(u, withRedis) {
  const cores = `client ${u.client.toFixed(2)}, server ${u.server.toFixed(2)}${withRedis ? `, Redis ${u.redis.toFixed(2)}` : ""} cores; event loop busy: client ${pct(u.clientElu)}, server ${pct(u.serverElu)}`;
  const noise = u.others >= 0.15 ? `; other processes ${u.others.toFixed(2)} cores` : "";
  const candidates = [
    ["client event loop", u.clientElu],
    ["server event loop", u.serverElu],
    ...(withRedis ? [["Redis", u.redis]] : []),
  ].sort((x, y) => y[1] - x[1]);
  const [top, level] = candidates[0];
  const total = u.client + u.server + (withRedis ? u.redis : 0) + (u.others ?? 0);
  const machine = os.availableParallelism();
  if (level >= 0.85) return `${top} saturated (${cores}${noise})`;
  if (total >= 0.85 * machine) return `the ${machine} shared cores, busiest: ${top} (${cores}${noise})`;
  if (level >= 0.65) return `mostly the ${top} (${cores}${noise})`;
  return `round trips, nothing saturated (${cores}${noise})`;
}
const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : "-");

const medianOf = (runs, key) => spread(runs.map((r) => r[key]));

function medianUtil(runs) {
  const med = (key) => spread(runs.map((r) => r.util[key])).median;
  return { client: med("client"), server: med("server"), redis: med("redis"), others: med("others"), clientElu: med("clientElu"), serverElu: med("serverElu") };
}

// ---------------------------------------------------------------------------
// Unary load: commands and reads
// ---------------------------------------------------------------------------

/**
 * Closed-loop load at a concurrency: `concurrency` workers each call, wait,
 * call again. Warm-up first; the window is timed and the server's CPU read
 * (in its own process) at both ends.
 */
async function unaryRun({ server, worker, concurrency, profileName }) {
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
  await sleep(CFG.warmupMs);
  const stopProfile = await profileWindow(server, profileName);
  const before = await snapshot(server);
  state.recording = true;
  await sleep(CFG.durationMs);
  state.recording = false;
  const after = await snapshot(server);
  await stopProfile();
  state.stop = true;
  await Promise.all(workers);
  if (state.errors > 0) log(`  ${state.errors} errors, first: ${state.firstError?.message}`);
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

/** A mix of real commands: each worker runs deliveries through create, start, increase budget, pick up, deliver. */
const commandWorker = (client, runTag) => async (w, timed, state) => {
  for (let n = 0; !state.stop; n++) {
    const id = benchId(`c${w}`);
    for (const [method, request] of lifecycleRequests(id, `${runTag}-${n}`)) {
      if (state.stop) return;
      if (!(await timed(() => callUnary(client, method, request)))) break;
    }
  }
};

const readWorker = (client, ids) => async (w, timed, state) => {
  for (let n = w; !state.stop; n += 7) {
    const deliveryId = ids[n % ids.length];
    await timed(() => callUnary(client, "getDelivery", { deliveryId, atVersion: undefined }));
  }
};

/**
 * Kinds of server: "real" (the service), "bare" (the empty unary RPC: the
 * baseline of the targets) and, at the highest concurrency only, "sized" (a
 * bare server answering with fixed responses of the real size: what the
 * payload alone costs).
 */
async function unarySection(name, makeWorker, prepare) {
  const top = Math.max(...CFG.levels);
  const kindsAt = (c) => (c === top ? ["bare", "sized", "real"] : ["bare", "real"]);
  const [real, bare, sized] = await Promise.all([startServerChild("real"), startServerChild("bare"), startServerChild("sized")]);
  const servers = { real, bare, sized };
  const clients = Object.fromEntries(Object.entries(servers).map(([kind, server]) => [kind, clientFor(server.port)]));
  const context = prepare ? await prepare(clients.real) : undefined;
  const results = {};
  const warmed = new Set();
  try {
    for (const c of CFG.levels) {
      const runs = { real: [], bare: [], sized: [] };
      for (let r = 0; r < RUNS; r++) {
        for (const kind of kindsAt(c)) {
          if (!warmed.has(kind)) {
            // The "sized" server runs at the top level only: one unmeasured run gives it the JIT
            // warm-up the others had at the lower levels.
            warmed.add(kind);
            if (kind === "sized") await unaryRun({ server: servers[kind], worker: makeWorker(clients[kind], `warm-${Date.now()}`, context), concurrency: c });
          }
          const worker = makeWorker(clients[kind], `${kind}-${c}-${r}-${Date.now()}`, context);
          const result = await unaryRun({ server: servers[kind], worker, concurrency: c, profileName: `${name}-c${c}-${kind}-run${r + 1}` });
          runs[kind].push(result);
          log(`${name} c${c} run ${r + 1} ${kind}: ${result.rps.toFixed(0)} rps, p99 ${result.p99_ms.toFixed(2)} ms, server ${result.server_us_per_call.toFixed(0)} µs/call, client ${result.client_us_per_call.toFixed(0)} µs/call`);
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

async function createDeliveries(client, n) {
  const ids = Array.from({ length: n }, () => benchId("r"));
  for (let i = 0; i < n; i += 32) {
    await Promise.all(
      ids.slice(i, i + 32).map((deliveryId) => callUnary(client, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` })),
    );
  }
  // Two more events each, so reads return a delivery with some history.
  for (const step of ["startDelivery", "increaseBudget"]) {
    await Promise.all(ids.map((deliveryId) => callUnary(client, step, { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-${step}`, amount: 500n })));
  }
  return ids;
}

// ---------------------------------------------------------------------------
// Fanout and memory
// ---------------------------------------------------------------------------

/**
 * The watchers, spread over WATCHER_PROCESSES child processes (each with its
 * share of the WATCH_CHANNELS connections): one process alone saturates its
 * event loop below the 50,000 messages/s of W=5,000 at 10 pushes/s.
 */
async function startWatcherPool() {
  const n = WATCHER_PROCESSES;
  const children = await Promise.all(
    Array.from({ length: n }, (_, i) => startChild(path.join(here, "watcherChild.mjs"), [], { name: `watchers ${i + 1}` })),
  );
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
    async open({ port, deliveryId, count }) {
      const results = await Promise.all(
        children.map((c, i) => c.request("open", { port, deliveryId, count: share(count, i), channels: Math.max(1, WATCH_CHANNELS / n) }, 90_000)),
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

/**
 * A server child (real or bare) with a watched delivery, a watcher child and a
 * command client; warmed up (a watch, a push and a cancel). `execArgv` adds
 * V8 flags to the server child.
 */
async function watchSetup(kind, W, run, execArgv = []) {
  debug(`${kind} W=${W}: starting processes`);
  const [server, watchers] = await Promise.allSettled([startServerChild(kind, execArgv), startWatcherPool()]).then(async (settled) => {
    const failed = settled.find((x) => x.status === "rejected");
    if (!failed) return settled.map((x) => x.value);
    await Promise.all(settled.filter((x) => x.status === "fulfilled").map((x) => x.value.stop()));
    throw failed.reason;
  });
  const client = clientFor(server.port);
  const close = async () => {
    client.close();
    await watchers.stop();
    await server.stop();
    debug("stopped");
  };
  try {
    const whenAll = watchers.whenAll;
    const deliveryId = kind === "real" ? benchId("f") : "bare";
    if (kind === "real") {
      await callUnary(client, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` });
      await callUnary(client, "startDelivery", { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-s` });
    }
    let commandCount = 0;
    let version = kind === "real" ? 2 : 1;
    /** One IncreaseBudget on the watched delivery; its version and acknowledgement time. */
    const command = async () => {
      const n = ++commandCount;
      const sentNs = nowNs();
      const response = await callUnary(client, "increaseBudget", {
        deliveryId,
        expectedVersion: undefined,
        requestId: `${deliveryId}-${run}-${n}`,
        amount: 1n,
      });
      const ackNs = nowNs();
      // The bare server's answer is fixed; its pushes are numbered in call order.
      return { version: kind === "real" ? Number(response.event.version) : ++version, ackNs, sentNs };
    };
    const open = async (count) => {
      const opened = await watchers.open({ port: server.port, deliveryId, count });
      const usage = await server.request("usage");
      if (usage.watchers !== count) throw new Error(`${kind} server has ${usage.watchers} watchers, expected ${count}`);
      return opened;
    };

    // Warm-up: the code paths of a watch, a push and a cancel, then idle.
    await open(Math.min(W, 50));
    await whenAll((await command()).version);
    await watchers.closeAll();
    await sleep(200);
    debug("started and warmed up");
    return { server, watchers, whenAll, command, open, close };
  } catch (error) {
    await close();
    throw error;
  }
}

async function fanoutTrial(kind, W, run) {
  const { server, watchers, whenAll, command, open, close } = await watchSetup(kind, W, run);
  try {
    const opened = await open(W);
    // A few pushes to all W streams, unmeasured: the first ones after opening thousands of
    // streams are slow on both servers (JIT, and the first GCs of the grown heap).
    for (let i = 0; i < 3; i++) await whenAll((await command()).version);
    await sleep(100);
    debug("opened");

    // Cadence: one command every 100 ms, sent on a timer (not waiting for the previous).
    let stopProfile = await profileWindow(server, `fanout-w${W}-cadence-${kind}-run${run + 1}`);
    const a = await snapshot(server, watchers);
    const startNs = nowNs();
    const pending = [];
    for (let k = 0; k < CFG.cadenceCommands; k++) {
      const due = startNs + k * CADENCE_MS * 1e6;
      const wait = (due - nowNs()) / 1e6;
      if (wait > 0) await sleep(wait);
      pending.push(command());
    }
    const acks = await Promise.all(pending);
    const lastAll = await whenAll(Math.max(...acks.map((x) => x.version)));
    const b = await snapshot(server, watchers);
    await stopProfile();
    const cadenceStats = await watchers.stats(acks.map((x) => [x.version, x.ackNs, x.sentNs]));
    debug(`cadence per version [version, first ms, last ms]: ${JSON.stringify(cadenceStats.perVersion)}`);
    const ackSorted = sortNumbers(acks.map((x) => (x.ackNs - x.sentNs) / 1e6));
    const cadence = {
      ...cadenceStats,
      ack_p50_ms: percentile(ackSorted, 50),
      ack_max_ms: ackSorted[ackSorted.length - 1],
      delivered_per_s: cadenceStats.received / ((lastAll - startNs) / 1e9),
      util: utilisation(a, b),
    };
    debug("cadence done");

    // Closed loop: the next command once every watcher has the last version.
    stopProfile = await profileWindow(server, `fanout-w${W}-closed-${kind}-run${run + 1}`);
    const c = await snapshot(server, watchers);
    const loopStart = nowNs();
    const loopAcks = [];
    let lastNs = loopStart;
    while (nowNs() - loopStart < CFG.closedLoopMs * 1e6) {
      const x = await command();
      loopAcks.push(x);
      lastNs = await whenAll(x.version);
    }
    const d = await snapshot(server, watchers);
    await stopProfile();
    const loopStats = await watchers.stats(loopAcks.map((x) => [x.version, x.ackNs, x.sentNs]));
    const closed = {
      ...loopStats,
      rounds: loopAcks.length,
      delivered_per_s: loopStats.received / ((lastNs - loopStart) / 1e9),
      util: utilisation(c, d),
    };
    const lost = cadence.expected - cadence.received + closed.expected - closed.received;
    if (lost !== 0 || cadenceStats.errors) log(`  ${kind} W=${W}: ${lost} messages missing, ${cadenceStats.errors} stream errors (${cadenceStats.firstError})`);
    debug("closed loop done");
    return { openMs: opened.ms, cadence, closed };
  } finally {
    await close();
  }
}

/**
 * RSS per idle watcher: a fresh server child with default V8 flags, warmed up
 * with 50 watches, then (RSS with W idle watchers - RSS before) / W, both read
 * after a full gc. Also split: the V8 young generation (which V8 grows with the
 * allocation rate while the watches open, and which holds no watcher), the
 * rest of the RSS, and the V8 heap in use.
 */
async function memoryTrial(kind, W, run) {
  const { server, open, close } = await watchSetup(kind, W, run);
  try {
    const before = await server.request("usage", { gc: true });
    await open(W);
    await sleep(CFG.idleMs);
    const idle = await server.request("usage", { gc: true });
    const perWatcher = (field) => (idle.mem[field] - before.mem[field]) / W;
    const youngPhysical = (u) => (u.spaces.new_space?.physical ?? 0) + (u.spaces.new_large_object_space?.physical ?? 0);
    return {
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
  } finally {
    await close();
  }
}

const trioOf = (s) => ({ min: round(s.min), median: round(s.median), max: round(s.max) });

async function fanoutSection() {
  const fanout = {};
  for (const W of CFG.watchers) {
    const runs = { real: [], bare: [] };
    for (let r = 0; r < RUNS; r++) {
      for (const kind of ["bare", "real"]) {
        const t = await fanoutTrial(kind, W, r);
        runs[kind].push(t);
        log(
          `fanout W=${W} run ${r + 1} ${kind}: opened in ${t.openMs.toFixed(0)} ms; ` +
            `10/s p50 ${t.cadence.p50_ms.toFixed(1)} p99 ${t.cadence.p99_ms.toFixed(1)} max ${t.cadence.max_ms.toFixed(1)} ms; ` +
            `closed loop ${t.closed.delivered_per_s.toFixed(0)} msg/s (${t.closed.rounds} rounds, p99 ${t.closed.p99_ms.toFixed(1)} ms)`,
        );
      }
    }
    const figure = (kind, pick) => spread(runs[kind].map(pick));
    const fields = {
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
    const out = {};
    const detail = {};
    for (const [kind, prefix] of [["real", ""], ["bare", "baseline_"]]) {
      for (const [key, pick] of Object.entries(fields)) {
        const s = figure(kind, pick);
        out[`${prefix}${key}`] = round(s.median);
        detail[`${prefix}${key}`] = trioOf(s);
      }
      const closedUtil = medianUtil(runs[kind].map((t) => t.closed));
      const cadenceUtil = medianUtil(runs[kind].map((t) => t.cadence));
      out[`${prefix}limited_by`] = limitedBy(closedUtil, kind === "real");
      out[`${prefix}cores`] = { client: round(closedUtil.client), server: round(closedUtil.server), redis: round(closedUtil.redis), other_processes: round(closedUtil.others) };
      out[`${prefix}event_loop_busy`] = { client: round(closedUtil.clientElu), server: round(closedUtil.serverElu) };
      out[`${prefix}cadence_limited_by`] = limitedBy(cadenceUtil, kind === "real");
      out[`${prefix}lost_messages`] = runs[kind].reduce((acc, t) => acc + (t.cadence.expected - t.cadence.received) + (t.closed.expected - t.closed.received), 0);
    }
    out.detail = detail;
    fanout[`w${W}`] = out;
  }
  return fanout;
}

async function memorySection() {
  const W = Math.max(...CFG.watchers);
  const runs = { real: [], bare: [] };
  for (let r = 0; r < RUNS; r++) {
    for (const kind of ["bare", "real"]) {
      const m = await memoryTrial(kind, W, r);
      runs[kind].push(m);
      log(`memory W=${W} run ${r + 1} ${kind}: ${m.rss_per_watcher.toFixed(0)} B RSS (${m.rss_without_young_per_watcher.toFixed(0)} B without the young generation), ${m.heap_used_per_watcher.toFixed(0)} B heap in use per idle watcher`);
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
  return {
    [`w${W}`]: {
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
      detail: {
        bytes_per_watcher: trioOf(rss.real),
        baseline_bytes_per_stream: trioOf(rss.bare),
        heap_used_bytes_per_watcher: trioOf(heap.real),
        baseline_heap_used_bytes_per_stream: trioOf(heap.bare),
        rss_without_young_generation_bytes_per_watcher: trioOf(noYoung.real),
        baseline_rss_without_young_generation_bytes_per_stream: trioOf(noYoung.bare),
      },
    },
  };
}

// ---------------------------------------------------------------------------
// Catch-up
// ---------------------------------------------------------------------------

/** Appends events straight through the service's own Redis store: IncreaseBudget after IncreaseBudget. */
async function seedEvents(deliveryId, total) {
  const connection = new Redis(redis.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  try {
    const store = createRedisEventStore({ redis: connection });
    let { state } = await store.load(deliveryId);
    const appendNext = () => {
      const version = state.version + 1;
      const event = { deliveryId, version, occurredAtMs: Date.now(), requestId: `seed-${version}`, data: { type: "budgetIncreased", amountMinor: 1 } };
      const record = { event, delivery: evolve(state, event) };
      state = record.delivery;
      return store.append({ record, expectedVersion: version - 1, requestKey: `seed-${version}`, fingerprint: "seed" });
    };
    await appendNext(); // loads the script (EVALSHA falls back to EVAL once)
    while (state.version < total) {
      // Sent without waiting: one connection keeps them in order, so each finds the version before it.
      const batch = [];
      while (state.version < total && batch.length < 2_000) batch.push(appendNext());
      const outcomes = await Promise.all(batch);
      const bad = outcomes.find((o) => o.outcome !== "appended");
      if (bad) throw new Error(`seeding failed: ${JSON.stringify(bad)}`);
    }
  } finally {
    connection.disconnect();
  }
}

function catchUpOnce(client, deliveryId, total) {
  return new Promise((resolve, reject) => {
    const started = nowNs();
    let received = 0;
    const call = client.watchDelivery({ deliveryId, afterVersion: 0n });
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`catch-up got ${received}/${total} in 30 s`));
    }, 30_000);
    call.on("data", (m) => {
      received++;
      if (Number(m.delivery.version) === total) {
        const ms = (nowNs() - started) / 1e6;
        clearTimeout(timer);
        call.cancel();
        resolve({ ms, received });
      }
    });
    call.on("error", (error) => {
      if (error.code === grpc.status.CANCELLED) return;
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Calls of one Redis command so far (INFO commandstats). */
async function redisCalls(command) {
  const info = await redisAdmin.info("commandstats");
  return Number(info.match(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m"))?.[1] ?? 0);
}

async function catchUpSection() {
  const N = CFG.catchUpEvents;
  const [real, bare] = await Promise.all([startServerChild("real"), startServerChild("bare")]);
  const servers = { real, bare };
  const clients = { real: clientFor(servers.real.port), bare: clientFor(servers.bare.port) };
  try {
    const deliveryId = benchId("k");
    await callUnary(clients.real, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` });
    const seedStart = nowNs();
    await seedEvents(deliveryId, N);
    log(`catch-up: seeded ${N} events in ${((nowNs() - seedStart) / 1e6).toFixed(0)} ms`);
    await servers.bare.request("prepareCatchUp", { n: N });
    const runs = { real: [], bare: [] };
    for (let r = 0; r < RUNS; r++) {
      for (const kind of ["bare", "real"]) {
        const xrangeBefore = await redisCalls("xrange");
        const stopProfile = await profileWindow(servers[kind], `catchup-${kind}-run${r + 1}`);
        const a = await snapshot(servers[kind]);
        const { ms, received } = await catchUpOnce(clients[kind], kind === "real" ? deliveryId : "bare", N);
        const b = await snapshot(servers[kind]);
        await stopProfile();
        const xrange = (await redisCalls("xrange")) - xrangeBefore;
        runs[kind].push({ ms, received, xrange, util: utilisation(a, b), server_us_per_event: (b.server - a.server) / N });
        log(`catch-up ${N} run ${r + 1} ${kind}: ${ms.toFixed(0)} ms (${received} messages, ${xrange} XRANGE calls)`);
      }
    }
    const key = `events${N >= 1000 ? `${N / 1000}k` : N}_ms`;
    const real = spread(runs.real.map((x) => x.ms));
    const bare = spread(runs.bare.map((x) => x.ms));
    return {
      [key]: round(real.median),
      [`baseline_${key}`]: round(bare.median),
      events: N,
      server_us_per_event: round(spread(runs.real.map((x) => x.server_us_per_event)).median),
      baseline_server_us_per_event: round(spread(runs.bare.map((x) => x.server_us_per_event)).median),
      xrange_calls: spread(runs.real.map((x) => x.xrange)).median,
      limited_by: limitedBy(medianUtil(runs.real), true),
      baseline_limited_by: limitedBy(medianUtil(runs.bare), false),
      detail: {
        [key]: { min: round(real.min), median: round(real.median), max: round(real.max) },
        [`baseline_${key}`]: { min: round(bare.min), median: round(bare.median), max: round(bare.max) },
      },
    };
  } finally {
    for (const c of Object.values(clients)) c.close();
    await Promise.all(Object.values(servers).map((s) => s.stop()));
  }
}

// ---------------------------------------------------------------------------
// Targets, table, summary
// ---------------------------------------------------------------------------

function evaluateTargets(summary) {
  const targets = [];
  const ratio = (name, value, baseline, op, limit) => {
    if (value === undefined || baseline === undefined) return;
    const r = value / baseline;
    targets.push({ name, value, baseline, ratio: Math.round(r * 1000) / 1000, target: `${op} ${limit} x baseline`, met: op === ">=" ? r >= limit : r <= limit });
  };
  const c = summary.commands?.c64;
  if (c) {
    ratio("commands c64 RPS", c.rps, c.baseline_rps, ">=", 0.6);
    ratio("commands c64 server CPU/call", c.server_us_per_call, c.baseline_server_us_per_call, "<=", 3);
  }
  const r = summary.reads?.c64;
  if (r) {
    ratio("reads c64 RPS", r.rps, r.baseline_rps, ">=", 0.8);
    ratio("reads c64 server CPU/call", r.server_us_per_call, r.baseline_server_us_per_call, "<=", 1.6);
  }
  for (const w of ["w1000", "w5000"]) {
    const f = summary.fanout?.[w];
    if (!f) continue;
    ratio(`fanout ${w} delivered/s`, f.delivered_per_s, f.baseline_delivered_per_s, ">=", 0.8);
    ratio(`fanout ${w} p99`, f.p99_ms, f.baseline_p99_ms, "<=", 1.5);
  }
  const m = summary.memory?.w5000;
  if (m) ratio("memory w5000 per idle watcher", m.bytes_per_watcher, m.baseline_bytes_per_stream, "<=", 1.3);
  const k = summary.catchup?.events10k_ms;
  if (k !== undefined) targets.push({ name: "catch-up 10k events", value: k, target: "< 1000 ms", met: k < 1000 });
  return targets;
}

const fmt = (v) => {
  if (v === undefined || Number.isNaN(v)) return "-";
  const r = round(v);
  return Math.abs(r) >= 1000 ? r.toLocaleString("en-US") : String(r);
};
const ratioText = (a, b) => (Number.isFinite(a / b) ? (a / b).toFixed(3) : "-");
const trio = (d) => (d ? `${fmt(d.min)} / ${fmt(d.median)} / ${fmt(d.max)}` : "-");

function tableRows(summary, targets) {
  const rows = [];
  const met = (name) => {
    const t = targets.find((x) => x.name === name);
    return t ? `${t.met ? "met" : "MISSED"} (${t.ratio !== undefined ? t.ratio.toFixed(3) : fmt(t.value)} ${t.target})` : "";
  };
  for (const section of ["commands", "reads"]) {
    for (const [level, s] of Object.entries(summary[section] ?? {})) {
      for (const [key, label] of [["rps", "RPS"], ["p50_ms", "p50 ms"], ["p99_ms", "p99 ms"], ["server_us_per_call", "server µs/call"]]) {
        const name = key === "rps" ? `${section} ${level} RPS` : key === "server_us_per_call" ? `${section} ${level} server CPU/call` : "";
        rows.push([`${section} ${level} ${label}`, trio(s.detail[`baseline_${key}`]), trio(s.detail[key]), ratioText(s[key], s[`baseline_${key}`]), met(name)]);
      }
      rows.push([`  limited by`, s.baseline_limited_by, s.limited_by, "", ""]);
      if (s.sized_baseline_rps !== undefined) {
        for (const [key, label] of [["rps", "RPS"], ["server_us_per_call", "server µs/call"], ["client_us_per_call", "client µs/call"]]) {
          rows.push([`  vs same-size responses: ${label}`, trio(s.detail[`sized_baseline_${key}`]), trio(s.detail[key]), ratioText(s[key], s[`sized_baseline_${key}`]), ""]);
        }
      }
    }
  }
  for (const [w, f] of Object.entries(summary.fanout ?? {})) {
    for (const [key, label] of [
      ["delivered_per_s", "delivered msg/s (closed loop)"],
      ["p50_ms", "p50 ms (10 cmd/s)"],
      ["p99_ms", "p99 ms (10 cmd/s)"],
      ["max_ms", "max ms (10 cmd/s)"],
      ["from_send_p99_ms", "p99 ms from send (10 cmd/s)"],
      ["command_ack_p50_ms", "command ack p50 ms (10 cmd/s)"],
      ["closed_loop_p99_ms", "p99 ms (closed loop)"],
    ]) {
      const name = key === "delivered_per_s" ? `fanout ${w} delivered/s` : key === "p99_ms" ? `fanout ${w} p99` : "";
      rows.push([`fanout ${w} ${label}`, trio(f.detail[`baseline_${key}`]), trio(f.detail[key]), ratioText(f[key], f[`baseline_${key}`]), met(name)]);
    }
    rows.push([`  limited by (closed loop)`, f.baseline_limited_by, f.limited_by, "", ""]);
  }
  for (const [w, m] of Object.entries(summary.memory ?? {})) {
    rows.push([`memory ${w} RSS bytes/idle watcher`, trio(m.detail.baseline_bytes_per_stream), trio(m.detail.bytes_per_watcher), ratioText(m.bytes_per_watcher, m.baseline_bytes_per_stream), met(`memory ${w} per idle watcher`)]);
    rows.push([`  without the V8 young generation`, trio(m.detail.baseline_rss_without_young_generation_bytes_per_stream), trio(m.detail.rss_without_young_generation_bytes_per_watcher), ratioText(m.rss_without_young_generation_bytes_per_watcher, m.baseline_rss_without_young_generation_bytes_per_stream), ""]);
    rows.push([`  V8 heap in use per watcher`, trio(m.detail.baseline_heap_used_bytes_per_stream), trio(m.detail.heap_used_bytes_per_watcher), ratioText(m.heap_used_bytes_per_watcher, m.baseline_heap_used_bytes_per_stream), ""]);
  }
  const k = summary.catchup;
  if (k) {
    const key = Object.keys(k).find((x) => /^events.*_ms$/.test(x));
    rows.push([`catch-up ${k.events} events ms`, trio(k.detail[`baseline_${key}`]), trio(k.detail[key]), ratioText(k[key], k[`baseline_${key}`]), met("catch-up 10k events")]);
    rows.push([`  limited by`, k.baseline_limited_by, k.limited_by, "", ""]);
  }
  return rows;
}

function printTable(rows) {
  const header = ["figure", "baseline min / median / max", "service min / median / max", "ratio", "target"];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join(" | ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of rows) console.log(line(r));
}

// ---------------------------------------------------------------------------

async function main() {
  const deadline = setTimeout(() => {
    log(`deadline of ${CFG.deadlineMs / 1000} s reached: stopping`);
    redis?.stop().finally(() => process.exit(3));
  }, CFG.deadlineMs);
  deadline.unref();
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => redis?.stop().finally(() => process.exit(130)));

  const idleA = machineBusySeconds();
  await sleep(1_000);
  const busyBefore = machineBusySeconds() - idleA;
  log(`machine busy before start: ${busyBefore.toFixed(2)} of ${os.availableParallelism()} cores (load average ${os.loadavg()[0].toFixed(2)})`);
  redis = await startRedis();
  redisAdmin = new Redis(redis.url);
  const redisVersion = (await redisAdmin.info("server")).match(/redis_version:(\S+)/)?.[1];
  log(`redis-server ${redisVersion} on port ${redis.port}; ${RUNS} run(s) per figure${SMOKE ? " (smoke)" : ""}`);
  if (CANDIDATE) log(`service under test: ${path.resolve(CANDIDATE)} (BENCH_SERVICE_DIST)`);

  const summary = {
    machine: {
      cores: os.availableParallelism(),
      cpu_model: os.cpus()[0]?.model,
      node: process.version,
      grpc_js: (await import("@grpc/grpc-js/package.json", { with: { type: "json" } })).default.version,
      redis: redisVersion,
      platform: `${os.platform()} ${os.release()}`,
      busy_cores_before_start: round(busyBefore),
      load_average_1m_at_start: round(os.loadavg()[0]),
    },
    source: sourceState(),
    service_dist: CANDIDATE ? path.resolve(CANDIDATE) : path.resolve(here, "..", "dist"),
    smoke: SMOKE,
    runs: RUNS,
    settings: {
      ...CFG,
      cadenceMs: CADENCE_MS,
      watchChannels: WATCH_CHANNELS,
      watcherProcesses: WATCHER_PROCESSES,
      watcherFlowControlWindow: Number(process.env.BENCH_FLOW_WINDOW ?? 16 * 1024 * 1024),
    },
  };
  try {
    if (SECTIONS.has("commands")) summary.commands = await unarySection("commands", (client, tag) => commandWorker(client, tag));
    if (SECTIONS.has("reads")) {
      summary.reads = await unarySection(
        "reads",
        (client, _tag, ids) => readWorker(client, ids),
        (realClient) => createDeliveries(realClient, CFG.readIds),
      );
    }
    if (SECTIONS.has("fanout")) summary.fanout = await fanoutSection();
    if (SECTIONS.has("memory")) summary.memory = await memorySection();
    if (SECTIONS.has("catchup")) summary.catchup = await catchUpSection();
  } finally {
    redisAdmin.disconnect();
    await redis.stop();
  }
  summary.targets = SMOKE ? [] : evaluateTargets(summary);
  summary.elapsed_s = round((Date.now() - startedAt) / 1000);

  console.log(`\nDeliveryService vs bare grpc-js — ${summary.machine.cores} cores, Node ${summary.machine.node}, grpc-js ${summary.machine.grpc_js}, ${RUNS} run(s), ${summary.elapsed_s} s${SMOKE ? " (smoke: no targets)" : ""}\n`);
  printTable(tableRows(summary, summary.targets));
  if (!SMOKE) {
    const met = summary.targets.filter((t) => t.met).length;
    console.log(`\ntargets met: ${met}/${summary.targets.length}${summary.targets.some((t) => !t.met) ? `; missed: ${summary.targets.filter((t) => !t.met).map((t) => t.name).join(", ")}` : ""}`);
  }
  const out = path.resolve(flags.out);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(out);
  clearTimeout(deadline);
  process.exit(0);
}

main().catch(async (error) => {
  console.error(error);
  await redis?.stop().catch(() => {});
  process.exit(1);
});
