/**
 * `npm run bench`: the service against a bare grpc-js baseline, same run, same
 * client code (the generated DeliveryServiceClient), on loopback; NATS
 * (JetStream KV watches, core NATS) as a peer in the fanout and memory sections.
 *
 *   node bench/run.mjs [--smoke] [--runs N] [--only commands,reads,fanout,memory,catchup,storage,list,firehose,cluster,scale]
 *                      [--levels 1,16,64] [--watchers 100,1000,5000] [--cpu-prof] [--out file]
 *                      [--nats kv,file,core|none] [--cluster]
 *
 * --cluster adds the cluster section (the service on a 3-primary Redis Cluster against a
 * single redis-server); without it the section runs only in a run that is not a smoke, and
 * only when the redis-server on PATH can run a cluster for the service (Redis >= 7).
 *
 * --cpu-prof writes a V8 CPU profile of the server child per measured window to
 * bench/results/profiles/ (summarise with bench/profileTop.mjs). BENCH_SERVICE_DIST=dir
 * measures another build of the service (a patched copy of dist/ under bench/results/).
 * BENCH_DEADLINE_MS overrides the hard deadline (default 900 s, 90 s with --smoke).
 * --nats picks the NATS peers: kv (KV, memory storage), file (KV, file storage), core (core
 * NATS subjects); default all three, kv alone with --smoke.
 *
 * Starts its own redis-server (free port, no persistence), its own nats-server per
 * NATS trial, and one server per child process (fork + IPC: cpuUsage/memoryUsage are
 * read inside the server process before and after each run). Prints a table; writes
 * a JSON summary (default bench/results/latest.json) and prints its path last.
 * Bounded: a hard deadline stops everything. Figures count only on Node 24.
 *
 * This file is the entry: flags, the context, the sections in order, targets,
 * table, JSON. A section is a file in bench/sections/ exporting
 *   { name, run(ctx) -> its piece of the summary, targets?(piece) -> [target],
 *     rows?(piece, targets) -> [table row] }
 * and is added to SECTIONS below (see bench/lib/context.mjs for ctx).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { createContext } from "./lib/context.mjs";
import { machineBusySeconds } from "./lib/measure.mjs";
import { NATS_KV_HISTORY } from "./lib/natsPeer.mjs";
import { printTable } from "./lib/report.mjs";
import { round } from "./lib/stats.mjs";
import catchup from "./sections/catchup.mjs";
import cluster from "./sections/cluster.mjs";
import { clusterSupport } from "./lib/redisCluster.mjs";
import commands from "./sections/commands.mjs";
import fanout from "./sections/fanout.mjs";
import firehose from "./sections/firehose.mjs";
import memory from "./sections/memory.mjs";
import list from "./sections/list.mjs";
import reads from "./sections/reads.mjs";
import scale from "./sections/scale.mjs";
import storage from "./sections/storage.mjs";

/** In the order they run and print. */
const SECTIONS = [commands, reads, fanout, memory, catchup, storage, list, firehose, cluster, scale];

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
    nats: { type: "string" },
    cluster: { type: "boolean", default: false },
  },
});

const SMOKE = flags.smoke;
const RUNS = flags.runs ? Math.max(1, Number(flags.runs)) : SMOKE ? 1 : 3;
const ONLY = new Set((flags.only ?? SECTIONS.map((s) => s.name).join(",")).split(","));
// The cluster section: added by --cluster; otherwise only in a run that is not a smoke, and only
// when the redis-server on PATH can run a cluster for the service (Redis >= 7).
const CLUSTER_SUPPORT = clusterSupport();
if (flags.cluster) ONLY.add("cluster");
else if (ONLY.has("cluster") && (SMOKE || !CLUSTER_SUPPORT.ok)) ONLY.delete("cluster");
const CFG = SMOKE
  ? { warmupMs: 100, durationMs: 250, levels: [1, 16, 64], readIds: 64, watchers: [20], cadenceCommands: 5, closedLoopMs: 300, idleMs: 200, catchUpEvents: 200, scaleWatchers: 400, scaleProcesses: 4, scaleChannels: 8, deadlineMs: 90_000 }
  : { warmupMs: 300, durationMs: 1_500, levels: [1, 16, 64], readIds: 256, watchers: [100, 1_000, 5_000], cadenceCommands: 20, closedLoopMs: 1_500, idleMs: 700, catchUpEvents: 10_000, scaleWatchers: 20_000, scaleProcesses: 4, scaleChannels: 8, deadlineMs: 900_000 };
if (process.env.BENCH_DEADLINE_MS) CFG.deadlineMs = Number(process.env.BENCH_DEADLINE_MS);
if (flags.watchers) CFG.watchers = flags.watchers.split(",").map(Number);
if (flags.levels) CFG.levels = flags.levels.split(",").map(Number);
const NATS_NAMES = { kv: "nats", file: "nats_file", core: "nats_core", nats: "nats", nats_file: "nats_file", nats_core: "nats_core" };
// The smoke runs the KV peer (memory storage) only, to stay short; --nats chooses.
const NATS_PEERS = flags.nats === "none" ? [] : [...new Set((flags.nats ?? (SMOKE ? "kv" : "kv,file,core")).split(",").map((n) => NATS_NAMES[n.trim()]).filter(Boolean))];
const SETTINGS = { cadenceMs: 100, watchChannels: 4, watcherProcesses: Number(process.env.BENCH_WATCHER_PROCESSES ?? 2) };
const CANDIDATE = process.env.BENCH_SERVICE_DIST;

