/**
 * A fresh redis-server of its own (empty, nothing else writing to it) and one
 * service child on it, for the sections that measure what is stored (storage)
 * or must see only their own deliveries (list). Both are killed at exit like
 * the others (bench/lib/redisServer.mjs, bench/lib/child.mjs).
 *
 *   const svc = await startPrivateService(ctx);
 *   svc.redis.url, svc.redis.admin (ioredis), await svc.redis.memory(), await svc.redis.cpuSeconds()
 *   svc.server (the child), svc.client (the generated gRPC client)
 *   await svc.stopServer(); await svc.stop();
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { clientFor } from "./grpcClient.mjs";
import { startRedis } from "./redisServer.mjs";
import { createServerProcesses } from "./serverProcesses.mjs";

const infoField = (info, name) => Number(info.match(new RegExp(`^${name}:(\\d+)`, "m"))?.[1] ?? Number.NaN);

/**
 * Redis memory once it has settled: MEMORY PURGE, then INFO memory until
 * used_memory reads the same twice 100 ms apart (an incremental rehash of the
 * keyspace finishes in the background), at most ~1 s. `stored` leaves out the
 * clients' buffers (mem_clients_normal), which depend on what the connections
 * last sent, not on what is stored.
 */
export async function settledMemory(admin) {
  let last;
  for (let i = 0; i < 10; i++) {
    await admin.call("MEMORY", "PURGE");
    const info = await admin.info("memory");
    const now = { used: infoField(info, "used_memory"), clients: infoField(info, "mem_clients_normal"), dbsize: await admin.dbsize() };
    now.stored = now.used - now.clients;
    if (last && last.used === now.used) return now;
    last = now;
    await sleep(100);
  }
  return last;
}

export async function startPrivateService(ctx) {
  const server = await startRedis();
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  let child;
  let client;
  try {
    child = await createServerProcesses({ redisUrl: server.url, log: ctx.log }).startServer("real");
    client = clientFor(child.port);
  } catch (error) {
    admin.disconnect();
    await server.stop();
    throw error;
  }
  let serverStopped = false;
  const stopServer = async () => {
    if (serverStopped) return;
    serverStopped = true;
    client.close();
    await child.stop();
  };
  return {
    redis: {
      url: server.url,
      port: server.port,
      admin,
      memory: () => settledMemory(admin),
      /** used_cpu_user + used_cpu_sys so far (INFO cpu). */
      async cpuSeconds() {
        const info = await admin.info("cpu");
        const field = (name) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, "m"))?.[1] ?? 0);
        return field("used_cpu_user") + field("used_cpu_sys");
      },
    },
    server: child,
    client,
    stopServer,
    async stop() {
      await stopServer();
      admin.disconnect();
      await server.stop();
    },
  };
}
