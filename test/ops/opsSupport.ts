/**
 * Helpers for the operations tests (test/ops/): polling with a deadline, a
 * recorder around a WatchDelivery stream, a grpc.health.v1 client, and a
 * Prometheus text-format reader. Nothing here sleeps as synchronisation.
 */
import {
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceError,
  status,
  type StatusObject,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import {
  CreateDeliveryRequest,
  type CreateDeliveryResponse,
  type DeliveryServiceClient,
  GetDeliveryRequest,
  type GetDeliveryResponse,
  WatchDeliveryRequest,
  type WatchDeliveryResponse,
} from "../../src/gen/delivery/v1/delivery.js";

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/**
 * Re-evaluates `probe` every `intervalMs` until it returns something other
 * than undefined/false, or throws once `timeoutMs` is over (with `what` and
 * the last value or error seen).
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  { timeoutMs = 5_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${String(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** `promise`, or an error naming `what` once `timeoutMs` is over. */
export async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The error of a call that must fail. */
export async function rejectionOf(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** The status name of a gRPC error (readable in assertion diffs). */
export function codeName(error: { code?: number } | undefined): string {
  return error?.code === undefined ? "no code" : (status[error.code] ?? String(error.code));
}

// ---------------------------------------------------------------------------
// Calls built from generated messages (the generated encoder needs every field)
// ---------------------------------------------------------------------------

export function createDelivery(
  client: DeliveryServiceClient,
  request: Partial<CreateDeliveryRequest>,
  deadlineMs = 5_000,
): Promise<CreateDeliveryResponse> {
  return new Promise((resolve, reject) =>
    client.createDelivery(CreateDeliveryRequest.fromPartial(request), new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

export function getDelivery(client: DeliveryServiceClient, deliveryId: string, deadlineMs = 5_000): Promise<GetDeliveryResponse> {
  return new Promise((resolve, reject) =>
    client.getDelivery(GetDeliveryRequest.fromPartial({ deliveryId }), new Metadata(), { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

// ---------------------------------------------------------------------------
// WatchDelivery
// ---------------------------------------------------------------------------

export interface WatchRecorder {
  readonly stream: ClientReadableStream<WatchDeliveryResponse>;
  readonly messages: WatchDeliveryResponse[];
  /** Resolves with the first message (the stream is open and registered server side). */
  readonly first: Promise<WatchDeliveryResponse>;
  /** Resolves with the final status. */
  readonly ended: Promise<StatusObject>;
  cancel(): void;
}

export function watch(client: DeliveryServiceClient, deliveryId: string, afterVersion?: bigint): WatchRecorder {
  const stream = client.watchDelivery(WatchDeliveryRequest.fromPartial({ deliveryId, afterVersion }));
  const messages: WatchDeliveryResponse[] = [];
  let resolveFirst!: (message: WatchDeliveryResponse) => void;
  let rejectFirst!: (error: Error) => void;
  const first = new Promise<WatchDeliveryResponse>((resolve, reject) => {
    resolveFirst = resolve;
    rejectFirst = reject;
  });
  // Callers that only look at `ended` must not see an unhandled rejection here.
  first.catch(() => {});
  stream.on("data", (message: WatchDeliveryResponse) => {
    messages.push(message);
    if (messages.length === 1) resolveFirst(message);
  });
  // Errors also arrive as 'status'; this listener keeps them from being thrown.
  stream.on("error", () => {});
  const ended = new Promise<StatusObject>((resolve) => {
    stream.on("status", (final: StatusObject) => {
      if (messages.length === 0) rejectFirst(Object.assign(new Error(`watch ended: ${status[final.code]} ${final.details}`), final));
      resolve(final);
    });
  });
  return { stream, messages, first, ended, cancel: () => stream.cancel() };
}

// ---------------------------------------------------------------------------
// grpc.health.v1.Health
// ---------------------------------------------------------------------------

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

export interface HealthClient extends Client {
  check(
    request: { service: string },
    options: { deadline: number },
    callback: (error: ServiceError | null, response: { status: ServingStatus }) => void,
  ): void;
  watch(request: { service: string }): ClientReadableStream<{ status: ServingStatus }>;
}

const healthPackage = loadPackageDefinition(
  loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as { grpc: { health: { v1: { Health: new (address: string, creds: ChannelCredentials, options?: object) => HealthClient } } } };

export function healthClient(address: string, creds: ChannelCredentials = credentials.createInsecure()): HealthClient {
  return new healthPackage.grpc.health.v1.Health(address, creds, { "grpc.use_local_subchannel_pool": 1 });
}

export function checkHealth(client: HealthClient, service: string, deadlineMs = 2_000): Promise<ServingStatus> {
  return new Promise((resolve, reject) =>
    client.check({ service }, { deadline: Date.now() + deadlineMs }, (error, response) =>
      error ? reject(error) : resolve(response.status),
    ),
  );
}

/** Consecutive repeats removed: the server re-sends a status whenever a Redis connection reports in. */
export function transitions<T>(values: readonly T[]): T[] {
  return values.filter((value, i) => i === 0 || values[i - 1] !== value);
}

export interface HealthWatch {
  readonly statuses: ServingStatus[];
  /** Resolves once `wanted` has been received (now or later). */
  until(wanted: ServingStatus, timeoutMs?: number): Promise<void>;
  readonly ended: Promise<StatusObject>;
  cancel(): void;
}

export function watchHealth(client: HealthClient, service: string): HealthWatch {
  const stream = client.watch({ service });
  const statuses: ServingStatus[] = [];
  const waiters: { wanted: ServingStatus; resolve: () => void }[] = [];
  stream.on("data", (message: { status: ServingStatus }) => {
    statuses.push(message.status);
    for (const waiter of waiters.filter((w) => w.wanted === message.status)) waiter.resolve();
  });
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

// ---------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------

export interface Scrape {
  readonly text: string;
  /** `# TYPE` of each metric family. */
  readonly types: ReadonlyMap<string, string>;
  /** The value of one sample, e.g. value('delivery_rpcs_total', { method: 'GetDelivery', code: 'OK' }); 0 when absent. */
  value(name: string, labels?: Readonly<Record<string, string>>): number;
  /** Every sample of a name, with its labels. */
  samples(name: string): { labels: Record<string, string>; value: number }[];
}

function parseLabels(raw: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!raw) return labels;
  for (const match of raw.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]!] = match[2]!.replace(/\\(.)/g, "$1");
  return labels;
}

export function parsePrometheus(text: string): Scrape {
  const types = new Map<string, string>();
  const all: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (sample) all.push({ name: sample[1]!, labels: parseLabels(sample[2]), value: Number(sample[3]) });
  }
  const samples = (name: string) => all.filter((s) => s.name === name).map(({ labels, value }) => ({ labels, value }));
  return {
    text,
    types,
    samples,
    value(name, labels = {}) {
      const found = samples(name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      return found?.value ?? 0;
    },
  };
}

export async function scrape(metricsPort: number): Promise<Scrape> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
  return parsePrometheus(await response.text());
}
