/**
 * A real DeliveryService on 127.0.0.1, port 0, with real gRPC clients.
 *
 *   const service = await startTestService({ redisUrl: testRedisUrl() });
 *   const client = service.client();              // DeliveryServiceClient
 *   await call(client, "createDelivery", { budget: 100n, ... });
 *   await service.stop();                          // closes clients too
 */
import { type CallOptions, credentials, type handleUnaryCall, Metadata, type ServiceError } from "@grpc/grpc-js";
import { DeliveryServiceClient, type DeliveryServiceServer, DeliveryServiceService } from "../../src/gen/delivery/v1/delivery.js";
import { type Config, configWith } from "../../src/config.js";
import { silentLogger } from "../../src/logger.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { uniquePrefix } from "./redis.js";

export interface TestService {
  readonly port: number;
  readonly address: string;
  readonly server: RunningServer;
  readonly keyPrefix: string;
  /** A new client on its own channel (closed by stop()). */
  client(): DeliveryServiceClient;
  stop(): Promise<void>;
}

export async function startTestService(
  options: { redisUrl?: string; keyPrefix?: string; safetyNetIntervalMs?: number; config?: Partial<Config>; now?: () => number } = {},
): Promise<TestService> {
  const keyPrefix = options.keyPrefix ?? uniquePrefix();
  const server = await startServer({
    config: configWith({ host: "127.0.0.1", port: 0, redisUrl: options.redisUrl, logLevel: "silent", ...options.config }),
    logger: silentLogger,
    keyPrefix,
    ...(options.safetyNetIntervalMs ? { safetyNetIntervalMs: options.safetyNetIntervalMs } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
  const address = `127.0.0.1:${server.port}`;
  const clients: DeliveryServiceClient[] = [];
  return {
    port: server.port,
    address,
    server,
    keyPrefix,
    client() {
      // A distinct channel per client: grpc-js otherwise shares one subchannel.
      const client = new DeliveryServiceClient(address, credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
      });
      clients.push(client);
      return client;
    },
    async stop() {
      for (const c of clients) c.close();
      await server.stop();
    },
  };
}

/** Listed by hand: the generated server interface has an index signature, so keyof would be string. */
type UnaryMethod =
  | "createDelivery"
  | "startDelivery"
  | "pickupProducts"
  | "deliverProducts"
  | "increaseBudget"
  | "cancelDelivery"
  | "getDelivery"
  | "listDeliveries"
  | "listDeliveryEvents";
type RequestOf<K extends UnaryMethod> = DeliveryServiceServer[K] extends handleUnaryCall<infer Req, infer _Res> ? Req : never;
type ResponseOf<K extends UnaryMethod> = DeliveryServiceServer[K] extends handleUnaryCall<infer _Req, infer Res> ? Res : never;

/** A unary call as a promise; rejects with the ServiceError (match on .code). Omitted fields take proto defaults. */
export function call<K extends UnaryMethod>(
  client: DeliveryServiceClient,
  method: K,
  request: Partial<RequestOf<K>>,
  options: { deadlineMs?: number } = {},
): Promise<ResponseOf<K>> {
  const definition = DeliveryServiceService[method] as unknown as { requestDeserialize(b: Buffer): unknown };
  // Round-trip through fromPartial-like defaults: the generated encoder expects every field present.
  const full = { ...(definition.requestDeserialize(Buffer.alloc(0)) as object), ...request };
  return new Promise((resolve, reject) => {
    const fn = client[method] as unknown as (
      request: unknown,
      metadata: Metadata,
      options: CallOptions,
      callback: (error: ServiceError | null, response: ResponseOf<K>) => void,
    ) => unknown;
    const deadline = Date.now() + (options.deadlineMs ?? 10_000);
    fn.call(client, full, new Metadata(), { deadline }, (error, response) => (error ? reject(error) : resolve(response)));
  });
}
