/**
 * One server per process, so its CPU and memory can be read alone:
 *   node [--expose-gc] bench/serverChild.mjs real <redisUrl> [partitions]      (BENCH_SERVICE_DIST: another build than ../dist)
 *   node [--expose-gc] bench/serverChild.mjs cluster <host:port,...> [partitions]   (the service on a Redis Cluster: REDIS_CLUSTER_NODES)
 *   node [--expose-gc] bench/serverChild.mjs bare|bare-sized   (empty or real-sized unary responses)
 * BENCH_MAX_WATCHERS in the environment sets the service's MAX_WATCHERS, its limit of open watches
 * (read by its own parser; default the service's, 10,000; a MAX_WATCHERS of the shell is not read).
 * The bare server has no limit.
 * Sends {type:"ready", port} over IPC, then answers {id, op} requests:
 *   usage {gc}      -> {cpu: process.cpuUsage(), elu: event loop utilisation so far, mem: process.memoryUsage(),
 *                       watchers (WatchDelivery), feedWatchers (WatchDeliveries)}
 *   prepareCatchUp  -> bare only: pre-encode n updates for a catch-up watch
 *   profileStart {intervalUs} / profileStop {file}
 *                   -> V8 CPU profile of a window (node:inspector), written as a .cpuprofile
 *   heapSnapshot {file} -> writes a V8 heap snapshot (after a gc)
 *   stop            -> stops the server, replies, exits
 * Exits by itself when the parent goes away.
 */
import { writeFileSync } from "node:fs";
import v8 from "node:v8";
import { Session } from "node:inspector/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mode, redisUrl, partitions] = process.argv.slice(2);
let inspector;

async function start() {
  if (mode === "bare" || mode === "bare-sized") {
    const { startBareServer } = await import("./bareServer.mjs");
    const bare = await startBareServer({ responses: mode === "bare-sized" ? "sized" : "empty" });
    return { port: bare.port, watchers: () => bare.watcherCount, feedWatchers: () => 0, stop: () => bare.stop(), prepareCatchUp: (n) => bare.prepareCatchUp(n) };
  }
  // BENCH_SERVICE_DIST: measure another build of the service (e.g. a patched copy of dist/ placed
  // under bench/results/ so that it still resolves node_modules); default ../dist.
  const dist = process.env.BENCH_SERVICE_DIST ? pathToFileURL(`${path.resolve(process.env.BENCH_SERVICE_DIST)}/`) : new URL("../dist/", import.meta.url);
  const { startServer } = await import(new URL("server.js", dist).href);
  const { configWith, loadConfig } = await import(new URL("config.js", dist).href);
  const { silentLogger } = await import(new URL("logger.js", dist).href);
  const overrides = { host: "127.0.0.1", port: 0, logLevel: "silent", shutdownGraceMs: 1_000, ...(partitions ? { storePartitions: Number(partitions) } : {}) };
  if (process.env.BENCH_MAX_WATCHERS) overrides.maxWatchers = loadConfig({ MAX_WATCHERS: process.env.BENCH_MAX_WATCHERS }).maxWatchers;
  if (mode === "cluster") {
    // What REDIS_CLUSTER_NODES=<nodes> gives the service, read by its own parser.
    const { parseRedisTarget } = await import(new URL("store/redis/redisTarget.js", dist).href);
    overrides.redis = parseRedisTarget({ REDIS_CLUSTER_NODES: redisUrl });
  } else overrides.redisUrl = redisUrl;
  const server = await startServer({ config: configWith(overrides), logger: silentLogger });
  return { port: server.port, watchers: () => server.hub.watcherCount, feedWatchers: () => server.feed.watcherCount, stop: () => server.stop(), prepareCatchUp: () => {} };
}

function gcNow() {
  if (typeof globalThis.gc !== "function") return false;
  globalThis.gc();
  globalThis.gc();
  return true;
}

const server = await start();
process.on("disconnect", () => process.exit(0));
process.on("message", async (message) => {
  const reply = (body) => process.connected && process.send({ id: message.id, ...body });
  try {
    switch (message.op) {
      case "usage": {
        const gced = message.gc ? gcNow() : false;
        const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((x) => [x.space_name, { size: x.space_size, used: x.space_used_size, physical: x.physical_space_size }]));
        reply({ cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), mem: process.memoryUsage(), spaces, watchers: server.watchers(), feedWatchers: server.feedWatchers(), gced });
        break;
      }
      case "profileStart":
        if (!inspector) {
          inspector = new Session();
          inspector.connect();
          await inspector.post("Profiler.enable");
        }
        await inspector.post("Profiler.setSamplingInterval", { interval: message.intervalUs ?? 250 });
        await inspector.post("Profiler.start");
        reply({});
        break;
      case "profileStop": {
        const { profile } = await inspector.post("Profiler.stop");
        writeFileSync(message.file, JSON.stringify(profile));
        reply({ file: message.file });
        break;
      }
      case "heapSnapshot":
        gcNow();
        reply({ file: v8.writeHeapSnapshot(message.file) });
        break;
      case "prepareCatchUp":
        server.prepareCatchUp(message.n);
        reply({});
        break;
      case "stop":
        await Promise.race([server.stop(), new Promise((resolve) => setTimeout(resolve, 3_000))]);
        // Exit only once the reply is out (and, under --cpu-prof, the profile is written at exit).
        process.send({ id: message.id }, () => process.exit(0));
        break;
      default:
        reply({ error: `unknown op ${message.op}` });
    }
  } catch (error) {
    reply({ error: String(error?.stack ?? error) });
  }
});
process.send({ type: "ready", port: server.port, pid: process.pid });
