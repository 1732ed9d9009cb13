/**
 * The Redis clients of one process, for any RedisTarget: a command client
 * and a subscriber client (a Redis each for a URL or Sentinels, a Cluster
 * each for a Redis Cluster), sharded Pub/Sub on the subscriber, availability
 * for health, a per-call deadline, and WAIT on the node that owns a key.
 *
 * Every client fails fast while Redis is unreachable (no offline queue: a
 * command errors at once instead of piling up), reconnects forever in the
 * background, and is created lazily: connect() starts it.
 *
 * Two releases of ioredis, one per role. Commands use ioredis 5: its reply
 * parser (redis-parser) costs less per reply than the RESP3 decoder of
 * ioredis 6, and every command, read and catch-up parses replies (a command
 * at 64 concurrent callers: 110.6 against 125.6 µs of server CPU, BENCHMARKS.md).
 * The subscriber uses ioredis 6, which handles what sharded Pub/Sub meets when
 * a slot moves: ioredis 5 leaves an SSUBSCRIBE answered with MOVED unsettled,
 * and takes an unsubscription pushed by the server for the reply to whatever
 * command is queued (see shardedSubscriptions.ts for what we rely on).
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";
import { Cluster as SubscriberCluster, Redis as SubscriberRedis } from "ioredis6";
import type { Logger } from "../../logger.js";
import { CommandDeadlineError, withDeadline } from "./deadline.js";
import type { ClusterTarget, RedisServerTarget, SentinelTarget, SingleTarget } from "./redisTarget.js";
import { createShardedSubscriptions, type ShardedSubscriptions, type SubscriptionsLost } from "./shardedSubscriptions.js";
import { hashSlot } from "./slots.js";
import { createWriteBatching } from "./writeBatching.js";

/** The command client (ioredis 5). */
export type RedisClient = Redis | Cluster;
/** The subscriber client (ioredis 6). */
export type SubscriberClient = SubscriberRedis | SubscriberCluster;

/**
 * What a client of either kind is used for here and by the owner (status,
 * events, connect, disconnect); listeners typed as EventEmitter types them.
 */
export interface Connection {
  readonly status: string;
  on(event: string, listener: (...args: any[]) => void): unknown;
  once(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
  connect(): Promise<void>;
  disconnect(): void;
}

export interface NamedConnection {
  readonly name: "commands" | "subscriber";
  readonly client: Connection;
}

export interface RedisClientsOptions {
  /** Client name (CLIENT SETNAME): the subscriber is "<name>:subscriber". */
  readonly name: string;
  readonly logger?: Logger | undefined;
  /** PEM CA for TLS; default: read from target.tlsCaFile when set. */
  readonly tlsCa?: Buffer | undefined;
  /** Cluster only: how often the slot map is re-read (topology changes the clients were not told of). Default 5000 ms. */
  readonly slotsRefreshIntervalMs?: number | undefined;
}

export interface RedisClients {
  readonly target: RedisServerTarget;
  /** Commands: no offline queue. Make every call through `within`: it gives the call its deadline and batches its write. */
  readonly commands: RedisClient;
  /** The subscriber client; use `subscriptions` rather than its SSUBSCRIBE directly. */
  readonly subscriber: SubscriberClient;
  /** SSUBSCRIBE with re-subscription and loss reporting (see shardedSubscriptions.ts). */
  readonly subscriptions: ShardedSubscriptions;
  /** Runs a call with the target's deadline (REDIS_COMMAND_TIMEOUT_MS from arrival): see deadline.ts. */
  within<T>(operation: () => Promise<T>): Promise<T>;
  /** The connections, for error logging / metrics listeners. */
  all(): readonly NamedConnection[];
  /** Starts connecting; resolves when every client is ready, rejects on the first failure or after the connect timeout (they keep retrying). */
  connect(): Promise<void>;
  /** Commands and subscriber both ready (for a Cluster: status "ready"). */
  readonly available: boolean;
  /** Called now with the current availability, then on every change. Returns the removal. */
  onAvailability(listener: (available: boolean) => void): () => void;
  /** = subscriptions.onSubscriptionsLost: messages may have been lost, every wanted channel is subscribed again; catch up now. */
  onSubscriptionsLost(listener: (lost: SubscriptionsLost) => void): () => void;
  /**
   * WAIT for target.waitReplicas replicas (REDIS_WAIT_REPLICAS) on the node
   * owning `key`, at most target.waitTimeoutMs; call after a write to `key`,
   * on the same client. Resolves with the count (0 when none are asked for);
   * fewer than asked: ReplicasNotAcknowledged.
   */
  waitForReplicas(key: string): Promise<number>;
  close(): Promise<void>;
}

/** Fewer replicas than asked acknowledged a write within the WAIT timeout. The write is applied on the primary. */
export class ReplicasNotAcknowledged extends Error {
  override readonly name = "ReplicasNotAcknowledged";
  constructor(
    readonly wanted: number,
    readonly acknowledged: number,
    readonly timeoutMs: number,
  ) {
    super(`only ${acknowledged} of ${wanted} replicas acknowledged the write within ${timeoutMs} ms`);
  }
}

/**
 * WAIT `replicas` `timeoutMs` on the connection that wrote `key`: for a
 * Cluster, the connection to the primary owning the key's slot (WAIT has no
 * key, so Cluster would send it to any node, and WAIT only counts the writes
 * of the connection it is sent on); for a Redis, that Redis. Resolves with the
 * number of replicas that acknowledged; fewer than `replicas`:
 * ReplicasNotAcknowledged. `replicas` 0: resolves 0 without a command.
 */
export async function waitForReplicas(client: RedisClient, key: string, replicas: number, timeoutMs: number): Promise<number> {
  if (replicas <= 0) return 0;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError(`WAIT needs a positive timeout (0 waits forever), got ${timeoutMs}`);
  const node = isCluster(client) ? primaryConnectionFor(client, key) : client;
  const acknowledged = await node.wait(replicas, timeoutMs);
  if (acknowledged < replicas) throw new ReplicasNotAcknowledged(replicas, acknowledged, timeoutMs);
  return acknowledged;
}

function isCluster(client: RedisClient): client is Cluster;
function isCluster(client: SubscriberClient): client is SubscriberCluster;
function isCluster(client: RedisClient | SubscriberClient): boolean {
  return "isCluster" in client && client.isCluster === true;
}

/** The Cluster's connection to the primary of `key`'s slot, as of its slot map (the one commands for the key use). */
export function primaryConnectionFor(cluster: Cluster, key: string): Redis {
  const slot = hashSlot(key);
  const owner = cluster.slots[slot]?.[0];
  if (owner === undefined) throw new Error(`no node known for slot ${slot} (cluster ${cluster.status})`);
  // Node keys are "host:port" (cluster/util.js getNodeKey).
  const node = cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === owner);
  if (!node) throw new Error(`no connection to ${owner}, the primary of slot ${slot}`);
  return node;
}

