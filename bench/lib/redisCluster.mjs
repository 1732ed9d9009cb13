/**
 * A private Redis Cluster for the cluster section: `primaries` primaries and
 * `replicasPerPrimary` replicas each (3 + 3 by default), one redis-server
 * process per node (bench/lib/redisServer.mjs: loopback, free ports, no
 * persistence, a temporary --dir, SIGKILLed when this process exits). Plain
 * JavaScript port of test/support/redisCluster.ts, start-up only (no
 * failover, restart or migration):
 *
 *   ADDSLOTSRANGE on each primary (slots split as redis-cli does) and a
 *   distinct SET-CONFIG-EPOCH on every node while each is still alone, MEET
 *   between all pairs, once every node knows every other REPLICATE on each
 *   replica (replica j of primary i is node primaries + i*replicasPerPrimary + j),
 *   then poll until healthy: cluster_state:ok and 16384 slots ok on every node,
 *   every node known to every other (connected, no fail/handshake flags), every
 *   replica's master_link_status:up, the same slot map everywhere (the test
 *   helper also waits for every view to agree on the replicas' roles, which
 *   gossip spreads seconds later with a long node timeout; no command here
 *   depends on it).
 *
 * The cluster bus of each node is on a second free port (`cluster-port`,
 * Redis 7). cluster-node-timeout is 15 s by default: on two loaded cores a
 * node can be slow to answer the bus for a while, and no failover must happen
 * in a benchmark.
 *
 *   const cluster = await startRedisCluster();
 *   cluster.seeds                 "127.0.0.1:p1,127.0.0.1:p2,..." for REDIS_CLUSTER_NODES
 *   cluster.primaries()           [{port, id, slots: [[from, to]], pid}]
 *   await cluster.nodeCpuSeconds() {port: used_cpu_sys + used_cpu_user} of every node
 *   await cluster.cpuSeconds()    their sum
 *   await cluster.stop()
 */
import { execFileSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { freePort, startRedis } from "./redisServer.mjs";

const HOST = "127.0.0.1";
const SLOTS = 16384;

/** Whether the redis-server on PATH can run the service on a cluster (Redis >= 7: cluster-port, sharded Pub/Sub). */
export function clusterSupport() {
  try {
    const out = execFileSync("redis-server", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
    const version = out.match(/v=(\d+)\.(\d+)\.(\d+)/);
    if (!version) return { ok: false, reason: `cannot read the version of redis-server (${out.trim()})` };
    const major = Number(version[1]);
    if (major < 7) return { ok: false, version: version[0].slice(2), reason: `redis-server ${version[0].slice(2)}: the cluster section needs Redis 7 (sharded Pub/Sub, cluster-port)` };
    return { ok: true, version: version[0].slice(2) };
  } catch (error) {
    return { ok: false, reason: `no redis-server on PATH (${error?.code ?? error?.message ?? error})` };
  }
}

/** 0..16383 in `n` contiguous ranges, as redis-cli splits them. */
function splitSlots(n) {
  const per = SLOTS / n;
  const out = [];
  let first = 0;
  let cursor = 0;
  for (let i = 0; i < n; i++) {
    let last = Math.round(cursor + per - 1);
    if (last > SLOTS - 1 || i === n - 1) last = SLOTS - 1;
    out.push([first, last]);
    first = last + 1;
    cursor += per;
  }
  return out;
}

/** One line of CLUSTER NODES per node: id, port, flags, primary id, link state, slot ranges. */
function parseClusterNodes(text) {
  const out = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(" ");
    if (f.length < 8) continue;
    const [id, addr, flags, master, , , , link, ...slotTokens] = f;
    const m = /:(\d+)@(\d+)/.exec(addr);
    const slots = [];
    let migrating = false;
    for (const tok of slotTokens) {
      if (tok.startsWith("[")) migrating = true;
      else if (/^\d+-\d+$/.test(tok)) slots.push(tok.split("-").map(Number));
      else if (/^\d+$/.test(tok)) slots.push([Number(tok), Number(tok)]);
    }
    out.push({ id, port: m ? Number(m[1]) : 0, flags: new Set(flags.split(",")), primaryId: master === "-" ? undefined : master, link, slots, migrating });
  }
  return out;
}

const parseInfo = (text) => Object.fromEntries(text.split("\r\n").filter((l) => l && !l.startsWith("#")).map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1)]));

