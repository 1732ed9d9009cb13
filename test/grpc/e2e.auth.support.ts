/**
 * Support of e2e.auth.test.ts: a real server with authentication on (its own
 * logger in memory, a clock the test moves), clients that send one
 * credential on every call (a bearer token through an interceptor, a client
 * certificate through TLS), health and reflection clients, client
 * certificates with chosen identities, and every RPC as one probe that says
 * how the call ended.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import {
  type ChannelCredentials,
  type Client,
  type ClientDuplexStream,
  credentials,
  InterceptingCall,
  type Interceptor,
  loadPackageDefinition,
  makeGenericClientConstructor,
  type Metadata,
  type ServiceDefinition,
  type ServiceError,
  status,
  type StatusObject,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { pino } from "pino";
import { type Config, configWith } from "../../src/config.js";
import {
  DeliveryServiceClient,
  WatchDeliveriesRequest,
  type WatchDeliveriesResponse,
} from "../../src/gen/delivery/v1/delivery.js";
import type { AuthClock } from "../../src/grpc/callAuth.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { uniquePrefix } from "../support/redis.js";
import { statusDetailsOf } from "../support/statusDetails.js";
import type { Pem, TestPki } from "../ops/certificates.js";

const run = promisify(execFile);

// ---------------------------------------------------------------------------
// Clock
// ---------------------------------------------------------------------------

export interface ManualClock extends AuthClock {
  /** Moves the clock on and runs every timer now due, in order. */
  advance(ms: number): void;
  /** Timers not yet run nor cancelled. */
  pending(): number;
}

/** An AuthClock that moves only when told: stream expiries fire inside advance(). */
export function manualClock(startMs: number): ManualClock {
  let now = startMs;
  const timers = new Set<{ at: number; callback: () => void }>();
  const runDue = () => {
    for (const timer of [...timers].sort((a, b) => a.at - b.at)) {
      if (timer.at > now) break;
      timers.delete(timer);
      timer.callback();
    }
  };
  return {
    now: () => now,
    at(at, callback) {
      const timer = { at, callback };
      timers.add(timer);
      // Never synchronously, as the system clock.
      if (at <= now) queueMicrotask(runDue);
      return { cancel: () => timers.delete(timer) };
    },
    advance(ms) {
      now += ms;
      runDue();
    },
    pending: () => timers.size,
  };
}

// ---------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A real pino logger that writes into memory. */
export function memoryLogger() {
  const raw: string[] = [];
  let partial = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      raw.push(...parts.filter((part) => part !== ""));
      done();
    },
  });
  return {
    logger: pino({ level: "info", base: { service: "delivery-service" } }, sink),
    raw,
    lines: (): LogLine[] => raw.map((line) => JSON.parse(line) as LogLine),
  };
}

// ---------------------------------------------------------------------------
// Service and clients
// ---------------------------------------------------------------------------

const healthPackage = loadPackageDefinition(
  loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
) as unknown as { grpc: { health: { v1: { Health: new (address: string, creds: ChannelCredentials, options?: object) => HealthStub } } } };

interface HealthStub extends Client {
  check(request: { service: string }, options: { deadline: number }, callback: (error: ServiceError | null, response: { status: string }) => void): void;
}

const reflectionDefinition = loadSync("grpc/reflection/v1/reflection.proto", {
  includeDirs: [fileURLToPath(new URL("../../third_party/proto/", import.meta.url))],
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
})["grpc.reflection.v1.ServerReflection"] as ServiceDefinition;
const ReflectionClient = makeGenericClientConstructor(reflectionDefinition, "ServerReflection");

/** Sends `authorization: <value>` on every call of a client. */
export function withAuthorization(value: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata: Metadata, listener, next) {
        metadata.set("authorization", value);
        next(metadata, listener);
      },
    });
}

/** How a client identifies itself: a bearer token (or any authorization value), a client certificate, both, or nothing. */
export interface Credential {
  readonly authorization?: string;
  readonly certificate?: Pem;
}

export interface AuthService {
  readonly address: string;
  readonly server: RunningServer;
  readonly keyPrefix: string;
  readonly logs: ReturnType<typeof memoryLogger>;
  delivery(credential?: Credential): DeliveryServiceClient;
  health(credential?: Credential): HealthStub;
  reflection(credential?: Credential): Client;
  /** A DeliveryService client that sends raw bytes as requests (the given credential on every call). */
  raw(definition: ServiceDefinition, credential?: Credential): Client & { [method: string]: (...args: unknown[]) => unknown };
  stop(): Promise<void>;
}

