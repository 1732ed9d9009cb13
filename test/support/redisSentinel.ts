/**
 * A local Redis Sentinel setup for tests, from `redis-server` processes (no Docker):
 * one primary, `replicas` replicas (default 1, `--replicaof`) and `sentinels`
 * sentinels (default 3, `redis-server <conf> --sentinel`).
 *
 *   const s = await startRedisSentinel();
 *   process.env.REDIS_SENTINELS = s.sentinels;         // "127.0.0.1:p,..."
 *   const old = await s.primaryPort();
 *   await s.kill(old);
 *   const { newPrimaryPort } = await s.waitForFailover(old);
 *   await s.stopAll();
 *
 * Each process binds 127.0.0.1 on a free port in its own temp dir. Data nodes
 * run with `--save ""`, `appendonly no` unless asked, `repl-diskless-sync-delay 0`.
 * Each sentinel's config file (sentinels rewrite it, so it lives in the temp
 * dir) says `sentinel resolve-hostnames no`, `sentinel monitor <name>
 * 127.0.0.1 <primary> <quorum>`, `down-after-milliseconds` 1000,
 * `failover-timeout` 3000 and `parallel-syncs 1`.
 *
 * Start resolves once every replica is linked (master_link_status:up) and
 * every sentinel reports the primary, lists all replicas (flags "slave",
 * master-link-status ok) and knows the other sentinels (num-other-sentinels =
 * sentinels - 1); sentinels find each other through hello messages, which
 * they publish every 2 s, so this takes ~2 s. Every wait polls with a deadline;
 * admin commands use short-lived raw RESP sockets (redisServer.ts). Children
 * are SIGKILLed if the test process exits or dies.
 */
import { writeFile } from "node:fs/promises";
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

export interface RedisSentinelOptions {
  /** Monitored master name. Default "mymaster". */
  masterName?: string;
  /** Replicas of the primary. Default 1. */
  replicas?: number;
  /** Sentinel processes. Default 3. */
  sentinels?: number;
  /** Quorum. Default 2. */
  quorum?: number;
  /** sentinel down-after-milliseconds. Default 1000. */
  downAfterMs?: number;
  /** sentinel failover-timeout. Default 3000. */
  failoverTimeoutMs?: number;
  /** appendonly yes on the data nodes. Default false. */
  appendonly?: boolean;
  /** Deadline for the whole start. Default 30000 ms. */
  startTimeoutMs?: number;
}

export type SentinelProcessKind = "primary" | "replica" | "sentinel";

export interface RedisSentinelHandle {
  readonly masterName: string;
  /** "127.0.0.1:p1,127.0.0.1:p2,..." of the sentinels, e.g. for REDIS_SENTINELS. */
  readonly sentinels: string;
  readonly sentinelPorts: readonly number[];
  /** Ports of the data nodes (the initial primary first, then the replicas). */
  readonly dataPorts: readonly number[];
  /** The primary at start. */
  readonly initialPrimaryPort: number;
  /** The current primary's port, asked of a running sentinel (SENTINEL get-master-addr-by-name). */
  primaryPort(): Promise<number>;
  /** Whether our process on `port` is running, SIGSTOPped or gone. */
  state(port: number): "running" | "paused" | "stopped";
  pid(port: number): number | undefined;
  /** SIGKILL the process (data node or sentinel) and wait for the exit. */
  kill(port: number): Promise<void>;
  /** SIGTERM (SIGCONT if paused) and wait for the exit. */
  stop(port: number): Promise<void>;
  /** Start a stopped process again on the same port, dir and config (sentinels reconfigure it as needed). Resolves once it answers PING. */
  restart(port: number): Promise<void>;
  /** SIGSTOP. */
  pause(port: number): Promise<void>;
  /** SIGCONT. */
  resume(port: number): Promise<void>;
  /**
   * Resolve once every running sentinel reports the same primary other than
   * `oldPrimaryPort`, that node answers role:master, and every other running
   * data node is its linked replica. Default deadline 25000 ms.
   */
  waitForFailover(oldPrimaryPort: number, opts?: { timeoutMs?: number }): Promise<{ newPrimaryPort: number; elapsedMs: number }>;
  /** SIGKILL everything and remove the temp dirs. */
  stopAll(): Promise<void>;
}

interface Proc {
  kind: SentinelProcessKind;
  port: number;
  dir: string;
  configFile: string | undefined;
  args: string[];
  proc: RedisProcess | undefined;
  state: "running" | "paused" | "stopped";
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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

/** A flat [k1, v1, k2, v2, ...] reply as a record. */
function pairs(v: RespValue | undefined): Record<string, string> {
  if (v instanceof RespError) throw v;
  if (!Array.isArray(v)) throw new Error(`expected an array, got ${JSON.stringify(v)}`);
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < v.length; i += 2) out[asText(v[i])] = asText(v[i + 1]);
  return out;
}