async function pollUntil(check, what, timeoutMs, intervalMs = 50) {
  const deadline = Date.now() + timeoutMs;
  let reason = "";
  for (;;) {
    try {
      const r = await check();
      if (r === undefined) return;
      reason = r;
    } catch (error) {
      reason = String(error?.message ?? error);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${reason}`);
    await sleep(intervalMs);
  }
}

export async function startRedisCluster({ primaries = 3, replicasPerPrimary = 1, nodeTimeoutMs = 15_000, startTimeoutMs = 30_000 } = {}) {
  const total = primaries * (1 + replicasPerPrimary);
  const nodes = [];
  const stopAll = async () => {
    for (const n of nodes) n.admin?.disconnect();
    await Promise.all(nodes.map((n) => n.server.stop()));
  };
  try {
    // 1. The processes, in parallel, each on two distinct free ports (client, bus).
    const taken = new Set();
    const pick = async () => {
      for (;;) {
        const p = await freePort();
        if (p !== 6379 && !taken.has(p)) {
          taken.add(p);
          return p;
        }
      }
    };
    const ports = [];
    for (let i = 0; i < total; i++) ports.push([await pick(), await pick()]);
    const started = await Promise.allSettled(
      ports.map(([port, busPort], index) =>
        startRedis({
          port,
          dirPrefix: `bench-redis-cluster-${index}-`,
          args: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", String(nodeTimeoutMs), "--cluster-port", String(busPort), "--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0"],
        }).then((server) => ({ index, port, busPort, server, role: index < primaries ? "primary" : "replica", id: "", slots: [], primaryId: undefined })),
      ),
    );
    for (const s of started) if (s.status === "fulfilled") nodes.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw failed.reason;
    for (const n of nodes) {
      n.admin = new Redis({ host: HOST, port: n.port, maxRetriesPerRequest: 1 });
      n.admin.on("error", () => {});
    }
    const cmd = (n, ...args) => n.admin.call(...args);
    const deadline = Date.now() + startTimeoutMs;
    const remaining = () => Math.max(1_000, deadline - Date.now());

    // 2. While every node is alone: ids, distinct config epochs, the primaries' slots.
    const ranges = splitSlots(primaries);
    await Promise.all(
      nodes.map(async (n) => {
        n.id = String(await cmd(n, "CLUSTER", "MYID"));
        await cmd(n, "CLUSTER", "SET-CONFIG-EPOCH", n.index + 1);
        if (n.index < primaries) {
          await cmd(n, "CLUSTER", "ADDSLOTSRANGE", ranges[n.index][0], ranges[n.index][1]);
          n.slots = [ranges[n.index]];
        }
      }),
    );

    // 3. MEET between all pairs, then wait until every node knows every other.
    await Promise.all(nodes.flatMap((a) => nodes.filter((b) => b.index < a.index).map((b) => cmd(a, "CLUSTER", "MEET", HOST, b.port, b.busPort))));
    const ids = new Set(nodes.map((n) => n.id));
    await pollUntil(
      async () => {
        for (const n of nodes) {
          const known = parseClusterNodes(String(await cmd(n, "CLUSTER", "NODES"))).filter((e) => ids.has(e.id) && !e.flags.has("handshake") && !e.flags.has("noaddr"));
          if (known.length !== total) return `node ${n.port} knows ${known.length}/${total} nodes`;
        }
        return undefined;
      },
      "every cluster node to know every other",
      remaining(),
    );

    // 4. Replicas: replica j of primary i is node primaries + i*replicasPerPrimary + j.
    await Promise.all(
      nodes.slice(primaries).map(async (n) => {
        const primary = nodes[Math.floor((n.index - primaries) / replicasPerPrimary)];
        await cmd(n, "CLUSTER", "REPLICATE", primary.id);
        n.primaryId = primary.id;
      }),
    );

    // 5. Healthy: state ok everywhere, slots covered, replicas linked, every view the same.
    await pollUntil(
      async () => {
        let signature;
        for (const n of nodes) {
          const [entriesText, infoText, replText] = await Promise.all([cmd(n, "CLUSTER", "NODES"), cmd(n, "CLUSTER", "INFO"), cmd(n, "INFO", "replication")]);
          const entries = parseClusterNodes(String(entriesText));
          const info = parseInfo(String(infoText));
          const who = `node ${n.port}`;
          if (info.cluster_state !== "ok") return `${who}: cluster_state:${info.cluster_state}`;
          if (info.cluster_slots_ok !== String(SLOTS)) return `${who}: cluster_slots_ok:${info.cluster_slots_ok}`;
          for (const e of entries) {
            if (!ids.has(e.id)) return `${who} knows a stranger ${e.id}`;
            for (const bad of ["fail", "fail?", "handshake", "noaddr"]) if (e.flags.has(bad)) return `${who} sees ${e.port} as ${[...e.flags].join(",")}`;
            if (!e.flags.has("myself") && e.link !== "connected") return `${who}: link to ${e.port} ${e.link}`;
            if (e.migrating) return `${who}: a slot migrating on ${e.port}`;
          }
          if (entries.length !== total) return `${who} knows ${entries.length}/${total} nodes`;
          if (n.index >= primaries && parseInfo(String(replText)).master_link_status !== "up") return `${who}: master_link_status:${parseInfo(String(replText)).master_link_status}`;
          // The slot map (what the service's client routes by); a replica's role may reach the other
          // nodes' views seconds later by gossip, which matters to no command of the benchmark.
          const sig = entries
            .filter((e) => e.flags.has("master") && e.slots.length)
            .map((e) => `${e.id}=${e.slots.map((r) => r.join("-")).join(",")}`)
            .sort()
            .join(";");
          if (signature === undefined) signature = sig;
          else if (sig !== signature) return `the nodes disagree on the slot map (${who})`;
        }
        return undefined;
      },
      "the new cluster to become healthy",
      remaining(),
    );
  } catch (error) {
    await stopAll().catch(() => {});
    throw new Error(`startRedisCluster: ${error?.message ?? error}`, { cause: error });
  }

  const view = (n) => ({ port: n.port, id: n.id, role: n.role, pid: n.server.pid, slots: n.slots, primaryPort: n.primaryId ? nodes.find((x) => x.id === n.primaryId)?.port : undefined });
  async function nodeCpuSeconds() {
    const infos = await Promise.all(nodes.map((n) => n.admin.info("cpu")));
    return Object.fromEntries(
      nodes.map((n, i) => {
        const info = parseInfo(infos[i]);
        return [n.port, Number(info.used_cpu_sys ?? 0) + Number(info.used_cpu_user ?? 0)];
      }),
    );
  }
  let stopped;
  return {
    seeds: nodes.map((n) => `${HOST}:${n.port}`).join(","),
    ports: nodes.map((n) => n.port),
    nodes: nodes.map(view),
    primaries: () => nodes.filter((n) => n.role === "primary").map(view),
    replicas: () => nodes.filter((n) => n.role === "replica").map(view),
    nodeCpuSeconds,
    async cpuSeconds() {
      return Object.values(await nodeCpuSeconds()).reduce((a, b) => a + b, 0);
    },
    /** Keys on each node (DBSIZE), by port. */
    async dbsizes() {
      const sizes = await Promise.all(nodes.map((n) => n.admin.dbsize()));
      return Object.fromEntries(nodes.map((n, i) => [n.port, sizes[i]]));
    },
    stop: () => (stopped ??= (async () => {
      for (const n of nodes) n.admin.disconnect();
      await Promise.all(nodes.map((n) => n.server.stop()));
    })()),
  };
}
