/**
 * The composition root as a library: tests and main.ts own the lifecycle
 * through startServer()/stop().
 */
import { Server, ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import type { Redis } from "ioredis";
import { createDeliveryApp } from "./app/deliveryApp.js";
import type { Config } from "./config.js";
import { DeliveryServiceService } from "./gen/delivery/v1/delivery.js";
import { createDeliveryService } from "./grpc/deliveryService.js";
import { addReflection, loadDescriptorSet, REFLECTION_SERVICE_NAMES } from "./grpc/reflection/reflectionService.js";
import { createWatchHandler, serializeWatchResponse, watchEncoder } from "./grpc/watchDelivery.js";
import type { Logger } from "./logger.js";
import type { EventStore } from "./store/eventStore.js";
import { createMemoryEventStore } from "./store/memory/memoryEventStore.js";
import { createRedisKeys } from "./store/redis/keys.js";
import { connectRedis, createRedisConnection } from "./store/redis/redisConnection.js";
import { createRedisEventStore } from "./store/redis/redisEventStore.js";
import { createMemoryUpdateSource } from "./watch/memoryUpdateSource.js";
import { createRedisUpdateSource } from "./watch/redisUpdateSource.js";
import type { UpdateSource } from "./watch/updateSource.js";
import { createWatchHub, type WatchHub } from "./watch/watchHub.js";

export const SERVICE_NAME = "delivery.v1.DeliveryService";

export interface ServerOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Namespaces Redis keys and channels (tests). */
  readonly keyPrefix?: string;
  readonly safetyNetIntervalMs?: number;
}

export interface RunningServer {
  readonly port: number;
  readonly hub: WatchHub;
  readonly health: HealthImplementation;
  /** Idempotent. */
  stop(): Promise<void>;
}

interface Backend {
  readonly store: EventStore;
  readonly source: UpdateSource;
  readonly connections: readonly Redis[];
}

async function createBackend({ config, logger, keyPrefix }: ServerOptions): Promise<Backend> {
  if (!config.redisUrl) {
    logger.warn({}, "REDIS_URL is not set: using the in-memory store (one replica only, nothing is kept after exit)");
    const source = createMemoryUpdateSource();
    return { store: createMemoryEventStore({ onAppended: (record) => source.publish(record) }), source, connections: [] };
  }
  const commands = createRedisConnection(config.redisUrl, "delivery-service");
  const subscriber = createRedisConnection(config.redisUrl, "delivery-service:subscriber", { subscriber: true });
  for (const [name, connection] of [["commands", commands], ["subscriber", subscriber]] as const) {
    connection.on("error", (error: Error) => logger.warn({ err: error, connection: name }, "redis connection error"));
  }
  const keys = createRedisKeys(keyPrefix);
  const store = createRedisEventStore({ redis: commands, keyPrefix });
  const source = createRedisUpdateSource({ subscriber, keys, logger });
  try {
    await Promise.all([connectRedis(commands), connectRedis(subscriber)]);
  } catch (error) {
    logger.warn({ err: error }, "redis is not reachable yet; commands fail with UNAVAILABLE until it is");
  }
  return { store, source, connections: [commands, subscriber] };
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { config, logger } = options;
  const backend = await createBackend(options);
  const app = createDeliveryApp({ store: backend.store });
  const hub = createWatchHub({
    store: backend.store,
    source: backend.source,
    encoder: watchEncoder,
    logger,
    ...(options.safetyNetIntervalMs ? { safetyNetIntervalMs: options.safetyNetIntervalMs } : {}),
  });

  const server = new Server();
  const definition: ServiceDefinition = {
    ...DeliveryServiceService,
    watchDelivery: { ...DeliveryServiceService.watchDelivery, responseSerialize: serializeWatchResponse },
  };
  server.addService(definition, createDeliveryService({ app, logger, watchDelivery: createWatchHandler({ hub, logger }) }));
  const health = new HealthImplementation({ "": "SERVING", [SERVICE_NAME]: "SERVING" });
  health.addToServer(server);
  addReflection(server, loadDescriptorSet(), [SERVICE_NAME, "grpc.health.v1.Health", ...REFLECTION_SERVICE_NAMES]);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${config.host}:${config.port}`, ServerCredentials.createInsecure(), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    ),
  );
  logger.info({ host: config.host, port, store: config.redisUrl ? "redis" : "memory" }, "delivery service listening");

  let stopping: Promise<void> | undefined;
  return {
    port,
    hub,
    health,
    stop() {
      stopping ??= (async () => {
        health.setStatus("", "NOT_SERVING");
        health.setStatus(SERVICE_NAME, "NOT_SERVING");
        // tryShutdown never completes while streams are open: end the watches first.
        await hub.close();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 5_000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await backend.source.close();
        await backend.store.close();
        await Promise.all(backend.connections.map((c) => c.quit().catch(() => c.disconnect())));
      })();
      return stopping;
    },
  };
}