const startedAt = Date.now();
const log = (line) => process.stderr.write(`[${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
const debug = (line) => process.env.BENCH_DEBUG && log(`  debug: ${line}`);

/** Benchmarks count only on Node 24; elsewhere the run still works (CI's smoke), loudly flagged. */
const COUNTS = process.versions.node.split(".")[0] === "24";
function nodeBanner() {
  const text = `!!  figures do not count: Node ${process.version}; benchmarks count only on Node 24  !!`;
  return ["!".repeat(text.length), text, "!".repeat(text.length)].join("\n");
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

async function main() {
  if (!COUNTS) process.stderr.write(`${nodeBanner()}\n`);
  if (flags.nats) for (const name of flags.nats.split(",")) if (name !== "none" && !NATS_NAMES[name.trim()]) log(`--nats: no peer named "${name}" (kv, file, core, none)`);
  for (const name of ONLY) if (!SECTIONS.some((s) => s.name === name)) log(`--only: no section named "${name}" (sections: ${SECTIONS.map((s) => s.name).join(", ")})`);
  if (!ONLY.has("cluster") && (!flags.only || flags.only.split(",").includes("cluster"))) {
    log(`cluster section left out: ${SMOKE ? "a smoke runs it only with --cluster" : CLUSTER_SUPPORT.reason}`);
  }
  // Until the context exists, only Redis needs stopping; every child process (server and
  // watcher children, nats-server, redis-server) is also killed by an exit handler of its own.
  let redisForExit;
  let closeContext = async () => redisForExit?.stopNow();
  const stopAndExit = (code) => closeContext().catch(() => {}).finally(() => process.exit(code));
  const deadline = setTimeout(() => {
    log(`deadline of ${CFG.deadlineMs / 1000} s reached: stopping`);
    stopAndExit(3);
  }, CFG.deadlineMs);
  deadline.unref();
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.once(signal, () => stopAndExit(130));

  const idleA = machineBusySeconds();
  await sleep(1_000);
  const busyBefore = machineBusySeconds() - idleA;
  log(`machine busy before start: ${busyBefore.toFixed(2)} of ${os.availableParallelism()} cores (load average ${os.loadavg()[0].toFixed(2)})`);
  const { ctx, close } = await createContext({
    cfg: CFG,
    runs: RUNS,
    smoke: SMOKE,
    settings: SETTINGS,
    log,
    debug,
    profileDir: flags["cpu-prof"] ? path.join(here, "results", "profiles") : undefined,
    natsPeers: NATS_PEERS,
    onRedis: (redis) => (redisForExit = redis),
  });
  closeContext = close;
  log(`redis-server ${ctx.redis.version} on port ${ctx.redis.port}; ${RUNS} run(s) per figure${SMOKE ? " (smoke)" : ""}`);
  log(`NATS peers: ${ctx.nats.status === "ok" ? `${ctx.nats.peers.join(", ")} (nats-server ${ctx.nats.version})` : ctx.nats.status}`);
  if (CANDIDATE) log(`service under test: ${path.resolve(CANDIDATE)} (BENCH_SERVICE_DIST)`);

  const summary = {
    machine: {
      cores: os.availableParallelism(),
      cpu_model: os.cpus()[0]?.model,
      node: process.version,
      counts: COUNTS,
      grpc_js: (await import("@grpc/grpc-js/package.json", { with: { type: "json" } })).default.version,
      redis: ctx.redis.version,
      nats_server: ctx.nats.version ?? null,
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
      cadenceMs: SETTINGS.cadenceMs,
      watchChannels: SETTINGS.watchChannels,
      watcherProcesses: SETTINGS.watcherProcesses,
      watcherFlowControlWindow: Number(process.env.BENCH_FLOW_WINDOW ?? 16 * 1024 * 1024),
      natsPeers: ctx.nats.peers,
      natsKvHistory: NATS_KV_HISTORY,
    },
  };
  const selected = SECTIONS.filter((s) => ONLY.has(s.name));
  try {
    for (const section of selected) summary[section.name] = await section.run(ctx);
  } finally {
    await close();
  }
  summary.targets = SMOKE ? [] : selected.flatMap((s) => s.targets?.(summary[s.name]) ?? []).filter(Boolean);
  summary.elapsed_s = round((Date.now() - startedAt) / 1000);

  console.log(`\nDeliveryService vs bare grpc-js — ${summary.machine.cores} cores, Node ${summary.machine.node}, grpc-js ${summary.machine.grpc_js}, ${RUNS} run(s), ${summary.elapsed_s} s${SMOKE ? " (smoke: no targets)" : ""}\n`);
  printTable(selected.flatMap((s) => s.rows?.(summary[s.name], summary.targets) ?? []));
  if (!SMOKE) {
    const met = summary.targets.filter((t) => t.met).length;
    console.log(`\ntargets met: ${met}/${summary.targets.length}${summary.targets.some((t) => !t.met) ? `; missed: ${summary.targets.filter((t) => !t.met).map((t) => t.name).join(", ")}` : ""}`);
  }
  if (!COUNTS) console.log(`\n${nodeBanner()}\n`);
  const out = path.resolve(flags.out);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
  console.log(out);
  clearTimeout(deadline);
  process.exit(0);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
