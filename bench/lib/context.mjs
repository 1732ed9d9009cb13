/**
 * The context every section runs with, instead of module globals: the sizes
 * and durations (`cfg`), runs per figure, the logger, the private Redis
 * (handle, admin connection, its CPU and command counts), the NATS peer's
 * settings, the process helpers (server children, the watcher pool, CPU
 * profiles) and the measurement helpers.
 *
 *   ctx.cfg, ctx.runs, ctx.smoke, ctx.settings {cadenceMs, watchChannels, watcherProcesses}
 *   ctx.log(line), ctx.debug(line)
 *   ctx.redis {url, port, admin, version, cpuSeconds(), calls(command)}
 *   ctx.nats {version, status, peers, history, start()}
 *   ctx.servers {startServer(kind, execArgv), profileWindow(server, name)}
 *   ctx.startWatcherPool({processes, channels}?)   (default settings.watcherProcesses, settings.watchChannels)
 *   ctx.measure {snapshot(server, watchers), utilisation, limitedBy, medianUtil}
 */
import { Redis } from "ioredis";
import { createMeasure } from "./measure.mjs";
import { natsContext } from "./natsPeer.mjs";
import { startRedis } from "./redisServer.mjs";
import { createServerProcesses } from "./serverProcesses.mjs";
import { startWatcherPool } from "./watcherPool.mjs";

/** A private redis-server and an admin connection to it. */
async function startRedisHandle() {
  const server = await startRedis();
  const admin = new Redis(server.url);
  const version = (await admin.info("server")).match(/redis_version:(\S+)/)?.[1];
  return {
    url: server.url,
    port: server.port,
    pid: server.pid,
    admin,
    version,
    async cpuSeconds() {
      const info = await admin.info("cpu");
      const field = (name) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
      return field("used_cpu_user") + field("used_cpu_sys");
    },
    /** Calls of one Redis command so far (INFO commandstats). */
    async calls(command) {
      const info = await admin.info("commandstats");
      return Number(info.match(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, "m"))?.[1] ?? 0);
    },
    async stop() {
      admin.disconnect();
      await server.stop();
    },
    /** For the deadline and signals: no waiting for replies. */
    stopNow: () => server.stop(),
  };
}

/**
 * `options`: {cfg, runs, smoke, settings, log, debug, profileDir, natsPeers}.
 * Returns the context and its close() (stops Redis; idempotent).
 */
export async function createContext({ cfg, runs, smoke, settings, log, debug, profileDir, natsPeers, onRedis }) {
  const redis = await startRedisHandle();
  onRedis?.(redis);
  const servers = createServerProcesses({ redisUrl: redis.url, profileDir, log });
  const ctx = {
    cfg,
    runs,
    smoke,
    settings,
    log,
    debug,
    redis,
    nats: natsContext(natsPeers),
    servers,
    startWatcherPool: (options = {}) => startWatcherPool({ processes: settings.watcherProcesses, channels: settings.watchChannels, ...options }),
    measure: createMeasure({ redis }),
  };
  let closed;
  const close = () => (closed ??= redis.stop());
  return { ctx, close };
}
