/**
 * A local Redis Cluster for tests, from `redis-server` processes (no Docker).
 *
 *   const cluster = await startRedisCluster();            // 3 primaries + 3 replicas
 *   process.env.REDIS_CLUSTER_NODES = cluster.seeds;      // "127.0.0.1:p1,127.0.0.1:p2,..."
 *   const owner = cluster.primaryForKey("delivery:{42}");
 *   await cluster.kill(owner.port);
 *   const { newPrimary } = await cluster.waitForFailover(owner.port);
 *   await cluster.stopAll();
 *
 * Every node binds 127.0.0.1 on a free port with its cluster bus on a second
 * free port (`cluster-port`, so port+10000 never has to be free or <= 65535),
 * runs in its own temp dir with its own `nodes.conf`, `--save ""`,
 * `appendonly no` unless asked, a short `cluster-node-timeout` (1000 ms),
 * `cluster-replica-validity-factor 0` (a replica may always take over, however
 * long its primary was gone) and `repl-diskless-sync-delay 0` (replicas sync at
 * once, not after the 5 s default delay).
 *
 * The cluster is formed with CLUSTER commands rather than `redis-cli --cluster
 * create`: ADDSLOTSRANGE on each primary and distinct SET-CONFIG-EPOCH on every
 * node (both while each node is still alone), MEET between all pairs, then,
 * once every node knows every other, REPLICATE on each replica, all sent in
 * parallel. redis-cli does the same steps but sleeps a whole second between
 * its "waiting for the cluster to join" checks, picks the replica pairing
 * itself (shuffled, as all nodes share a host) and is one more child process
 * whose output must be parsed; here the pairing is fixed (replica j of primary
 * i is node primaries + i*replicasPerPrimary + j) and every wait is a poll.
 *
 * start, restart, failover and migration resolve only once the cluster is
 * healthy: on every running node cluster_state:ok and all 16384 slots ok,
 * every running node known to every other (connected, not failing, no
 * handshake), no slot migrating/importing, the same slot map and the same
 * roles in every node's CLUSTER NODES, and every running replica reporting
 * master_link_status:up. All waits poll with a deadline; admin commands go
 * over short-lived raw RESP sockets (redisServer.ts), so nothing is left open.
 *
 * Children are SIGKILLed if the test process exits or dies (redisServer.ts).
 */
import path from "node:path";
import {
  findFreePort,
  makeTempDir,
  parseInfo,
  redisCommand,
  redisPipeline,
  RedisStartError,
  RespError,
  removeTempDir,
  spawnRedis,
  type RedisProcess,
  type RespValue,
} from "./redisServer.js";

const HOST = "127.0.0.1";
export const CLUSTER_SLOTS = 16384;

// ---------------------------------------------------------------------------
// Hash slots
// ---------------------------------------------------------------------------

const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16-CCITT (XMODEM: poly 0x1021, init 0), the checksum Redis Cluster uses. */
export function crc16(data: Uint8Array): number {
  let crc = 0;
  for (const b of data) crc = ((crc << 8) & 0xffff) ^ (CRC16_TABLE[((crc >> 8) ^ b) & 0xff] as number);
  return crc;
}

/**
 * The hash slot of a key, as Redis computes it (CLUSTER KEYSLOT): CRC16 of the
 * key mod 16384, or of the hash tag if the key has one, i.e. the bytes between
 * the first `{` and the first `}` after it, when that is not empty.
 */
export function keySlot(key: string | Uint8Array): number {
  const bytes = typeof key === "string" ? Buffer.from(key, "utf8") : key;
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) & (CLUSTER_SLOTS - 1);
  }
  return crc16(bytes) & (CLUSTER_SLOTS - 1);
}

// ---------------------------------------------------------------------------
// CLUSTER NODES parsing
// ---------------------------------------------------------------------------

export type SlotRange = [start: number, end: number];

/** One line of CLUSTER NODES. */
export interface ClusterNodesEntry {
  id: string;
  port: number;
  busPort: number;
  flags: Set<string>;
  /** The primary's id, for a replica. */
  primaryId: string | undefined;
  configEpoch: number;
  linkState: string;
  slots: SlotRange[];
  /** slot -> node id, on the node that is migrating the slot away. */
  migrating: Map<number, string>;
  /** slot -> node id, on the node that is importing the slot. */
  importing: Map<number, string>;
}