function retryDelay(times: number): number {
  return Math.min(50 * 2 ** times, 1_000);
}

/**
 * Options every data-node connection shares, by role: ioredis' own
 * commandTimeout counts from a command's write.
 * - "subscriber": the deadline.
 * - "commands" (a Redis, direct or through Sentinels): none. Every call goes
 *   through `within`, whose deadline counts from the call; the second timer
 *   per command cost CPU (bench/appPath.mjs, three alternating runs: reads
 *   6.6 -> 5.7 µs per call, commands 14.8 -> 14.3). Its one other use, failing
 *   a ready check a frozen Redis never answers, is replaceStalledConnection()'s.
 * - "cluster commands": a backstop at twice the deadline (the Cluster's node
 *   connections and their ready checks are its own). The command is written
 *   as the call is made (writeBatching.ts), so a timer of the deadline's
 *   length would fire with `within`'s and win the race, and the Cluster's
 *   slot refresh on a missed deadline depends on `within`'s error.
 */
type Role = "subscriber" | "commands" | "cluster commands";

function connectionOptions(target: RedisServerTarget, connectionName: string, role: Role, tls: ConnectionOptions | undefined) {
  const commandTimeout = role === "subscriber" ? target.commandTimeoutMs : role === "cluster commands" ? 2 * target.commandTimeoutMs : undefined;
  return {
    connectionName,
    connectTimeout: Math.max(target.commandTimeoutMs, 1_000),
    ...(commandTimeout !== undefined ? { commandTimeout } : {}),
    ...(tls ? { tls } : {}),
  } satisfies RedisOptions;
}

/**
 * ioredis sends a ready check (INFO) once the socket connects, and with no
 * commandTimeout it would wait for the reply as long as a frozen Redis does
 * (a stopped process still completes the TCP handshake). A connection not
 * ready within `timeoutMs` of connecting is replaced, as a timed-out ready
 * check would replace it.
 */
function replaceStalledConnection(client: Redis, timeoutMs: number): void {
  let timer: NodeJS.Timeout | undefined;
  const clear = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  client.on("connect", () => {
    clear();
    timer = setTimeout(() => {
      timer = undefined;
      if (client.status === "connect") client.disconnect(true);
    }, timeoutMs);
    timer.unref();
  });
  for (const event of ["ready", "close", "end"]) client.on(event, clear);
}

function tlsOptions(target: RedisServerTarget, ca: Buffer | undefined): ConnectionOptions | undefined {
  if (target.mode === "single") return ca ? { ca } : undefined; // rediss:// turns TLS on itself
  if (!target.tls) return undefined;
  return ca ? { ca } : {};
}

