/**
 * Where the store lives, read from the environment: nothing (the in-memory
 * store), one Redis by URL, a Redis Cluster by seed nodes, or the primary a
 * set of Sentinels names. At most one of REDIS_URL, REDIS_CLUSTER_NODES and
 * REDIS_SENTINELS may be set.
 *
 *   REDIS_URL                 redis://[user:password@]host:port[/db] or rediss://… (TLS); credentials in the URL
 *   REDIS_CLUSTER_NODES       host:port,host:port,…  seed nodes (any nodes of the cluster; the rest are discovered)
 *   REDIS_SENTINELS           host:port,host:port,…  Sentinel processes
 *   REDIS_SENTINEL_MASTER     the monitored master's name (required with REDIS_SENTINELS)
 *   REDIS_SENTINEL_USERNAME / REDIS_SENTINEL_PASSWORD   the Sentinels' own ACL user / requirepass, when they have one
 *   REDIS_USERNAME / REDIS_PASSWORD   ACL user / password of the data nodes (cluster, sentinel; REDIS_URL carries its own)
 *   REDIS_TLS=true            TLS to every node (and every Sentinel) (cluster, sentinel; REDIS_URL says rediss://)
 *   REDIS_TLS_CA_FILE         PEM CA that signed the nodes' certificates (needs TLS), else Node's trusted CAs
 *   REDIS_COMMAND_TIMEOUT_MS  a call fails (UNAVAILABLE) this long after it arrives without a reply; default 2000
 *   REDIS_WAIT_REPLICAS       replicas that must acknowledge an append (WAIT) before it succeeds; default 0 (no WAIT)
 *   REDIS_WAIT_TIMEOUT_MS     how long WAIT waits for them; default 500; less than REDIS_COMMAND_TIMEOUT_MS
 *
 * A bad setting throws ConfigError with one line naming it (main exits 2).
 */
import { type Env, flag, integer, pemFile, present } from "../../settings.js";
import { isIPv4, isIPv6 } from "node:net";
import { ConfigError } from "../../configError.js";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Settings every Redis mode shares. */
export interface RedisCommonSettings {
  /** A call gets an error this long after its arrival at the latest (REDIS_COMMAND_TIMEOUT_MS). */
  readonly commandTimeoutMs: number;
  /** Replicas that must acknowledge a write (WAIT); 0: no WAIT (REDIS_WAIT_REPLICAS). */
  readonly waitReplicas: number;
  /** WAIT's timeout (REDIS_WAIT_TIMEOUT_MS), below commandTimeoutMs. */
  readonly waitTimeoutMs: number;
  /** PEM CA file for TLS (REDIS_TLS_CA_FILE), validated to exist and hold a PEM block. */
  readonly tlsCaFile: string | undefined;
}

/** Credentials and TLS for cluster and sentinel modes (single mode has them in its URL). */
export interface RedisNodeAuth {
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly tls: boolean;
}

export interface MemoryTarget {
  readonly mode: "memory";
}
export interface SingleTarget extends RedisCommonSettings {
  readonly mode: "single";
  /** redis:// or rediss:// with a lower-case scheme (the client turns TLS on only for "rediss://"). */
  readonly url: string;
}
export interface ClusterTarget extends RedisCommonSettings, RedisNodeAuth {
  readonly mode: "cluster";
  readonly nodes: readonly HostPort[];
}
export interface SentinelTarget extends RedisCommonSettings, RedisNodeAuth {
  readonly mode: "sentinel";
  readonly sentinels: readonly HostPort[];
  readonly masterName: string;
  readonly sentinelUsername: string | undefined;
  readonly sentinelPassword: string | undefined;
}

export type RedisTarget = MemoryTarget | SingleTarget | ClusterTarget | SentinelTarget;
/** A target with a Redis behind it. */
export type RedisServerTarget = Exclude<RedisTarget, MemoryTarget>;

export const DEFAULT_COMMAND_TIMEOUT_MS = 2_000;
export const DEFAULT_WAIT_TIMEOUT_MS = 500;