export async function startRedisSentinel(opts: RedisSentinelOptions = {}): Promise<RedisSentinelHandle> {
  const masterName = opts.masterName ?? "mymaster";
  const nReplicas = opts.replicas ?? 1;
  const nSentinels = opts.sentinels ?? 3;
  const quorum = opts.quorum ?? 2;
  const downAfterMs = opts.downAfterMs ?? 1000;
  const failoverTimeoutMs = opts.failoverTimeoutMs ?? 3000;
  const appendonly = opts.appendonly ?? false;
  const startDeadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  const remaining = () => Math.max(1000, startDeadline - Date.now());

  const procs: Proc[] = [];
  const taken = new Set<number>();
  const freePort = async () => {
    for (let i = 0; i < 50; i++) {
      const p = await findFreePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
    throw new Error("could not find a free port");
  };

  const spawnProc = (p: Proc, timeoutMs: number) =>
    spawnRedis({
      port: p.port,
      dir: p.dir,
      ...(p.configFile ? { configFile: p.configFile, sentinel: true } : { appendonly }),
      args: p.args,
      timeoutMs,
    });

  /** Create and start a process on a free port, retrying on a port clash. */
  const launch = async (kind: SentinelProcessKind, makeArgs: (port: number) => string[], config?: (port: number, dir: string) => string) => {
    const dir = await makeTempDir(`redis-sentinel-${kind}-`);
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const p: Proc = { kind, port, dir, configFile: undefined, args: makeArgs(port), proc: undefined, state: "stopped" };
      if (config) {
        p.configFile = path.join(dir, "sentinel.conf");
        await writeFile(p.configFile, config(port, dir));
      }
      try {
        p.proc = await spawnProc(p, remaining());
        p.state = "running";
        procs.push(p);
        return p;
      } catch (err) {
        if (err instanceof RedisStartError && err.addressInUse && attempt < 5) continue;
        throw err;
      }
    }
  };

  const stopAll = async () => {
    await Promise.all(
      procs.map(async (p) => {
        const r = p.proc;
        p.proc = undefined;
        p.state = "stopped";
        await r?.terminate("SIGKILL");
        await removeTempDir(p.dir);
      }),
    );
  };

  const dataArgs = ["--repl-diskless-sync-delay", "0"];
  const sentinelConfig = (primaryPort: number) => (port: number, dir: string) =>
    [
      `port ${port}`,
      `bind ${HOST}`,
      `dir ${dir}`,
      "daemonize no",
      "protected-mode no",
      "sentinel resolve-hostnames no",
      `sentinel monitor ${masterName} ${HOST} ${primaryPort} ${quorum}`,
      `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
      `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${masterName} 1`,
      "",
    ].join("\n");

  const byPort = (port: number): Proc => {
    const p = procs.find((x) => x.port === port);
    if (!p) throw new Error(`no process of this sentinel setup on port ${port}`);
    return p;
  };
  const runningSentinels = () => procs.filter((p) => p.kind === "sentinel" && p.state === "running");

  let primary: Proc;
  let replicas: Proc[];
  let sentinels: Proc[];
  try {
    primary = await launch("primary", () => dataArgs);
    replicas = await Promise.all(
      Array.from({ length: nReplicas }, () => launch("replica", () => [...dataArgs, "--replicaof", HOST, String(primary.port)])),
    );
    // Replicas linked before the sentinels start: a sentinel's first INFO of the
    // primary (sent on connect) then already lists them.
    await pollUntil(
      async () => {
        for (const r of replicas) {
          const info = parseInfo(asText(await redisCommand(r.port, ["INFO", "replication"], { timeoutMs: 1000 })));
          if (info.master_link_status !== "up") return `replica ${r.port}: master_link_status:${info.master_link_status}`;
        }
        return undefined;
      },
      "replicas to sync",
      remaining(),
    );
    sentinels = await Promise.all(Array.from({ length: nSentinels }, () => launch("sentinel", () => [], sentinelConfig(primary.port))));

    const replicaPorts = new Set(replicas.map((r) => r.port));
    await pollUntil(
      async () => {
        for (const s of sentinels) {
          const [addr, master, reps] = await redisPipeline(
            s.port,
            [["SENTINEL", "get-master-addr-by-name", masterName], ["SENTINEL", "MASTER", masterName], ["SENTINEL", "REPLICAS", masterName]],
            { timeoutMs: 1000 },
          );
          const who = `sentinel ${s.port}`;
          if (!Array.isArray(addr) || Number(asText(addr[1])) !== primary.port) return `${who}: master addr ${JSON.stringify(addr)}`;
          const m = pairs(master);
          if (m.flags !== "master") return `${who}: master flags ${m.flags}`;
          if (Number(m["num-other-sentinels"]) !== nSentinels - 1) return `${who}: num-other-sentinels ${m["num-other-sentinels"]}`;
          if (!Array.isArray(reps)) return `${who}: replicas ${JSON.stringify(reps)}`;
          const seen = reps.map(pairs).filter((r) => r.flags === "slave" && r["master-link-status"] === "ok" && replicaPorts.has(Number(r.port)));
          if (seen.length !== nReplicas) return `${who}: sees ${seen.length}/${nReplicas} replicas`;
        }
        return undefined;
      },
      "sentinels to know the primary, its replicas and each other",
      remaining(),
    );
  } catch (err) {
    const logs = procs.map((p) => `--- ${p.kind} ${p.port}:\n${p.proc?.output().trim() ?? ""}`).join("\n");
    await stopAll();
    throw new Error(`startRedisSentinel failed: ${(err as Error).message}\n${logs}`, { cause: err });
  }

  const primaryPort = async (): Promise<number> => {
    let lastErr: unknown;
    for (const s of runningSentinels()) {
      try {
        const addr = await redisCommand(s.port, ["SENTINEL", "get-master-addr-by-name", masterName], { timeoutMs: 1000 });
        if (Array.isArray(addr)) return Number(asText(addr[1]));
        lastErr = new Error(`no master addr: ${JSON.stringify(addr)}`);
      } catch (err) {
        lastErr = err;
      }
    }
    throw new Error(`no running sentinel answered get-master-addr-by-name (${String(lastErr)})`);
  };

  const handle: RedisSentinelHandle = {
    masterName,
    sentinels: sentinels.map((s) => `${HOST}:${s.port}`).join(","),
    sentinelPorts: sentinels.map((s) => s.port),
    dataPorts: [primary.port, ...replicas.map((r) => r.port)],
    initialPrimaryPort: primary.port,
    primaryPort,
    state: (port) => byPort(port).state,
    pid: (port) => {
      const p = byPort(port);
      return p.state === "stopped" ? undefined : p.proc?.pid;
    },
    async kill(port) {
      const p = byPort(port);
      const r = p.proc;
      p.proc = undefined;
      p.state = "stopped";
      await r?.terminate("SIGKILL");
    },
    async stop(port) {
      const p = byPort(port);
      const r = p.proc;
      p.proc = undefined;
      p.state = "stopped";
      await r?.terminate("SIGTERM");
    },
    async restart(port) {
      const p = byPort(port);
      if (p.proc) await handle.stop(port);
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          p.proc = await spawnProc(p, Math.max(1000, deadline - Date.now()));
          p.state = "running";
          return;
        } catch (err) {
          if (err instanceof RedisStartError && err.addressInUse && Date.now() < deadline) {
            await sleep(100);
            continue;
          }
          throw err;
        }
      }
    },
    async pause(port) {
      const p = byPort(port);
      if (p.state !== "running" || !p.proc) throw new Error(`process on ${port} is ${p.state}`);
      p.proc.child.kill("SIGSTOP");
      p.state = "paused";
    },
    async resume(port) {
      const p = byPort(port);
      if (p.state !== "paused" || !p.proc) throw new Error(`process on ${port} is ${p.state}`);
      p.proc.child.kill("SIGCONT");
      p.state = "running";
    },
    async waitForFailover(oldPrimaryPort, o) {
      const t0 = Date.now();
      let newPort = 0;
      await pollUntil(
        async () => {
          const sents = runningSentinels();
          if (sents.length === 0) return "no running sentinel";
          const ports = await Promise.all(
            sents.map(async (s) => {
              const addr = await redisCommand(s.port, ["SENTINEL", "get-master-addr-by-name", masterName], { timeoutMs: 1000 });
              return Array.isArray(addr) ? Number(asText(addr[1])) : 0;
            }),
          );
          const first = ports[0] as number;
          if (first === oldPrimaryPort || ports.some((p) => p !== first)) return `sentinels report ${ports.join(",")}`;
          const np = procs.find((x) => x.port === first && x.kind !== "sentinel");
          if (!np || np.state !== "running") return `reported primary ${first} is not a running data node`;
          const info = parseInfo(asText(await redisCommand(first, ["INFO", "replication"], { timeoutMs: 1000 })));
          if (info.role !== "master") return `${first} has role:${info.role}`;
          for (const d of procs.filter((x) => x.kind !== "sentinel" && x.state === "running" && x.port !== first)) {
            const ri = parseInfo(asText(await redisCommand(d.port, ["INFO", "replication"], { timeoutMs: 1000 })));
            if (ri.role !== "slave" || Number(ri.master_port) !== first || ri.master_link_status !== "up") {
              return `${d.port}: role:${ri.role} master_port:${ri.master_port} master_link_status:${ri.master_link_status}`;
            }
          }
          newPort = first;
          return undefined;
        },
        `sentinels to fail over from ${oldPrimaryPort}`,
        o?.timeoutMs ?? 25_000,
      );
      return { newPrimaryPort: newPort, elapsedMs: Date.now() - t0 };
    },
    stopAll,
  };
  return handle;
}
