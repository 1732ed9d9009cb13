/**
 * The composition root as a library: tests and main.ts own the lifecycle
 * through startServer()/stop().
 */
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server, ServerCredentials, type ServiceDefinition } from "@grpc/grpc-js";
import { createDeliveryApp } from "./app/deliveryApp.js";
import { createAuthenticator } from "./auth/index.js";
import { type Config, ConfigError, redisTargetOf } from "./config.js";
import { DeliveryServiceService } from "./gen/delivery/v1/delivery.js";
import { type AuthClock, type CallAuth, createCallAuth, systemClock } from "./grpc/callAuth.js";
import { createDeliveryService } from "./grpc/deliveryService.js";
import { guardService } from "./grpc/guard.js";
import { createHealth, type Health } from "./grpc/health.js";
import { instrumentService } from "./grpc/instrument.js";
import { loadDescriptorSet, REFLECTION_SERVICE_NAMES, reflectionServices } from "./grpc/reflection/reflectionService.js";
import { createStreamRegistry, type StreamRegistry } from "./grpc/streamRegistry.js";
import { createWatchHandler, watchEncoder } from "./grpc/watchDelivery.js";
import { createWatchDeliveriesHandler, feedEncoder } from "./grpc/watchDeliveries.js";
import { acceptingEncoded } from "./grpc/preEncoded.js";
import { createFeedHub, type FeedHub } from "./feed/feedHub.js";
import { createWatcherLimit } from "./grpc/watchLimit.js";
import type { Logger } from "./logger.js";
import { createMetrics, type Metrics } from "./metrics.js";
import type { EventStore } from "./store/eventStore.js";
import { createMemoryEventStore } from "./store/memory/memoryEventStore.js";
import { createRedisClients } from "./store/redis/redisClients.js";
import { describeRedisTarget } from "./store/redis/redisTarget.js";
import { createRedisEventStore, StoreLayoutError } from "./store/redis/redisEventStore.js";
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
  /** The clock of events and retention (tests inject one). */
  readonly now?: () => number;
  /** Checks credentials' expiry and ends streams whose credential expires (tests inject a clock they move). */
  readonly authClock?: AuthClock;
}

export interface RunningServer {
  readonly port: number;
  /** Set when METRICS_PORT is. */
  readonly metricsPort: number | undefined;
  readonly hub: WatchHub;
  /** WatchDeliveries. */
  readonly feed: FeedHub;
  readonly health: Health;
  readonly metrics: Metrics;
  /** Every open server stream; shutdown ends them with UNAVAILABLE (SHUTTING_DOWN). */
  readonly streams: StreamRegistry;
  /** Graceful: refuse new calls, end watches with UNAVAILABLE, let unary calls finish within the grace period. Idempotent. */
  stop(): Promise<void>;
}

interface Backend {
  readonly store: EventStore;
  readonly source: UpdateSource;
  /** Calls back with true when every connection is ready, false when one is lost. */
  onAvailability(listener: (available: boolean) => void): void;
  close(): Promise<void>;
}

async function createBackend({ config, logger, keyPrefix, now }: ServerOptions, metrics: Metrics): Promise<Backend> {
  const retention = { retainFinishedForMs: config.retainFinishedForMs, ...(now ? { now } : {}) };
  const target = redisTargetOf(config);
  if (target.mode === "memory") {
    logger.warn({}, "no Redis is configured: using the in-memory store (one replica only, nothing is kept after exit)");
    const source = createMemoryUpdateSource();
    return {
      store: createMemoryEventStore({ onAppended: (record, change) => source.publish(record, change), feedRetentionMs: config.feedRetentionMs, ...retention }),
      source,
      onAvailability: () => {},
      close: async () => {},
    };
  }
  const clients = createRedisClients(target, { name: "delivery-service", logger });
  for (const { name, client } of clients.all()) {
    client.on("error", (error: Error) => {
      metrics.redisErrors.inc({ connection: name });
      logger.warn({ err: error, connection: name }, "redis connection error");
    });
  }
  const store = createRedisEventStore({
    redis: clients.commands,
    keyPrefix,
    partitions: config.storePartitions,
    feedRetentionMs: config.feedRetentionMs,
    within: (operation) => clients.within(operation),
    ...(target.waitReplicas > 0 ? { waitForReplicas: (key: string) => clients.waitForReplicas(key) } : {}),
    ...retention,
  });
  const source = createRedisUpdateSource({ subscriptions: clients.subscriptions, keys: store.open, logger });
  try {
    await clients.connect();
    // A store of another layout stops the start here (StoreLayoutError names the migration).
    const keys = await store.open();
    logger.info({ partitions: keys.partitions, redis: describeRedisTarget(target) }, "storage layout 2");
  } catch (error) {
    if (error instanceof StoreLayoutError) {
      await clients.close();
      throw error;
    }
    logger.warn({ err: error }, "redis is not reachable yet; commands fail with UNAVAILABLE until it is");
  }
  return {
    store,
    source,
    onAvailability(listener) {
      clients.onAvailability(listener);
    },
    close: () => clients.close(),
  };
}

