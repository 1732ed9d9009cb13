/**
 * Server children (bench/serverChild.mjs: the service, or the bare baseline),
 * one per process, and V8 CPU profiles of their measured windows.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startChild } from "./child.mjs";

const SERVER_CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "serverChild.mjs");

/**
 * `redisUrl` for the service, or `clusterNodes` ("host:port,...": the service
 * on a Redis Cluster, as REDIS_CLUSTER_NODES); `partitions` sets its
 * STORE_PARTITIONS (default the service's); `profileDir` set (--cpu-prof)
 * turns profileWindow on. A server handle is the child's (request, stop,
 * port, pid) plus usage(body). startServer's `env` goes to the child's environment
 * (BENCH_MAX_WATCHERS: the service's MAX_WATCHERS, read by bench/serverChild.mjs).
 */
export function createServerProcesses({ redisUrl, clusterNodes, partitions, profileDir, log }) {
  const realArgs = [...(clusterNodes ? ["cluster", clusterNodes] : ["real", redisUrl]), ...(partitions ? [String(partitions)] : [])];
  async function startServer(kind, execArgv = [], env = undefined) {
    const args = kind === "real" ? realArgs : kind === "sized" ? ["bare-sized"] : ["bare"];
    const child = await startChild(SERVER_CHILD, args, { execArgv: ["--expose-gc", ...execArgv], env, name: `${kind} server` });
    return Object.assign(child, { kind, usage: (body) => child.request("usage", body) });
  }

  /**
   * With --cpu-prof: a V8 CPU profile of the server child over exactly the
   * measured window (started and stopped over IPC), one file per window.
   * Returns the stop function (a no-op without --cpu-prof, or for a server
   * that is not a Node child).
   */
  async function profileWindow(server, name) {
    if (!profileDir || !name || typeof server.request !== "function") return async () => {};
    mkdirSync(profileDir, { recursive: true });
    await server.request("profileStart", { intervalUs: 250 });
    return async () => {
      const { file } = await server.request("profileStop", { file: path.join(profileDir, `${name}.cpuprofile`) });
      log(`  profile: ${path.relative(process.cwd(), file)}`);
    };
  }

  return { startServer, profileWindow };
}