/** Printable for an error message (a list may hold a typo, never a secret). */
const quote = (text: string) => JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);

// A DNS name (letters, digits, '-', '_' for container names, dot-separated
// labels) or an IPv4 address; IPv6 goes in brackets.
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/;

/** "host:port,host:port": every entry a host and a port 1-65535, no empty entries, no duplicates. */
export function parseHostPortList(name: string, raw: string): HostPort[] {
  const entries = raw.split(",").map((entry) => entry.trim());
  const seen = new Set<string>();
  return entries.map((entry, index) => {
    const at = `entry ${index + 1} of ${entries.length}`;
    if (entry === "") throw new ConfigError(`${name} must be a comma-separated list of host:port, got an empty ${at}`);
    const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(entry);
    if (!match) throw new ConfigError(`${name} must be a comma-separated list of host:port, got ${quote(entry)} (${at})`);
    const ipv6 = match[1];
    const host = ipv6 ?? match[2]!;
    const valid = ipv6 !== undefined ? isIPv6(ipv6) : /^[\d.]+$/.test(host) ? isIPv4(host) : HOST_NAME.test(host);
    if (!valid) throw new ConfigError(`${name} has an invalid host ${quote(host)} (${at})`);
    const port = Number(match[3]);
    if (port < 1 || port > 65535) throw new ConfigError(`${name} has port ${match[3]} out of 1-65535 (${at})`);
    const key = `${host.toLowerCase()}:${port}`;
    if (seen.has(key)) throw new ConfigError(`${name} lists ${quote(entry)} twice`);
    seen.add(key);
    return { host, port };
  });
}

function redisUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("REDIS_URL must be a redis:// or rediss:// URL");
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new ConfigError(`REDIS_URL must be a redis:// or rediss:// URL, got protocol "${url.protocol}"`);
  }
  // The client turns TLS on only for a lower-case "rediss://": "REDISS://" must not mean plain text.
  return url.protocol + raw.slice(raw.indexOf(":") + 1);
}


const TARGETS = ["REDIS_URL", "REDIS_CLUSTER_NODES", "REDIS_SENTINELS"] as const;

