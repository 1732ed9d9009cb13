import { Redis } from "ioredis";

/**
 * A Redis connection that fails fast while Redis is unreachable: no offline
 * queue (commands error at once instead of piling up), a bounded connect and
 * command time, and reconnection forever in the background.
 */
export function createRedisConnection(
  url: string,
  connectionName: string,
  options: { subscriber?: boolean; tlsCa?: Buffer } = {},
): Redis {
  return new Redis(url, {
    connectionName,
    // The update source re-subscribes itself, after which watchers catch up.
    autoResubscribe: !options.subscriber,
    // Concurrent commands share socket writes; at high concurrency the write
    // syscall per command was the largest single cost.
    enableAutoPipelining: !options.subscriber,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: 2_000,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 1_000),
    lazyConnect: true,
    // rediss:// turns TLS on; a private CA is added here when configured.
    ...(options.tlsCa ? { tls: { ca: options.tlsCa } } : {}),
  });
}

/** Connects, or rejects after the first failed attempt (the connection keeps retrying). */
export async function connectRedis(redis: Redis): Promise<void> {
  if (redis.status === "ready") return;
  await redis.connect();
}