/* The option builders' results suit the clients of either release: no annotation, so their own types. */
function singleOptions(target: SingleTarget, name: string, subscriber: boolean, tls: ConnectionOptions | undefined) {
  return {
    ...connectionOptions(target, name, subscriber ? "subscriber" : "commands", tls),
    // Re-subscription belongs to shardedSubscriptions.ts.
    autoResubscribe: false,
    // Concurrent commands share socket writes through writeBatching.ts instead.
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: retryDelay,
    lazyConnect: true,
  } satisfies RedisOptions;
}

function sentinelOptions(target: SentinelTarget, name: string, subscriber: boolean, tls: ConnectionOptions | undefined) {
  return {
    ...connectionOptions(target, name, subscriber ? "subscriber" : "commands", tls),
    sentinels: target.sentinels.map(({ host, port }) => ({ host, port })),
    name: target.masterName,
    role: "master",
    // Reconnect as soon as a Sentinel announces +switch-master, not when the old primary is found gone.
    failoverDetector: true,
    sentinelCommandTimeout: target.commandTimeoutMs,
    sentinelRetryStrategy: (times: number) => Math.min(100 * times, 1_000),
    ...(target.sentinelUsername !== undefined ? { sentinelUsername: target.sentinelUsername } : {}),
    ...(target.sentinelPassword !== undefined ? { sentinelPassword: target.sentinelPassword } : {}),
    ...(target.username !== undefined ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(tls ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
    autoResubscribe: false,
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: retryDelay,
    lazyConnect: true,
  } satisfies RedisOptions;
}

function clusterOptions(target: ClusterTarget, name: string, subscriber: boolean, tls: ConnectionOptions | undefined, slotsRefreshIntervalMs: number) {
  return {
    // Commands fail at once while the Cluster is not ready. Start-up needs no
    // offline queue: the slot map is read over a duplicate connection with its
    // own queue (cluster/index.js:818-825), and the ready check's CLUSTER INFO
    // may go out before "ready" (:497) to a node connection still in "wait"
    // (:573-579), which always queues (cluster/ConnectionPool.js:55-68).
    enableOfflineQueue: false,
    enableReadyCheck: true,
    scaleReads: "master",
    // Topology changes nobody told us about (a MOVED reply refreshes at once).
    slotsRefreshInterval: slotsRefreshIntervalMs,
    slotsRefreshTimeout: Math.min(target.commandTimeoutMs, 1_000),
    enableAutoPipelining: false,
    shardedSubscribers: subscriber,
    // Retry forever: a number from this keeps the Cluster reconnecting (cluster/index.js:747-773).
    clusterRetryStrategy: (times: number) => Math.min(100 * times, 1_000),
    lazyConnect: true,
    redisOptions: {
      ...connectionOptions(target, name, subscriber ? "subscriber" : "cluster commands", tls),
      ...(target.username !== undefined ? { username: target.username } : {}),
      ...(target.password !== undefined ? { password: target.password } : {}),
      maxRetriesPerRequest: 1,
    },
    // With TLS, connect by the name given (certificates name hosts, not addresses).
    ...(tls ? { dnsLookup: (address: string, callback: (error: Error | null, address: string) => void) => callback(null, address) } : {}),
  } satisfies ClusterOptions;
}

/** Resolves once `client` is ready; rejects on its first error or after `timeoutMs`. */
function readyWithin(client: Connection, timeoutMs: number): Promise<void> {
  if (client.status === "ready") return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      client.off("ready", onReady);
      client.off("error", onError);
      if (error) reject(error);
      else resolve();
    };
    const onReady = () => done();
    const onError = (error: Error) => done(error);
    const timer = setTimeout(() => done(new Error(`redis not ready within ${timeoutMs} ms (status ${client.status})`)), timeoutMs);
    timer.unref();
    client.on("ready", onReady);
    client.on("error", onError);
    if (client.status === "wait") {
      client.connect().catch((error: Error) => done(error));
    }
  });
}