/** Reads the Redis target and its settings from `env`; throws ConfigError naming the bad setting. */
export function parseRedisTarget(env: Env = process.env): RedisTarget {
  const set = TARGETS.filter((name) => present(env, name) !== undefined);
  if (set.length > 1) throw new ConfigError(`set only one of REDIS_URL, REDIS_CLUSTER_NODES and REDIS_SENTINELS, got ${set.join(" and ")}`);
  const mode = set[0];

  // Settings that only mean something for some modes: refuse them elsewhere
  // rather than silently ignore them.
  const nodeAuth = ["REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_TLS"].filter((name) => present(env, name) !== undefined);
  const sentinelOnly = ["REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD"].filter((name) => present(env, name) !== undefined);
  if (mode !== "REDIS_SENTINELS" && sentinelOnly.length > 0) throw new ConfigError(`${sentinelOnly[0]} needs REDIS_SENTINELS`);
  if (mode === undefined && nodeAuth.length > 0) throw new ConfigError(`${nodeAuth[0]} needs REDIS_CLUSTER_NODES or REDIS_SENTINELS`);
  if (mode === "REDIS_URL" && nodeAuth.length > 0) {
    throw new ConfigError(`${nodeAuth[0]} is for REDIS_CLUSTER_NODES and REDIS_SENTINELS: with REDIS_URL, put credentials in the URL and use rediss:// for TLS`);
  }

  // The numbers are checked whatever the mode, so that a typo shows at once.
  const commandTimeoutMs = integer(env, "REDIS_COMMAND_TIMEOUT_MS", DEFAULT_COMMAND_TIMEOUT_MS, 10, 600_000, " ms");
  const waitReplicas = integer(env, "REDIS_WAIT_REPLICAS", 0, 0, 100);
  // WAIT 0 means "wait forever" to Redis: never allowed.
  const waitTimeoutMs = integer(env, "REDIS_WAIT_TIMEOUT_MS", DEFAULT_WAIT_TIMEOUT_MS, 1, 600_000, " ms");
  if (waitReplicas > 0 && waitTimeoutMs >= commandTimeoutMs) {
    throw new ConfigError(
      `REDIS_WAIT_TIMEOUT_MS (${waitTimeoutMs}) must be less than REDIS_COMMAND_TIMEOUT_MS (${commandTimeoutMs}), or a write would time out before its WAIT`,
    );
  }

  const caFile = present(env, "REDIS_TLS_CA_FILE");
  if (mode === undefined) {
    if (caFile) throw new ConfigError("REDIS_TLS_CA_FILE needs a Redis target (a rediss:// REDIS_URL, or REDIS_TLS=true)");
    return { mode: "memory" };
  }

  if (mode === "REDIS_URL") {
    const url = redisUrl(present(env, "REDIS_URL")!);
    if (caFile && !url.startsWith("rediss://")) throw new ConfigError("REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL");
    return { mode: "single", url, commandTimeoutMs, waitReplicas, waitTimeoutMs, tlsCaFile: caFile && pemFile("REDIS_TLS_CA_FILE", caFile) };
  }

  const tls = flag(env, "REDIS_TLS");
  if (caFile && !tls) throw new ConfigError("REDIS_TLS_CA_FILE needs REDIS_TLS=true");
  const username = present(env, "REDIS_USERNAME");
  const password = present(env, "REDIS_PASSWORD");
  if (username !== undefined && password === undefined) throw new ConfigError("REDIS_USERNAME needs REDIS_PASSWORD");
  const common = {
    commandTimeoutMs,
    waitReplicas,
    waitTimeoutMs,
    tlsCaFile: caFile && pemFile("REDIS_TLS_CA_FILE", caFile),
    username,
    password,
    tls,
  };

  if (mode === "REDIS_CLUSTER_NODES") {
    return { mode: "cluster", nodes: parseHostPortList("REDIS_CLUSTER_NODES", present(env, "REDIS_CLUSTER_NODES")!), ...common };
  }

  const sentinels = parseHostPortList("REDIS_SENTINELS", present(env, "REDIS_SENTINELS")!);
  const masterName = present(env, "REDIS_SENTINEL_MASTER");
  if (masterName === undefined) throw new ConfigError("REDIS_SENTINELS needs REDIS_SENTINEL_MASTER (the monitored master's name)");
  if (!/^[\x21-\x7e]{1,256}$/.test(masterName)) {
    throw new ConfigError(`REDIS_SENTINEL_MASTER must be a name of printable characters without spaces, got ${quote(masterName)}`);
  }
  const sentinelUsername = present(env, "REDIS_SENTINEL_USERNAME");
  const sentinelPassword = present(env, "REDIS_SENTINEL_PASSWORD");
  if (sentinelUsername !== undefined && sentinelPassword === undefined) throw new ConfigError("REDIS_SENTINEL_USERNAME needs REDIS_SENTINEL_PASSWORD");
  return { mode: "sentinel", sentinels, masterName, sentinelUsername, sentinelPassword, ...common };
}

/** For logs: where the store is, without credentials. */
export function describeRedisTarget(target: RedisTarget): string {
  switch (target.mode) {
    case "memory":
      return "memory";
    case "single": {
      try {
        const url = new URL(target.url);
        url.username = "";
        url.password = "";
        return `redis ${url.toString()}`;
      } catch {
        return "redis <unparseable url>";
      }
    }
    case "cluster":
      return `redis cluster ${target.nodes.map(formatHostPort).join(",")}${target.tls ? " (tls)" : ""}`;
    case "sentinel":
      return `redis sentinel ${target.masterName}@${target.sentinels.map(formatHostPort).join(",")}${target.tls ? " (tls)" : ""}`;
  }
}

export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
