import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus instruments, on a registry of their own (one per server, so
 * several servers in one process, as in tests, do not collide).
 */
export interface Metrics {
  readonly registry: Registry;
  readonly rpcs: Counter<"method" | "code">;
  readonly rpcSeconds: Histogram<"method">;
  readonly eventsAppended: Counter<"type">;
  readonly pubsubMessages: Counter;
  readonly gapsRepaired: Counter;
  readonly redisErrors: Counter<"connection">;
  /** Calls refused UNAUTHENTICATED or PERMISSION_DENIED, by the auth core's reason. */
  readonly authDenied: Counter<"reason">;
  /** Reads the current number of open watchers at scrape time. */
  watchersFrom(read: () => number): void;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let readWatchers = () => 0;
  new Gauge({
    name: "delivery_watchers",
    help: "Open WatchDelivery streams in this process",
    registers: [registry],
    collect() {
      this.set(readWatchers());
    },
  });
  return {
    registry,
    rpcs: new Counter({
      name: "delivery_rpcs_total",
      help: "Finished RPCs by method and gRPC status code",
      labelNames: ["method", "code"] as const,
      registers: [registry],
    }),
    rpcSeconds: new Histogram({
      name: "delivery_rpc_duration_seconds",
      help: "RPC duration by method (for WatchDelivery: the life of the stream)",
      labelNames: ["method"] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    eventsAppended: new Counter({
      name: "delivery_events_appended_total",
      help: "Events appended to delivery logs, by event type",
      labelNames: ["type"] as const,
      registers: [registry],
    }),
    pubsubMessages: new Counter({
      name: "delivery_pubsub_messages_total",
      help: "Updates received from Pub/Sub (or the in-process bus) for watched deliveries",
      registers: [registry],
    }),
    gapsRepaired: new Counter({
      name: "delivery_watch_gaps_repaired_total",
      help: "Events sent to watchers from the log instead of Pub/Sub (lost, late or skipped while slow)",
      registers: [registry],
    }),
    redisErrors: new Counter({
      name: "delivery_redis_errors_total",
      help: "Redis connection errors, by connection",
      labelNames: ["connection"] as const,
      registers: [registry],
    }),
    authDenied: new Counter({
      name: "delivery_auth_denied_total",
      help: "Calls refused by authentication (UNAUTHENTICATED) or the policy (PERMISSION_DENIED), by reason",
      labelNames: ["reason"] as const,
      registers: [registry],
    }),
    watchersFrom(read) {
      readWatchers = read;
    },
  };
}
