/**
 * The real process (node main.js) on signals and bad configuration.
 *
 * The unary call "in flight" at SIGTERM is made deterministic with a TCP proxy
 * in front of a private Redis: the GetDelivery's read is held at the proxy
 * (so the call is provably inside the service), SIGTERM is sent, and the read
 * is released only once the process has logged that it is shutting down.
 * (CLIENT PAUSE would make the call slow, but gives no signal that the call
 * has reached Redis: CLIENT LIST and INFO are paused too.)
 */
import { randomBytes } from "node:crypto";
import { credentials, status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DeliveryServiceClient, DeliveryStatus, type GetDeliveryResponse } from "../../src/gen/delivery/v1/delivery.js";
import { rejectionOf } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { statusDetailsOf } from "../support/statusDetails.js";
import { type HealthClient, healthClient, type ServingStatus, transitions } from "../support/health.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { watch, type WatchEnd } from "../support/watch.js";
import { codeName } from "./opsSupport.js";
import { type Build, buildService, type Exit, listeningPort, type ServiceProcess, spawnService } from "./serviceProcess.js";
import { startTcpProxy, type TcpProxy } from "./tcpProxy.js";

const SERVICE_NAME = "delivery.v1.DeliveryService";

let build: Build | undefined;
let redis: RedisServerHandle | undefined;
const processes: ServiceProcess[] = [];
const closers: (() => void | Promise<void>)[] = [];

beforeAll(async () => {
  [build, redis] = await Promise.all([buildService(), startRedisServer()]);
}, 60_000);

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await Promise.all(processes.splice(0).map((p) => p.kill()));
});

afterAll(async () => {
  await redis?.stop();
  build?.remove();
});

function start(env: Record<string, string>): ServiceProcess {
  const service = spawnService(build!.main, { HOST: "127.0.0.1", PORT: "0", LOG_FORMAT: "json", LOG_LEVEL: "info", ...env });
  processes.push(service);
  return service;
}