export async function startAuthService(options: {
  redisUrl: string;
  config: Partial<Config>;
  authClock?: AuthClock;
  /** TLS: the client CA (and server certificate) clients are made with. */
  pki?: TestPki;
}): Promise<AuthService> {
  const keyPrefix = uniquePrefix();
  const logs = memoryLogger();
  const server = await startServer({
    config: configWith({ host: "127.0.0.1", port: 0, redisUrl: options.redisUrl, logLevel: "info", ...options.config }),
    logger: logs.logger,
    keyPrefix,
    ...(options.authClock ? { authClock: options.authClock } : {}),
  });
  const address = `127.0.0.1:${server.port}`;
  const clients: Client[] = [];
  const channel = (credential: Credential = {}) => {
    const { pki } = options;
    const creds = pki
      ? credential.certificate
        ? credentials.createSsl(pki.ca.cert, credential.certificate.key, credential.certificate.cert)
        : credentials.createSsl(pki.ca.cert)
      : credentials.createInsecure();
    const channelOptions = credential.authorization === undefined ? {} : { interceptors: [withAuthorization(credential.authorization)] };
    return [address, creds, channelOptions] as const;
  };
  const track = <C extends Client>(client: C): C => {
    clients.push(client);
    return client;
  };
  return {
    address,
    server,
    keyPrefix,
    logs,
    delivery: (credential) => track(new DeliveryServiceClient(...channel(credential))),
    health: (credential) => track(new healthPackage.grpc.health.v1.Health(...channel(credential))),
    reflection: (credential) => track(new ReflectionClient(...channel(credential))),
    raw(definition, credential) {
      const raw: { [name: string]: ServiceDefinition[string] } = {};
      for (const [name, method] of Object.entries(definition)) {
        raw[name] = { ...method, requestSerialize: (bytes: Buffer) => bytes, responseDeserialize: (bytes: Buffer) => bytes };
      }
      const Constructor = makeGenericClientConstructor(raw, "Raw");
      return track(new Constructor(...channel(credential))) as never;
    },
    async stop() {
      for (const client of clients) client.close();
      await server.stop();
    },
  };
}

// ---------------------------------------------------------------------------
// Outcomes
// ---------------------------------------------------------------------------

/** How a call ended: OK, or a code with the ErrorInfo reason and metadata. */
export interface Outcome {
  readonly code: string;
  readonly reason?: string;
  readonly metadata?: Record<string, string>;
  readonly message?: string;
  /** ErrorInfo's domain: delivery.v1 for every refusal. */
  readonly domain?: string;
}

export const OK: Outcome = { code: "OK" };

export function outcomeOf(error: { code: number; details: string; metadata: Metadata }): Outcome {
  const details = statusDetailsOf(error);
  const info = details?.errorInfo;
  return {
    code: status[error.code] ?? String(error.code),
    ...(info ? { reason: info.reason, metadata: info.metadata, domain: info.domain } : {}),
    message: error.details,
  };
}

/** Health/Check as an outcome. */
export function healthCheck(client: HealthStub): Promise<Outcome> {
  return new Promise((resolve) =>
    client.check({ service: "" }, { deadline: Date.now() + 5_000 }, (error, response) =>
      resolve(error ? outcomeOf(error) : response.status === "SERVING" ? OK : { code: `status ${response.status}` }),
    ),
  );
}

/** ServerReflectionInfo with one list_services request, as an outcome. */
export function reflectionList(client: Client): Promise<Outcome> {
  const stream = (client as unknown as { ServerReflectionInfo(): ClientDuplexStream<object, { list_services_response?: { service: { name: string }[] } }> })
    .ServerReflectionInfo();
  return new Promise((resolve) => {
    stream.on("data", (reply: { list_services_response?: { service: { name: string }[] } }) => {
      resolve(reply.list_services_response?.service.some((s) => s.name === "delivery.v1.DeliveryService") ? OK : { code: "no services listed" });
      stream.end();
    });
    stream.on("error", (error: ServiceError) => resolve(outcomeOf(error)));
    stream.write({ list_services: "" });
  });
}

/** A WatchDeliveries stream: what it received, its first message, how it ended. */
export interface FeedRecorder {
  readonly messages: WatchDeliveriesResponse[];
  /** Rejects with the final status when the stream ends before any message. */
  readonly first: Promise<WatchDeliveriesResponse>;
  readonly ended: Promise<StatusObject>;
  cancel(): void;
}

export function watchDeliveries(client: DeliveryServiceClient, request: Partial<WatchDeliveriesRequest>): FeedRecorder {
  const stream = client.watchDeliveries(WatchDeliveriesRequest.fromPartial(request));
  const messages: WatchDeliveriesResponse[] = [];
  let resolveFirst!: (message: WatchDeliveriesResponse) => void;
  let rejectFirst!: (end: StatusObject) => void;
  const first = new Promise<WatchDeliveriesResponse>((resolve, reject) => {
    resolveFirst = resolve;
    rejectFirst = reject;
  });
  first.catch(() => {});
  stream.on("data", (message: WatchDeliveriesResponse) => {
    messages.push(message);
    if (messages.length === 1) resolveFirst(message);
  });
  // Reported through 'status'.
  stream.on("error", () => {});
  const ended = new Promise<StatusObject>((resolve) =>
    stream.on("status", (end: StatusObject) => {
      rejectFirst(end);
      resolve(end);
    }),
  );
  return { messages, first, ended, cancel: () => stream.cancel() };
}

// ---------------------------------------------------------------------------
// Client certificates
// ---------------------------------------------------------------------------

/**
 * A client certificate from the test CA with the given subject CN and subject
 * alternative names (e.g. "URI:spiffe://..."), valid from now until two days
 * past `validUntilMs` (the servers' test clock reads 2030).
 */
export async function clientCertificate(
  pki: TestPki,
  name: string,
  cn: string,
  subjectAltNames: readonly string[],
  validUntilMs: number,
): Promise<Pem> {
  const days = Math.max(1, Math.ceil((validUntilMs - Date.now()) / 86_400_000) + 2);
  const certFile = path.join(pki.dir, `${name}.crt`);
  const keyFile = path.join(pki.dir, `${name}.key`);
  await run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", String(days),
    "-CA", pki.ca.certFile, "-CAkey", pki.ca.keyFile,
    "-keyout", keyFile, "-out", certFile,
    "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:FALSE",
    "-addext", "extendedKeyUsage=clientAuth",
    ...(subjectAltNames.length ? ["-addext", `subjectAltName=${subjectAltNames.join(",")}`] : []),
  ]);
  return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
}