/** Resolves once `client` has ended (after disconnect()), or after `timeoutMs`. */
function endedWithin(client: Connection, timeoutMs: number): Promise<void> {
  if (client.status === "end") return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    client.once("end", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export function createRedisClients(target: RedisServerTarget, options: RedisClientsOptions): RedisClients {
  const { name, logger } = options;
  const ca = options.tlsCa ?? (target.tlsCaFile ? readFileSync(target.tlsCaFile) : undefined);
  const tls = tlsOptions(target, ca);
  const subscriberName = `${name}:subscriber`;
  const slotsRefreshIntervalMs = options.slotsRefreshIntervalMs ?? 5_000;

  let commands: RedisClient;
  let subscriber: SubscriberClient;
  switch (target.mode) {
    case "single":
      commands = new Redis(target.url, singleOptions(target, name, false, tls));
      subscriber = new SubscriberRedis(target.url, singleOptions(target, subscriberName, true, tls));
      break;
    case "sentinel":
      commands = new Redis(sentinelOptions(target, name, false, tls));
      subscriber = new SubscriberRedis(sentinelOptions(target, subscriberName, true, tls));
      break;
    case "cluster": {
      const nodes = target.nodes.map(({ host, port }) => ({ host, port }));
      commands = new Cluster(nodes, clusterOptions(target, name, false, tls, slotsRefreshIntervalMs));
      subscriber = new SubscriberCluster(nodes, clusterOptions(target, subscriberName, true, tls, slotsRefreshIntervalMs));
      break;
    }
    default:
      throw new Error(`no Redis clients for target mode ${(target as { mode: string }).mode}`);
  }
  if (!isCluster(commands)) replaceStalledConnection(commands, target.commandTimeoutMs);

  const connections: NamedConnection[] = [
    { name: "commands", client: commands },
    { name: "subscriber", client: subscriber },
  ];
  // An EventEmitter throws an "error" nobody listens to (a Cluster emits
  // them plainly): always listen. The owner adds its own logging / metrics.
  for (const { name: connection, client } of connections) {
    client.on("error", (error: Error) => logger?.debug({ err: error, connection }, "redis client error"));
  }
  if (target.mode === "cluster") {
    for (const { name: connection, client } of connections) {
      client.on("node error", (error: Error, node: string) => logger?.debug({ err: error, connection, node }, "redis cluster node error"));
    }
  }

  const subscriptions = createShardedSubscriptions(subscriber, { commandTimeoutMs: target.commandTimeoutMs, logger });

  // Availability: both clients ready.
  const availabilityListeners = new Set<(available: boolean) => void>();
  const isAvailable = () => commands.status === "ready" && subscriber.status === "ready";
  let reported = isAvailable();
  const report = () => {
    const now = isAvailable();
    if (now === reported) return;
    reported = now;
    for (const listener of [...availabilityListeners]) listener(now);
  };
  const STATUS_EVENTS = ["ready", "close", "end", "reconnecting", "connecting", "connect"];
  for (const { client } of connections) for (const event of STATUS_EVENTS) client.on(event, report);

  const withinDeadline = withDeadline(target.commandTimeoutMs);
  // Every call goes through `within`: the calls of one turn share a socket write per node.
  const batch = createWriteBatching(() => (isCluster(commands) ? commands.nodes("master") : [commands]));
  const deadline = <T>(operation: () => Promise<T>): Promise<T> => {
    batch();
    return withinDeadline(operation);
  };
  let within = deadline;
  if (isCluster(commands) && isCluster(subscriber)) {
    const commandCluster = commands;
    const subscriberCluster = subscriber;
    // A frozen primary (SIGSTOP, a hung host) sends no MOVED and closes no
    // connection: the slot map would stay stale until slotsRefreshInterval
    // even once a replica took over. A missed deadline refreshes it now
    // (refreshes are coalesced).
    within = <T>(operation: () => Promise<T>) =>
      deadline(operation).catch((error: unknown) => {
        if (error instanceof CommandDeadlineError && commandCluster.status === "ready") commandCluster.refreshSlotsCache();
        throw error;
      });
    // The two Clusters keep separate slot maps: a topology change one of them
    // found is news for the other (the subscriber's silent connection to a
    // frozen primary would otherwise wait for its own periodic refresh).
    for (const [from, to] of [
      [commandCluster, subscriberCluster],
      [subscriberCluster, commandCluster],
    ] as const) {
      for (const event of ["+node", "-node"]) {
        from.on(event, () => {
          if (to.status === "ready") to.refreshSlotsCache();
        });
      }
    }
  }
  let closing: Promise<void> | undefined;

  return {
    target,
    commands,
    subscriber,
    subscriptions,
    within,
    all: () => connections,
    async connect() {
      const timeoutMs = Math.max(2 * target.commandTimeoutMs, 5_000);
      await Promise.all(connections.map(({ client }) => readyWithin(client, timeoutMs)));
    },
    get available() {
      return isAvailable();
    },
    onAvailability(listener) {
      report(); // earlier listeners hear of a change first
      availabilityListeners.add(listener);
      listener(reported);
      return () => availabilityListeners.delete(listener);
    },
    onSubscriptionsLost: (listener) => subscriptions.onSubscriptionsLost(listener),
    waitForReplicas: (key) => waitForReplicas(commands, key, target.waitReplicas, target.waitTimeoutMs),
    close() {
      closing ??= (async () => {
        subscriptions.close();
        availabilityListeners.clear();
        for (const { client } of connections) client.disconnect();
        await Promise.all(connections.map(({ client }) => endedWithin(client, 2_000)));
      })();
      return closing;
    },
  };
}