function credentialsFor(config: Config): ServerCredentials {
  if (!config.tls) return ServerCredentials.createInsecure();
  const { certFile, keyFile, clientCaFile } = config.tls;
  return ServerCredentials.createSsl(
    clientCaFile ? readFileSync(clientCaFile) : null,
    [{ cert_chain: readFileSync(certFile), private_key: readFileSync(keyFile) }],
    Boolean(clientCaFile),
  );
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The auth core for this server's life (it holds the JWKS keys); undefined when authentication is off. */
function createServerAuth({ config, logger, authClock = systemClock }: ServerOptions, metrics: Metrics): CallAuth | undefined {
  const auth = config.auth;
  if (!auth.enabled) {
    if (!isLoopback(config.host)) {
      logger.warn(
        { host: config.host },
        "authentication is off: anyone who reaches this port can call every method; set AUTH_JWKS_FILE (or AUTH_HMAC_SECRET_FILE) and AUTH_POLICY_FILE",
      );
    }
    return undefined;
  }
  const authenticator = createAuthenticator(auth, {
    now: () => authClock.now(),
    onJwksReload: (keys) => logger.info({ keys }, "AUTH_JWKS_FILE changed: its keys are in use"),
    onJwksReloadError: (error) => logger.warn({ err: error }, "AUTH_JWKS_FILE changed but cannot be used: the previous keys stay in use"),
  });
  const onRefused = (reason: string) => metrics.authDenied.inc({ reason });
  return createCallAuth({ config: auth, authenticator, clock: authClock, logger, onRefused });
}

async function startMetricsEndpoint(config: Config, metrics: Metrics, logger: Logger): Promise<HttpServer | undefined> {
  if (config.metricsPort === undefined) return undefined;
  const http = createHttpServer((request, response) => {
    if (request.url !== "/metrics") {
      response.writeHead(404).end("see /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (body) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(body),
      (error: unknown) => {
        logger.error({ err: error }, "metrics collection failed");
        response.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    http.once("error", reject);
    http.listen(config.metricsPort, config.host, () => resolve());
  });
  return http;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const { config, logger } = options;
  if (config.auth.enabled && config.auth.clientCertificates && !config.tls?.clientCaFile) {
    throw new ConfigError("AUTH_CLIENT_CERTIFICATES=true needs mutual TLS: set TLS_CLIENT_CA_FILE (with TLS_CERT_FILE and TLS_KEY_FILE)");
  }
  const metrics = createMetrics();
  const auth = createServerAuth(options, metrics);
  const backend = await createBackend(options, metrics);
  // Finished deliveries past their retention are deleted on read; this sweeps the ones nobody reads.
  const sweeper =
    config.retainFinishedForMs === undefined
      ? undefined
      : setInterval(
          () => backend.store.sweep().catch((error: unknown) => logger.warn({ err: error }, "retention sweep failed")),
          Math.min(Math.max(config.retainFinishedForMs / 10, 1_000), 60_000),
        );
  sweeper?.unref();
  const hub = createWatchHub({
    store: backend.store,
    source: backend.source,
    encoder: watchEncoder,
    logger,
    observer: { liveUpdate: () => metrics.pubsubMessages.inc(), repairedFromLog: (events) => metrics.gapsRepaired.inc(events) },
    ...(options.safetyNetIntervalMs ? { safetyNetIntervalMs: options.safetyNetIntervalMs } : {}),
  });
  const feedHub = createFeedHub({
    store: backend.store,
    source: backend.source,
    encoder: feedEncoder,
    logger,
    checkpointMs: config.watchCheckpointMs,
    ...(options.now ? { now: options.now } : {}),
    ...(options.safetyNetIntervalMs ? { safetyNetIntervalMs: options.safetyNetIntervalMs } : {}),
  });
  const app = createDeliveryApp({
    store: backend.store,
    onAppended: (record, change) => {
      metrics.eventsAppended.inc({ type: record.event.data.type });
      hub.appended(record);
      feedHub.appended(change);
    },
    ...(options.now ? { now: options.now } : {}),
  });


  const server = new Server({
    // Requests only: a response over a limit would tell the caller a recorded command failed.
    "grpc.max_receive_message_length": config.maxMessageBytes,
    "grpc.keepalive_time_ms": config.keepaliveTimeMs,
    "grpc.keepalive_timeout_ms": config.keepaliveTimeoutMs,
    // Clients may ping idle watch streams to keep them alive through load balancers.
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
    // No channelz service is served, so its bookkeeping only costs: per call a tracker of four
    // closures (kept as long as a watch is open) and a Date.now() per message sent or received.
    "grpc.enable_channelz": 0,
  });
  // Commands answer, and watches send, bytes encoded once (see preEncoded.ts); message objects are encoded as before.
  const definition: ServiceDefinition = Object.fromEntries(
    Object.entries(DeliveryServiceService as ServiceDefinition).map(([name, method]) => [name, acceptingEncoded(method)]),
  );
  const streams = createStreamRegistry(logger);
  const limitWatchers = createWatcherLimit(config.maxWatchers, logger);
  const watchDelivery = limitWatchers(createWatchHandler({ hub, logger, registry: streams }));
  metrics.watchersFrom(() => hub.watcherCount + feedHub.watcherCount);
  const watchDeliveries = limitWatchers(createWatchDeliveriesHandler({ hub: feedHub, logger, registry: streams }));
  const implementation = createDeliveryService({ app, logger, watchDelivery, watchDeliveries });
  const health = createHealth(["", SERVICE_NAME], logger);
  const mounts = [
    { definition, implementation, instrument: true },
    { definition: health.definition, implementation: health.implementation, instrument: false },
    ...reflectionServices(loadDescriptorSet(), [SERVICE_NAME, "grpc.health.v1.Health", ...REFLECTION_SERVICE_NAMES]).map(
      (mount) => ({ ...mount, instrument: false }),
    ),
  ];
  for (const mount of mounts) {
    // The guard checks credentials, answers undecodable requests and tracks streams; instrumentation (outermost) logs and counts.
    const guarded = guardService(mount.definition, mount.implementation, { registry: streams, logger, auth });
    const handlers = mount.instrument ? instrumentService(guarded.definition, guarded.implementation, { logger, metrics }) : guarded.implementation;
    server.addService(guarded.definition, handlers);
  }

  let stopping: Promise<void> | undefined;
  const setHealth = (serving: boolean) => health.setServing(serving && !stopping);
  backend.onAvailability((available) => {
    if (!stopping) logger.info({ available }, available ? "redis is reachable" : "redis is unreachable");
    setHealth(available);
  });

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${config.host}:${config.port}`, credentialsFor(config), (error, boundPort) =>
      error ? reject(error) : resolve(boundPort),
    ),
  );
  const metricsHttp = await startMetricsEndpoint(config, metrics, logger);
  const metricsPort = metricsHttp ? (metricsHttp.address() as AddressInfo).port : undefined;
  logger.info(
    {
      host: config.host,
      port,
      metricsPort,
      tls: Boolean(config.tls),
      store: config.redisUrl ? "redis" : "memory",
      auth: config.auth.enabled ? { jwt: config.auth.jwt?.keys.kind, clientCertificates: config.auth.clientCertificates, policy: config.auth.policy.name } : "off",
    },
    "delivery service listening",
  );

  return {
    port,
    metricsPort,
    hub,
    feed: feedHub,
    health,
    metrics,
    streams,
    stop() {
      stopping ??= (async () => {
        setHealth(false);
        // New calls are refused from here on; unary calls in flight finish.
        const drained = new Promise<boolean>((resolve) => server.tryShutdown(() => resolve(true)));
        // tryShutdown never completes while streams are open: end the watches
        // (UNAVAILABLE, so clients resume elsewhere), then every other stream
        // (health watches saw NOT_SERVING first).
        clearInterval(sweeper);
        await hub.close();
        await feedHub.close();
        streams.endAll();
        let timer: NodeJS.Timeout | undefined;
        const graceOver = new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), config.shutdownGraceMs);
        });
        const clean = await Promise.race([drained, graceOver]);
        clearTimeout(timer);
        if (!clean) {
          logger.warn({ graceMs: config.shutdownGraceMs }, "grace period over: forcing the remaining calls closed");
          server.forceShutdown();
        }
        await new Promise<void>((resolve) => (metricsHttp ? metricsHttp.close(() => resolve()) : resolve()));
        await backend.source.close();
        await backend.store.close();
        await backend.close();
      })();
      return stopping;
    },
  };
}