export function parseClusterNodes(text: string): ClusterNodesEntry[] {
  const out: ClusterNodesEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.trim().split(" ");
    if (f.length < 8) continue;
    const [id, addr, flags, master, , , epoch, link, ...slotTokens] = f as [string, string, string, string, string, string, string, string, ...string[]];
    const m = /:(\d+)@(\d+)/.exec(addr);
    const entry: ClusterNodesEntry = {
      id,
      port: m ? Number(m[1]) : 0,
      busPort: m ? Number(m[2]) : 0,
      flags: new Set(flags.split(",")),
      primaryId: master === "-" ? undefined : master,
      configEpoch: Number(epoch),
      linkState: link,
      slots: [],
      migrating: new Map(),
      importing: new Map(),
    };
    for (const tok of slotTokens) {
      let mm: RegExpExecArray | null;
      if ((mm = /^\[(\d+)->-(\w+)\]$/.exec(tok))) entry.migrating.set(Number(mm[1]), mm[2] as string);
      else if ((mm = /^\[(\d+)-<-(\w+)\]$/.exec(tok))) entry.importing.set(Number(mm[1]), mm[2] as string);
      else if ((mm = /^(\d+)-(\d+)$/.exec(tok))) entry.slots.push([Number(mm[1]), Number(mm[2])]);
      else if (/^\d+$/.test(tok)) entry.slots.push([Number(tok), Number(tok)]);
    }
    out.push(entry);
  }
  return out;
}

const isPrimaryEntry = (e: ClusterNodesEntry) => e.flags.has("master");

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export interface RedisClusterOptions {
  /** Number of primaries. Default 3. */
  primaries?: number;
  /** Replicas per primary. Default 1. */
  replicasPerPrimary?: number;
  /** cluster-node-timeout in ms. Default 1000. */
  nodeTimeoutMs?: number;
  /** appendonly yes on every node. Default false (then a restarted node comes back empty). */
  appendonly?: boolean;
  /** appendfsync when appendonly. Default "everysec" (Redis' default). */
  appendfsync?: "always" | "everysec" | "no";
  /** More redis-server arguments for every node. */
  extraArgs?: readonly string[];
  /** Deadline for starting the processes and forming a healthy cluster. Default 30000 ms. */
  startTimeoutMs?: number;
}

export type NodeState = "running" | "paused" | "stopped";

/** A node as last read by refresh() (done by start, waitForFailover, restart, migrateSlot, failover). */
export interface ClusterNode {
  port: number;
  role: "primary" | "replica";
  id: string;
  /** pid of the running process; undefined once stopped/killed. */
  pid: number | undefined;
  /** Whether our process is running, SIGSTOPped or gone. */
  state: NodeState;
  /** For a replica: its primary's id and port. */
  primaryId: string | undefined;
  primaryPort: number | undefined;
  /** Slot ranges this node owns (primaries; [] for replicas and failed-over primaries). */
  slots: SlotRange[];
  /** Cluster bus port. */
  busPort: number;
  /** The node's --dir (nodes.conf, AOF). */
  dir: string;
}

export interface WaitOptions {
  timeoutMs?: number;
}

