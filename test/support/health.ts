/**
 * A grpc.health.v1.Health client built from the proto that grpc-health-check
 * ships (what a load balancer or probe would use), with Check as a promise and
 * Watch as a recorder.
 *
 *   const health = healthClient(service.address);
 *   expect(await health.check("")).toBe("SERVING");
 *   const statuses = health.watch("delivery.v1.DeliveryService");
 *   await statuses.until("NOT_SERVING");
 *   statuses.cancel();
 *   health.close();
 */
import {
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  type ServiceError,
  type StatusObject,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";

/** grpc.health.v1.HealthCheckResponse.ServingStatus, by name. */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** What a Health/Watch stream has sent so far. */
export interface HealthWatch {
  /** Every status received, in order (repeats included). */
  readonly statuses: ServingStatus[];
  /** Resolves once `wanted` has been received (now or later); rejects after `timeoutMs`. */
  until(wanted: ServingStatus, timeoutMs?: number): Promise<void>;
  /** The final status of the stream. */
  readonly ended: Promise<StatusObject>;
  cancel(): void;
}

/** A grpc.health.v1.Health client on its own channel. */
export interface HealthClient {
  /** Health/Check: the serving status of `service` ("" for the server as a whole); rejects with the ServiceError. */
  check(service: string, deadlineMs?: number): Promise<ServingStatus>;
  /** Health/Watch: records every status the server sends for `service`. */
  watch(service: string): HealthWatch;
  close(): void;
}

/** The generated client, as loaded from the proto (methods as in the service definition). */
interface RawHealthClient extends Client {
  check(
    request: { service: string },
    options: { deadline: number },
    callback: (error: ServiceError | null, response: { status: ServingStatus }) => void,
  ): void;
  watch(request: { service: string }): ClientReadableStream<{ status: ServingStatus }>;
}

const healthPackage = loadPackageDefinition(
  loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as {
  grpc: { health: { v1: { Health: new (address: string, creds: ChannelCredentials, options?: object) => RawHealthClient } } };
};

/** A health client for `address` (plaintext unless `creds` say otherwise), on a channel of its own. */
export function healthClient(address: string, creds: ChannelCredentials = credentials.createInsecure()): HealthClient {
  const client = new healthPackage.grpc.health.v1.Health(address, creds, { "grpc.use_local_subchannel_pool": 1 });
  return {
    check: (service, deadlineMs = 5_000) =>
      new Promise((resolve, reject) =>
        client.check({ service }, { deadline: Date.now() + deadlineMs }, (error, response) =>
          error ? reject(error) : resolve(response.status),
        ),
      ),
    watch: (service) => recordHealthWatch(client.watch({ service })),
    close: () => client.close(),
  };
}

function recordHealthWatch(stream: ClientReadableStream<{ status: ServingStatus }>): HealthWatch {
  const statuses: ServingStatus[] = [];
  const waiters: { wanted: ServingStatus; resolve: () => void }[] = [];
  stream.on("data", (message: { status: ServingStatus }) => {
    statuses.push(message.status);
    for (const waiter of waiters.filter((w) => w.wanted === message.status)) waiter.resolve();
  });
  // Errors also arrive as 'status'; this listener keeps them from being thrown.
  stream.on("error", () => {});
  const ended = new Promise<StatusObject>((resolve) => stream.on("status", resolve));
  return {
    statuses,
    until(wanted, timeoutMs = 5_000) {
      if (statuses.includes(wanted)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`health watch did not report ${wanted} within ${timeoutMs} ms (got ${statuses.join(", ")})`)),
          timeoutMs,
        );
        waiters.push({ wanted, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
    ended,
    cancel: () => stream.cancel(),
  };
}

/** Consecutive repeats removed: the server re-sends a status whenever a Redis connection reports in. */
export function transitions<T>(values: readonly T[]): T[] {
  return values.filter((value, i) => i === 0 || values[i - 1] !== value);
}