function deliveryClient(address: string): DeliveryServiceClient {
  const client = new DeliveryServiceClient(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  closers.push(() => client.close());
  return client;
}

function health(address: string): HealthClient {
  const client = healthClient(address);
  closers.push(() => client.close());
  return client;
}

/** Waits until the process answers a health check; its address. */
async function servingAt(service: ServiceProcess): Promise<string> {
  const address = `127.0.0.1:${await listeningPort(service)}`;
  expect(await health(address).check("")).toBe("SERVING");
  return address;
}

const uid = () => randomBytes(4).toString("hex");

describe("SIGTERM with three watches open and a GetDelivery in flight", () => {
  const GRACE_MS = 8_000;
  let proxy: TcpProxy;
  let heldId: string;
  let sigtermAt: number;
  let inFlight: PromiseSettledResult<GetDeliveryResponse>;
  let watchEnds: WatchEnd[];
  let healthDuringShutdown: ServingStatus[];
  let refused: { code: string; details: string };
  let exit: Exit;
  let service: ServiceProcess;

  beforeAll(async () => {
    proxy = await startTcpProxy(redis!.port);
    service = start({ REDIS_URL: proxy.url, SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    const address = `127.0.0.1:${await listeningPort(service)}`;
    const client = deliveryClient(address);

    const watchedIds = [1, 2, 3].map((n) => `watched-${n}-${uid()}`);
    heldId = `held-${uid()}`;
    for (const deliveryId of [...watchedIds, heldId]) await createDelivery(client, { deliveryId, budget: 1_000n });
    const watches = watchedIds.map((deliveryId) => watch(client, { deliveryId }));
    await Promise.all(watches.map((w) => w.first));
    const healthWatch = health(address).watch(SERVICE_NAME);
    await healthWatch.until("SERVING");

    // Only the read of heldId's state is held; watches and everything else flow.
    const heldLog = createRedisKeys().delivery(heldId).log;
    const hold = proxy.holdRequests((chunk) => chunk.includes(heldLog));
    const call = getDelivery(client, heldId, 15_000);
    const callSettled = Promise.allSettled([call]).then(([result]) => result!);
    await hold.held;

    sigtermAt = Date.now();
    service.child.kill("SIGTERM");
    try {
      await service.waitForLog((line) => line.msg === "shutting down");
      await healthWatch.until("NOT_SERVING", 3_000).catch(() => {});
      healthDuringShutdown = [...healthWatch.statuses];
      // A health Watch of its own would keep the server open (see the test below); this one is done.
      healthWatch.cancel();
      watchEnds = await Promise.all(watches.map((w) => w.ended));
      const error = await rejectionOf(getDelivery(deliveryClient(address), heldId, 3_000));
      refused = { code: codeName(error), details: error.details };
    } finally {
      // The service's Redis command timeout is 2 s: everything above takes a fraction of that.
      hold.release();
    }
    inFlight = await callSettled;
    exit = await service.exited;
  }, 30_000);

  afterAll(async () => {
    await proxy?.close();
  });

  it("lets the GetDelivery in flight finish with OK", () => {
    expect(inFlight.status === "rejected" ? codeName(inFlight.reason as { code?: number }) : "OK").toBe("OK");
    const delivery = inFlight.status === "fulfilled" ? inFlight.value.delivery : undefined;
    expect(delivery).toMatchObject({ id: heldId, status: DeliveryStatus.DELIVERY_STATUS_READY });
  });

  it("ends every open watch with UNAVAILABLE, asking the client to resume with after_version", () => {
    expect(watchEnds.map((end) => status[end.code])).toEqual(["UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"]);
    for (const end of watchEnds) {
      expect(end.details).toMatch(/after_version/);
      const details = statusDetailsOf(end);
      expect(details).toMatchObject({ code: status.UNAVAILABLE, message: end.details });
      expect(details?.errorInfo).toMatchObject({ domain: "delivery.v1", reason: "SHUTTING_DOWN" });
      expect(details?.retryDelayMs).toBe(0);
    }
  });

  it("reports NOT_SERVING on a health watch as shutdown begins", () => {
    expect(transitions(healthDuringShutdown)).toEqual(["SERVING", "NOT_SERVING"]);
  });

  it("refuses a new call while the old one is still in flight", () => {
    expect(refused.code).toBe("UNAVAILABLE");
  });

  it("exits 0 within the grace period, without forcing calls closed", () => {
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(exit.at - sigtermAt).toBeLessThan(GRACE_MS);
    const messages = service.logs.map((line) => line.msg);
    expect(messages).toContain("stopped");
    expect(messages.filter((msg) => /grace period over/.test(msg))).toEqual([]);
  });
});

describe("signals", () => {
  it("exits 0 on SIGINT (in-memory store)", async () => {
    const service = start({});
    // Answered calls, not just the "listening" line: see the startup test below.
    await servingAt(service);
    service.child.kill("SIGINT");
    const exit = await service.exited;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(service.logs.find((line) => line.msg === "shutting down")).toMatchObject({ signal: "SIGINT" });
  });

  it("does not wait out the grace period for a client's open health Watch stream", async () => {
    const GRACE_MS = 3_000;
    const service = start({ SHUTDOWN_GRACE_MS: String(GRACE_MS) });
    const address = await servingAt(service);
    // What a load balancer or sidecar that uses Health/Watch keeps open all the time.
    const healthWatch = health(address).watch(SERVICE_NAME);
    await healthWatch.until("SERVING");

    const sigtermAt = Date.now();
    service.child.kill("SIGTERM");
    const exit = await service.exited;

    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
    expect(healthWatch.statuses).toContain("NOT_SERVING");
    // Nothing is in flight: shutdown has no reason to take more than a moment.
    expect(service.logs.filter((line) => /grace period over/.test(line.msg)).map((line) => line.msg)).toEqual([]);
    expect(exit.at - sigtermAt).toBeLessThan(GRACE_MS / 2);
  });
});

describe("a signal during startup", () => {
  // main.ts installs its SIGTERM/SIGINT handlers only after startServer()
  // resolves: after the gRPC port is bound and "delivery service listening" is
  // logged. A signal in that window kills the process with the default action
  // (no graceful stop, no exit 0). Here the window is held open
  // deterministically: the Redis ready check is held at the proxy, so
  // startServer() is still waiting for Redis when SIGTERM arrives.
  it("exits 0 on SIGTERM received while the service is still connecting to Redis", async () => {
    const proxy = await startTcpProxy(redis!.port);
    closers.push(() => proxy.close());
    const hold = proxy.holdRequests(() => true);
    closers.push(() => hold.release());
    const service = start({ REDIS_URL: proxy.url, SHUTDOWN_GRACE_MS: "2000" });
    await hold.held;

    service.child.kill("SIGTERM");
    const exit = await service.exited;

    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 0, signal: null });
  });
});

describe("invalid configuration", () => {
  it.each([
    ["PORT", { PORT: "abc" }],
    ["MAX_WATCHERS", { MAX_WATCHERS: "0" }],
    ["REDIS_URL", { REDIS_URL: "http://127.0.0.1:6379" }],
    ["TLS_CERT_FILE", { TLS_CERT_FILE: "/nonexistent/cert.pem" }],
  ])("%s: prints one line on stderr naming it and exits 2", async (name, env) => {
    const service = start(env);
    const exit = await service.exited;
    expect({ code: exit.code, signal: exit.signal }).toEqual({ code: 2, signal: null });
    const lines = service.stderr().split("\n").filter((line) => line !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(name);
    expect(service.logs).toEqual([]);
  });
});