export interface RedisClusterHandle {
  /** Snapshot of all nodes (including stopped ones), as of the last refresh(). */
  readonly nodes: readonly ClusterNode[];
  /** "127.0.0.1:p1,127.0.0.1:p2,..." of all nodes, e.g. for REDIS_CLUSTER_NODES. */
  readonly seeds: string;
  /** All node ports, in start order (primaries first). */
  readonly ports: readonly number[];
  /** Primaries owning slots, as of the last refresh(). */
  primaries(): ClusterNode[];
  /** Replicas, as of the last refresh(). */
  replicas(): ClusterNode[];
  node(port: number): ClusterNode;
  /** Re-read ids, roles and slots from a running node's CLUSTER NODES. */
  refresh(): Promise<readonly ClusterNode[]>;
  /** The primary owning `slot`, as of the last refresh(). */
  primaryForSlot(slot: number): ClusterNode;
  /** The primary owning keySlot(key), as of the last refresh(). */
  primaryForKey(key: string | Uint8Array): ClusterNode;
  /** Resolve once the cluster is healthy (see the file comment), then refresh(). Default deadline 15000 ms. */
  waitHealthy(opts?: WaitOptions): Promise<void>;
  /** Resolve once every running replica's offset has reached its primary's master_repl_offset. */
  waitReplicated(opts?: WaitOptions): Promise<void>;
  /** SIGKILL the node and wait for the exit. */
  kill(port: number): Promise<void>;
  /** SIGTERM (then SIGCONT if paused) and wait for the exit. */
  stop(port: number): Promise<void>;
  /** Stop if running, start again on the same port, bus port and dir (same nodes.conf, so the same id); resolve once healthy. */
  restart(port: number, opts?: WaitOptions): Promise<void>;
  /** SIGSTOP the node (it stops answering; after nodeTimeoutMs a paused primary gets failed over). */
  pause(port: number): Promise<void>;
  /** SIGCONT the node. Does not wait: use waitHealthy(). */
  resume(port: number): Promise<void>;
  /**
   * Resolve once a replica of `oldPrimaryPort` (a primary as of the last
   * refresh) owns its slots in every running node's view and the cluster is
   * healthy; default deadline 20000 ms.
   */
  waitForFailover(oldPrimaryPort: number, opts?: WaitOptions): Promise<{ newPrimary: ClusterNode; elapsedMs: number }>;
  /** CLUSTER FAILOVER [FORCE] on a replica (manual failover) and wait until it is the primary and the cluster healthy. */
  failover(replicaPort: number, opts?: WaitOptions & { force?: boolean }): Promise<void>;
  /**
   * Move `slot` to primary `toPort`: SETSLOT IMPORTING on the target, MIGRATING
   * on the source, MIGRATE the keys in batches, SETSLOT NODE on target, source
   * and every other primary; resolve once every node agrees and the cluster is
   * healthy. No-op if `toPort` already owns it.
   */
  migrateSlot(slot: number, toPort: number, opts?: WaitOptions): Promise<{ keysMoved: number; fromPort: number }>;
  /** SIGKILL every node and remove the temp dirs. */
  stopAll(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

interface NodeRecord {
  index: number;
  port: number;
  busPort: number;
  dir: string;
  args: string[];
  proc: RedisProcess | undefined;
  state: NodeState;
  id: string;
  role: "primary" | "replica";
  primaryId: string | undefined;
  slots: SlotRange[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Poll `check` (returns undefined when done, else a reason) every `intervalMs`
 * until it passes or `timeoutMs` is over; then fail with `what` and the last reason.
 */
async function pollUntil(check: () => Promise<string | undefined>, what: string, timeoutMs: number, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let reason = "";
  for (;;) {
    try {
      const r = await check();
      if (r === undefined) return;
      reason = r;
    } catch (err) {
      reason = String(err);
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${reason}`);
    await sleep(intervalMs);
  }
}

const asText = (v: RespValue | undefined): string => {
  if (v instanceof RespError) throw v;
  if (typeof v === "string") return v;
  if (Buffer.isBuffer(v)) return v.toString("utf8");
  throw new Error(`unexpected reply ${JSON.stringify(v)}`);
};

function formatSlots(slots: readonly SlotRange[]): string {
  return slots.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
}

/** Split 0..16383 into `n` contiguous ranges, as redis-cli does. */
function splitSlots(n: number): SlotRange[] {
  const per = CLUSTER_SLOTS / n;
  const out: SlotRange[] = [];
  let first = 0;
  let cursor = 0;
  for (let i = 0; i < n; i++) {
    let last = Math.round(cursor + per - 1);
    if (last > CLUSTER_SLOTS - 1 || i === n - 1) last = CLUSTER_SLOTS - 1;
    out.push([first, last]);
    first = last + 1;
    cursor += per;
  }
  return out;
}

async function allocatePorts(taken: Set<number>): Promise<[number, number]> {
  const pick = async () => {
    for (let i = 0; i < 50; i++) {
      const p = await findFreePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
    throw new Error("could not find a free port");
  };
  return [await pick(), await pick()];
}

interface ViewOfNode {
  rec: NodeRecord;
  entries: ClusterNodesEntry[];
  clusterInfo: Record<string, string>;
  replication: Record<string, string>;
}

export async function startRedisCluster(opts: RedisClusterOptions = {}): Promise<RedisClusterHandle> {
  const nPrimaries = opts.primaries ?? 3;
  const perPrimary = opts.replicasPerPrimary ?? 1;
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 1000;
  const startTimeoutMs = opts.startTimeoutMs ?? 30_000;
  if (nPrimaries < 1) throw new Error("primaries must be >= 1");
  const total = nPrimaries * (1 + perPrimary);
  const startedAt = Date.now();
  const startDeadline = startedAt + startTimeoutMs;
  const remaining = () => Math.max(1000, startDeadline - Date.now());

  const records: NodeRecord[] = [];
  const taken = new Set<number>();

  const baseArgs = (rec: { dir: string; busPort: number }) => [
    "--cluster-enabled", "yes",
    "--cluster-config-file", path.join(rec.dir, "nodes.conf"),
    "--cluster-node-timeout", String(nodeTimeoutMs),
    "--cluster-port", String(rec.busPort),
    "--cluster-replica-validity-factor", "0",
    "--repl-diskless-sync-delay", "0",
    ...(opts.appendonly ? ["--appendfsync", opts.appendfsync ?? "everysec"] : []),
    ...(opts.extraArgs ?? []),
  ];

  const spawnNode = (rec: NodeRecord) =>
    spawnRedis({ port: rec.port, dir: rec.dir, appendonly: opts.appendonly ?? false, args: rec.args, timeoutMs: remaining() });

  // 1. Processes, in parallel; on a port clash retry that node on new ports.
  const startOne = async (index: number): Promise<NodeRecord> => {
    const dir = await makeTempDir(`redis-cluster-${index}-`);
    for (let attempt = 1; ; attempt++) {
      const [port, busPort] = await allocatePorts(taken);
      const rec: NodeRecord = {
        index, port, busPort, dir, args: baseArgs({ dir, busPort }), proc: undefined, state: "stopped",
        id: "", role: index < nPrimaries ? "primary" : "replica", primaryId: undefined, slots: [],
      };
      try {
        rec.proc = await spawnNode(rec);
        rec.state = "running";
        return rec;
      } catch (err) {
        if (err instanceof RedisStartError && err.addressInUse && attempt < 5) continue;
        throw err;
      }
    }
  };

  const stopAll = async () => {
    await Promise.all(
      records.map(async (r) => {
        const p = r.proc;
        r.proc = undefined;
        r.state = "stopped";
        await p?.terminate("SIGKILL");
        await removeTempDir(r.dir);
      }),
    );
  };

  const toNode = (r: NodeRecord): ClusterNode => ({
    port: r.port,
    role: r.role,
    id: r.id,
    pid: r.state === "stopped" ? undefined : r.proc?.pid,
    state: r.state,
    primaryId: r.primaryId,
    primaryPort: r.primaryId ? records.find((x) => x.id === r.primaryId)?.port : undefined,
    slots: r.slots.map(([a, b]) => [a, b] as SlotRange),
    busPort: r.busPort,
    dir: r.dir,
  });

  const rec = (port: number): NodeRecord => {
    const r = records.find((x) => x.port === port);
    if (!r) throw new Error(`no cluster node on port ${port} (ports: ${records.map((x) => x.port).join(",")})`);
    return r;
  };
  const running = () => records.filter((r) => r.state === "running");

  /** Every running node's CLUSTER NODES / CLUSTER INFO / INFO replication. */
  const readViews = async (): Promise<ViewOfNode[]> =>
    Promise.all(
      running().map(async (r) => {
        const [nodes, info, repl] = await redisPipeline(r.port, [["CLUSTER", "NODES"], ["CLUSTER", "INFO"], ["INFO", "replication"]], { timeoutMs: 1000 });
        return { rec: r, entries: parseClusterNodes(asText(nodes)), clusterInfo: parseInfo(asText(info)), replication: parseInfo(asText(repl)) };
      }),
    );

  /** undefined if healthy, else why not. */
  const healthProblem = (views: ViewOfNode[]): string | undefined => {
    const runningIds = new Set(running().map((r) => r.id));
    let signature: string | undefined;
    for (const v of views) {
      const who = `node ${v.rec.port}`;
      if (v.clusterInfo.cluster_state !== "ok") return `${who}: cluster_state:${v.clusterInfo.cluster_state}`;
      if (v.clusterInfo.cluster_slots_ok !== String(CLUSTER_SLOTS)) return `${who}: cluster_slots_ok:${v.clusterInfo.cluster_slots_ok}`;
      const byId = new Map(v.entries.map((e) => [e.id, e]));
      for (const id of runningIds) {
        const e = byId.get(id);
        if (!e) return `${who} does not know ${id}`;
        for (const bad of ["fail", "fail?", "handshake", "noaddr"]) if (e.flags.has(bad)) return `${who} sees ${e.port} as ${[...e.flags].join(",")}`;
        if (!e.flags.has("myself") && e.linkState !== "connected") return `${who}: link to ${e.port} ${e.linkState}`;
      }
      for (const e of v.entries) {
        if (e.migrating.size || e.importing.size) return `${who}: slot migration in progress on ${e.port}`;
      }
      const me = v.entries.find((e) => e.flags.has("myself"));
      if (me && !isPrimaryEntry(me) && v.replication.master_link_status !== "up") {
        return `${who}: master_link_status:${v.replication.master_link_status}`;
      }
      const slotMap = v.entries
        .filter((e) => isPrimaryEntry(e) && e.slots.length)
        .map((e) => `${e.id}=${formatSlots(e.slots)}`)
        .sort()
        .join(";");
      const roles = v.entries
        .filter((e) => runningIds.has(e.id))
        .map((e) => `${e.id}:${isPrimaryEntry(e) ? "M" : `S>${e.primaryId}`}`)
        .sort()
        .join(";");
      const sig = `${slotMap}|${roles}`;
      if (signature === undefined) signature = sig;
      else if (sig !== signature) return `nodes disagree on the slot map / roles (${views[0]?.rec.port} vs ${v.rec.port})`;
    }
    return undefined;
  };

  const applyView = (entries: ClusterNodesEntry[]) => {
    for (const r of records) {
      const e = entries.find((x) => x.port === r.port) ?? entries.find((x) => x.id === r.id);
      if (!e) continue;
      r.id = e.id;
      r.role = isPrimaryEntry(e) ? "primary" : "replica";
      r.primaryId = r.role === "replica" ? e.primaryId : undefined;
      r.slots = e.slots;
    }
  };

  const refresh = async (): Promise<readonly ClusterNode[]> => {
    let lastErr: unknown;
    for (const r of running()) {
      try {
        applyView(parseClusterNodes(asText(await redisCommand(r.port, ["CLUSTER", "NODES"], { timeoutMs: 1000 }))));
        return records.map(toNode);
      } catch (err) {
        lastErr = err;
      }
    }
    throw new Error(`refresh: no running cluster node answered CLUSTER NODES (${String(lastErr)})`);
  };

  const waitHealthy = async (timeoutMs = 15_000, what = "a healthy cluster") => {
    await pollUntil(async () => healthProblem(await readViews()), what, timeoutMs);
    await refresh();
  };

  const cmd = (port: number, ...args: (string | number | Buffer)[]) => redisCommand(port, args, { timeoutMs: 5000 });

  try {
    const started = await Promise.all(Array.from({ length: total }, (_, i) => startOne(i)));
    records.push(...started);

    // 2. While every node is alone: ids, distinct config epochs, primaries' slots.
    const ranges = splitSlots(nPrimaries);
    await Promise.all(
      records.map(async (r) => {
        r.id = asText(await cmd(r.port, "CLUSTER", "MYID"));
        await cmd(r.port, "CLUSTER", "SET-CONFIG-EPOCH", r.index + 1);
        const range = ranges[r.index];
        if (r.index < nPrimaries && range) {
          await cmd(r.port, "CLUSTER", "ADDSLOTSRANGE", range[0], range[1]);
          r.slots = [range];
        }
      }),
    );

    // 3. MEET between all pairs, then wait until every node knows every other.
    await Promise.all(
      records.flatMap((a) => records.filter((b) => b.index < a.index).map((b) => cmd(a.port, "CLUSTER", "MEET", HOST, b.port, b.busPort))),
    );
    const ids = new Set(records.map((r) => r.id));
    await pollUntil(
      async () => {
        for (const r of records) {
          const entries = parseClusterNodes(asText(await redisCommand(r.port, ["CLUSTER", "NODES"], { timeoutMs: 1000 })));
          const known = entries.filter((e) => ids.has(e.id) && !e.flags.has("handshake") && !e.flags.has("noaddr"));
          if (known.length !== total) return `node ${r.port} knows ${known.length}/${total} nodes`;
        }
        return undefined;
      },
      "all cluster nodes to know each other",
      remaining(),
    );

    // 4. Replicas: replica j of primary i is node nPrimaries + i*perPrimary + j.
    await Promise.all(
      records.slice(nPrimaries).map(async (r) => {
        const primary = records[Math.floor((r.index - nPrimaries) / perPrimary)] as NodeRecord;
        await cmd(r.port, "CLUSTER", "REPLICATE", primary.id);
        r.role = "replica";
        r.primaryId = primary.id;
      }),
    );

    // 5. Healthy: state ok everywhere, slots covered, replicas linked, views agree.
    await waitHealthy(remaining(), "the new cluster to become healthy");
  } catch (err) {
    const logs = records.map((r) => `--- node ${r.port}:\n${r.proc?.output().trim() ?? ""}`).join("\n");
    await stopAll();
    throw new Error(`startRedisCluster failed: ${(err as Error).message}\n${logs}`, { cause: err });
  }

  const handle: RedisClusterHandle = {
    get nodes() {
      return records.map(toNode);
    },
    seeds: records.map((r) => `${HOST}:${r.port}`).join(","),
    ports: records.map((r) => r.port),
    primaries: () => records.filter((r) => r.role === "primary" && r.slots.length > 0).map(toNode),
    replicas: () => records.filter((r) => r.role === "replica").map(toNode),
    node: (port) => toNode(rec(port)),
    refresh,
    primaryForSlot(slot) {
      if (!Number.isInteger(slot) || slot < 0 || slot >= CLUSTER_SLOTS) throw new Error(`bad slot ${slot}`);
      const r = records.find((x) => x.role === "primary" && x.slots.some(([a, b]) => slot >= a && slot <= b));
      if (!r) throw new Error(`no primary owns slot ${slot} (call refresh()?)`);
      return toNode(r);
    },
    primaryForKey(key) {
      return handle.primaryForSlot(keySlot(key));
    },
    waitHealthy: (o) => waitHealthy(o?.timeoutMs),
    async waitReplicated(o) {
      await pollUntil(
        async () => {
          for (const r of running().filter((x) => x.role === "replica")) {
            const primary = records.find((x) => x.id === r.primaryId);
            if (!primary || primary.state !== "running") continue;
            const [p, s] = await Promise.all([
              redisCommand(primary.port, ["INFO", "replication"], { timeoutMs: 1000 }),
              redisCommand(r.port, ["INFO", "replication"], { timeoutMs: 1000 }),
            ]);
            const want = Number(parseInfo(asText(p)).master_repl_offset);
            const got = Number(parseInfo(asText(s)).slave_repl_offset);
            if (!(got >= want)) return `replica ${r.port} at offset ${got}, primary ${primary.port} at ${want}`;
          }
          return undefined;
        },
        "replicas to catch up",
        o?.timeoutMs ?? 10_000,
      );
    },
    async kill(port) {
      const r = rec(port);
      const p = r.proc;
      r.proc = undefined;
      r.state = "stopped";
      await p?.terminate("SIGKILL");
    },
    async stop(port) {
      const r = rec(port);
      const p = r.proc;
      r.proc = undefined;
      r.state = "stopped";
      await p?.terminate("SIGTERM");
    },
    async restart(port, o) {
      const r = rec(port);
      if (r.proc) await handle.stop(port);
      const deadline = Date.now() + (o?.timeoutMs ?? 20_000);
      for (;;) {
        try {
          r.proc = await spawnRedis({ port: r.port, dir: r.dir, appendonly: opts.appendonly ?? false, args: r.args, timeoutMs: Math.max(1000, deadline - Date.now()) });
          break;
        } catch (err) {
          if (err instanceof RedisStartError && err.addressInUse && Date.now() < deadline) {
            await sleep(100);
            continue;
          }
          throw err;
        }
      }
      r.state = "running";
      await waitHealthy(Math.max(1000, deadline - Date.now()), `node ${port} to rejoin a healthy cluster`);
    },
    async pause(port) {
      const r = rec(port);
      if (r.state !== "running" || !r.proc) throw new Error(`node ${port} is ${r.state}`);
      r.proc.child.kill("SIGSTOP");
      r.state = "paused";
    },
    async resume(port) {
      const r = rec(port);
      if (r.state !== "paused" || !r.proc) throw new Error(`node ${port} is ${r.state}`);
      r.proc.child.kill("SIGCONT");
      r.state = "running";
    },
    async waitForFailover(oldPrimaryPort, o) {
      const t0 = Date.now();
      const old = rec(oldPrimaryPort);
      if (old.role !== "primary" || old.slots.length === 0) throw new Error(`node ${oldPrimaryPort} is not a primary owning slots (as of the last refresh)`);
      const oldId = old.id;
      const probeSlot = (old.slots[0] as SlotRange)[0];
      const candidates = new Set(records.filter((r) => r.primaryId === oldId).map((r) => r.id));
      if (candidates.size === 0) throw new Error(`primary ${oldPrimaryPort} has no replica to fail over to`);
      let winner: string | undefined;
      await pollUntil(
        async () => {
          const views = await readViews();
          for (const v of views) {
            const owner = v.entries.find((e) => isPrimaryEntry(e) && e.slots.some(([a, b]) => probeSlot >= a && probeSlot <= b));
            if (!owner || !candidates.has(owner.id)) return `node ${v.rec.port} sees slot ${probeSlot} on ${owner?.port ?? "nobody"}`;
            winner = owner.id;
          }
          return healthProblem(views);
        },
        `a replica of ${oldPrimaryPort} to take over`,
        o?.timeoutMs ?? 20_000,
      );
      await refresh();
      const newPrimary = records.find((r) => r.id === winner) as NodeRecord;
      return { newPrimary: toNode(newPrimary), elapsedMs: Date.now() - t0 };
    },
    async failover(replicaPort, o) {
      const r = rec(replicaPort);
      if (r.role !== "replica") throw new Error(`node ${replicaPort} is not a replica`);
      await cmd(replicaPort, "CLUSTER", "FAILOVER", ...(o?.force ? ["FORCE"] : []));
      await pollUntil(
        async () => {
          const views = await readViews();
          for (const v of views) {
            const e = v.entries.find((x) => x.id === r.id);
            if (!e || !isPrimaryEntry(e) || e.slots.length === 0) return `node ${v.rec.port} does not see ${replicaPort} as a primary yet`;
          }
          return healthProblem(views);
        },
        `manual failover to ${replicaPort}`,
        o?.timeoutMs ?? 15_000,
      );
      await refresh();
    },
    async migrateSlot(slot, toPort, o) {
      const timeoutMs = o?.timeoutMs ?? 15_000;
      await refresh();
      const src = rec(handle.primaryForSlot(slot).port);
      const dst = rec(toPort);
      if (dst.role !== "primary") throw new Error(`node ${toPort} is not a primary`);
      if (src === dst) return { keysMoved: 0, fromPort: src.port };
      await cmd(dst.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src.id);
      await cmd(src.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id);
      let keysMoved = 0;
      for (;;) {
        const keys = (await redisCommand(src.port, ["CLUSTER", "GETKEYSINSLOT", slot, 100], { buffers: true, timeoutMs: 5000 })) as Buffer[];
        if (keys.length === 0) break;
        await redisCommand(src.port, ["MIGRATE", HOST, dst.port, "", 0, 5000, "REPLACE", "KEYS", ...keys], { timeoutMs: 10_000 });
        keysMoved += keys.length;
      }
      // Target first (so it never ASKs back), then the source, then everyone else.
      await cmd(dst.port, "CLUSTER", "SETSLOT", slot, "NODE", dst.id);
      await cmd(src.port, "CLUSTER", "SETSLOT", slot, "NODE", dst.id);
      await Promise.all(
        running()
          .filter((r) => r.role === "primary" && r !== src && r !== dst)
          .map((r) => cmd(r.port, "CLUSTER", "SETSLOT", slot, "NODE", dst.id)),
      );
      await pollUntil(
        async () => {
          const views = await readViews();
          for (const v of views) {
            const owner = v.entries.find((e) => isPrimaryEntry(e) && e.slots.some(([a, b]) => slot >= a && slot <= b));
            if (owner?.id !== dst.id) return `node ${v.rec.port} sees slot ${slot} on ${owner?.port ?? "nobody"}`;
          }
          return healthProblem(views);
        },
        `slot ${slot} to move to ${toPort}`,
        timeoutMs,
      );
      await refresh();
      return { keysMoved, fromPort: src.port };
    },
    stopAll,
  };
  return handle;
}
