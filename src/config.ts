import { type AuthConfig, parseAuthConfig } from "./auth/index.js";
import { ConfigError } from "./configError.js";
import { type Env, integer, pemFile, present } from "./settings.js";
import { DEFAULT_COMMAND_TIMEOUT_MS, DEFAULT_WAIT_TIMEOUT_MS, parseRedisTarget, type RedisTarget } from "./store/redis/redisTarget.js";

export { ConfigError };

/**
 * Configuration: one typed object, read from the environment once, validated
 * with a clear message, passed down. Every setting is listed in the README.
 */

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  /** Set: mutual TLS, clients must present a certificate signed by this CA. */
  readonly clientCaFile: string | undefined;
}

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Unset: the in-process store and bus (one replica, nothing kept). */
  readonly redisUrl: string | undefined;
  /** PEM CA that signed a rediss:// Redis's certificate (else Node's trusted CAs). */
  readonly redisTlsCaFile: string | undefined;
  /** Which Redis: REDIS_URL, REDIS_CLUSTER_NODES or REDIS_SENTINELS (exactly one), with timeouts and WAIT settings. */
  readonly redis: RedisTarget;
  readonly logLevel: (typeof LOG_LEVELS)[number];
  /** pretty: human-readable lines (development, a terminal); json: one JSON object per line. */
  readonly logFormat: "json" | "pretty";
  /** Unset: no metrics endpoint. */
  readonly metricsPort: number | undefined;
  readonly tls: TlsConfig | undefined;
  /** How long shutdown waits for in-flight calls before forcing the rest. */
  readonly shutdownGraceMs: number;
  /** Open WatchDelivery streams per process; RESOURCE_EXHAUSTED past it. */
  readonly maxWatchers: number;
  /** Largest request or response message, in bytes. */
  readonly maxMessageBytes: number;
  /** Server pings an idle connection this often, so load balancers keep it and dead clients are found. */
  readonly keepaliveTimeMs: number;
  /** A ping unanswered for this long closes the connection. */
  readonly keepaliveTimeoutMs: number;
  /** Partitions of a new Redis store (recorded at its first start; an existing store keeps its own). */
  readonly storePartitions: number;
  /** How long the change feed keeps its entries (WatchDeliveries resume tokens live as long). */
  readonly feedRetentionMs: number;
  /** Unset: finished deliveries are kept forever; else deleted this long after their terminal event. */
  readonly retainFinishedForMs: number | undefined;
  /** WatchDeliveries sends a checkpoint after this long without a message. */
  readonly watchCheckpointMs: number;
  /** Who may call what (AUTH_* settings, see auth/authConfig.ts); off unless a way to identify callers is set. */
  readonly auth: AuthConfig;
}




const DURATION_UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** A duration such as "30d", "12h", "90m", "45s" or "500ms", at least `minMs`. */
export function duration(env: Env, name: string, fallbackMs: number | undefined, minMs: number): number | undefined {
  const raw = present(env, name);
  if (raw === undefined) return fallbackMs;
  const match = /^(\d{1,9})(ms|s|m|h|d)$/.exec(raw);
  const ms = match ? Number(match[1]) * DURATION_UNITS[match[2] as keyof typeof DURATION_UNITS] : NaN;
  if (!(ms >= minMs)) throw new ConfigError(`${name} must be a duration such as 30d, 12h, 90m or 45s (at least ${minMs} ms), got "${raw}"`);
  return ms;
}

function port(env: Env, name: string, fallback: number): number {
  return integer(env, name, fallback, 0, 65535);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = present(env, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`${name} must be one of ${allowed.join(", ")}, got "${raw}"`);
  return raw as T;
}

function redisUrl(env: Env): string | undefined {
  const raw = present(env, "REDIS_URL");
  if (raw === undefined) return undefined;
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

function redisTlsCaFile(env: Env, url: string | undefined): string | undefined {
  const file = present(env, "REDIS_TLS_CA_FILE");
  if (file && !url?.startsWith("rediss://")) throw new ConfigError("REDIS_TLS_CA_FILE needs a rediss:// REDIS_URL");
  return pemFile("REDIS_TLS_CA_FILE", file);
}

function tls(env: Env): TlsConfig | undefined {
  const certFile = present(env, "TLS_CERT_FILE");
  const keyFile = present(env, "TLS_KEY_FILE");
  const clientCaFile = present(env, "TLS_CLIENT_CA_FILE");
  if (!certFile && !keyFile) {
    if (clientCaFile) throw new ConfigError("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
    return undefined;
  }
  if (!certFile || !keyFile) throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together");
  return {
    certFile: pemFile("TLS_CERT_FILE", certFile)!,
    keyFile: pemFile("TLS_KEY_FILE", keyFile)!,
    clientCaFile: pemFile("TLS_CLIENT_CA_FILE", clientCaFile),
  };
}

export function loadConfig(env: Env = process.env, stdoutIsTty = false): Config {
  const url = redisUrl(env);
  return {
    host: present(env, "HOST") ?? "0.0.0.0",
    port: port(env, "PORT", 50051),
    redisUrl: url,
    redisTlsCaFile: redisTlsCaFile(env, url),
    redis: parseRedisTarget(env),
    logLevel: oneOf(env, "LOG_LEVEL", LOG_LEVELS, "info"),
    logFormat: oneOf(env, "LOG_FORMAT", ["json", "pretty"] as const, stdoutIsTty && env.NODE_ENV !== "production" ? "pretty" : "json"),
    metricsPort: present(env, "METRICS_PORT") === undefined ? undefined : port(env, "METRICS_PORT", 0),
    tls: tls(env),
    shutdownGraceMs: integer(env, "SHUTDOWN_GRACE_MS", 10_000, 0, 600_000, " ms"),
    maxWatchers: integer(env, "MAX_WATCHERS", 10_000, 1, 1_000_000),
    maxMessageBytes: integer(env, "MAX_MESSAGE_BYTES", 4 * 1024 * 1024, 1024, 64 * 1024 * 1024, " bytes"),
    keepaliveTimeMs: integer(env, "KEEPALIVE_TIME_MS", 30_000, 1_000, 3_600_000, " ms"),
    keepaliveTimeoutMs: integer(env, "KEEPALIVE_TIMEOUT_MS", 10_000, 1_000, 600_000, " ms"),
    storePartitions: integer(env, "STORE_PARTITIONS", 16, 1, 1024),
    feedRetentionMs: duration(env, "FEED_RETENTION", 7 * 86_400_000, 60_000)!,
    retainFinishedForMs: duration(env, "RETAIN_FINISHED_FOR", undefined, 1_000),
    watchCheckpointMs: integer(env, "WATCH_CHECKPOINT_MS", 5_000, 10, 3_600_000, " ms"),
    auth: parseAuthConfig(env),
  };
}

/** Defaults for everything, for tests and embedding: override what matters. */
export function configWith(overrides: Partial<Config>): Config {
  return { ...loadConfig({}), ...overrides };
}

/**
 * The Redis to use: the configured target, or (tests and embedding that set
 * only redisUrl) a single Redis at redisUrl with the default timeouts.
 */
export function redisTargetOf(config: Config): RedisTarget {
  if (config.redis.mode !== "memory") return config.redis;
  if (!config.redisUrl) return config.redis;
  return {
    mode: "single",
    url: config.redisUrl,
    commandTimeoutMs: DEFAULT_COMMAND_TIMEOUT_MS,
    waitReplicas: 0,
    waitTimeoutMs: DEFAULT_WAIT_TIMEOUT_MS,
    tlsCaFile: config.redisTlsCaFile,
  };
}
