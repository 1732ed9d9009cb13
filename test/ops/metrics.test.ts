/**
 * The Prometheus endpoint (METRICS_PORT): every documented series is there,
 * and the values move when RPCs, events, watches, Pub/Sub and Redis errors
 * happen. The service talks to a private Redis through a TCP proxy, so a
 * Pub/Sub message can be lost on purpose.
 */
import { createRedisKeys } from "../../src/store/redis/keys.js";
import { randomBytes } from "node:crypto";
import { Metadata } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DeliveryServiceClient, StartDeliveryRequest } from "../../src/gen/delivery/v1/delivery.js";
import { rejectionOf, waitUntil, within } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { codeName, type Scrape, scrape } from "./opsSupport.js";
import { startTcpProxy, type TcpProxy } from "./tcpProxy.js";

let redis: RedisServerHandle;
let proxy: TcpProxy;
let service: TestService;
let client: DeliveryServiceClient;
let metricsPort: number;

beforeAll(async () => {
  redis = await startRedisServer();
  proxy = await startTcpProxy(redis.port);
  // A short safety net: a lost Pub/Sub message is repaired from the log quickly.
  service = await startTestService({ redisUrl: proxy.url, config: { metricsPort: 0 }, safetyNetIntervalMs: 200 });
  client = service.client();
  metricsPort = service.server.metricsPort!;
});

afterAll(async () => {
  await service?.stop();
  await proxy?.close();
  await redis?.stop();
});

const newId = (label: string) => `${label}-${randomBytes(4).toString("hex")}`;
const metrics = (): Promise<Scrape> => scrape(metricsPort);

function startDelivery(deliveryId: string, through: DeliveryServiceClient = client): Promise<unknown> {
  return new Promise((resolve, reject) =>
    through.startDelivery(StartDeliveryRequest.fromPartial({ deliveryId }), new Metadata(), { deadline: Date.now() + 5_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

describe("the endpoint", () => {
  it("listens on the port picked for metricsPort 0", () => {
    expect(metricsPort).toBeGreaterThan(0);
    expect(metricsPort).not.toBe(service.port);
  });

  it("lists every documented series with its type", async () => {
    const { types } = await metrics();
    expect(Object.fromEntries([...types].filter(([name]) => name.startsWith("delivery_")))).toEqual({
      delivery_rpcs_total: "counter",
      delivery_rpc_duration_seconds: "histogram",
      delivery_watchers: "gauge",
      delivery_events_appended_total: "counter",
      delivery_pubsub_messages_total: "counter",
      delivery_watch_gaps_repaired_total: "counter",
      delivery_redis_errors_total: "counter",
      delivery_auth_denied_total: "counter",
    });
    // Node's default process metrics.
    expect(types.get("process_cpu_user_seconds_total")).toBe("counter");
    expect(types.get("nodejs_eventloop_lag_seconds")).toBe("gauge");
  });

  it("answers 404 elsewhere", async () => {
    const response = await fetch(`http://127.0.0.1:${metricsPort}/`);
    expect(response.status).toBe(404);
  });
});

describe("RPCs", () => {
  it("counts a successful CreateDelivery with code OK, and times it", async () => {
    const before = await metrics();
    await createDelivery(client, { deliveryId: newId("ok"), budget: 100n });
    const after = await metrics();
    const ok = { method: "CreateDelivery", code: "OK" };
    expect(after.value("delivery_rpcs_total", ok) - before.value("delivery_rpcs_total", ok)).toBe(1);
    const count = { method: "CreateDelivery" };
    expect(after.value("delivery_rpc_duration_seconds_count", count) - before.value("delivery_rpc_duration_seconds_count", count)).toBe(1);
  });

  it("counts a failed call under its status code", async () => {
    const before = await metrics();
    expect(codeName(await rejectionOf(getDelivery(client, newId("missing"))))).toBe("NOT_FOUND");
    const after = await metrics();
    const notFound = { method: "GetDelivery", code: "NOT_FOUND" };
    expect(after.value("delivery_rpcs_total", notFound) - before.value("delivery_rpcs_total", notFound)).toBe(1);
    expect(after.value("delivery_rpcs_total", { method: "GetDelivery", code: "OK" })).toBe(before.value("delivery_rpcs_total", { method: "GetDelivery", code: "OK" }));
  });

  it("counts appended events by type", async () => {
    const id = newId("events");
    const before = await metrics();
    await createDelivery(client, { deliveryId: id, budget: 100n });
    await startDelivery(id);
    const after = await metrics();
    const delta = (type: string) =>
      after.value("delivery_events_appended_total", { type }) - before.value("delivery_events_appended_total", { type });
    expect({ created: delta("created"), started: delta("started") }).toEqual({ created: 1, started: 1 });
  });

  it("does not count a rejected command as an appended event", async () => {
    const before = await metrics();
    const error = await rejectionOf(startDelivery(newId("nothing")));
    expect(codeName(error)).toBe("NOT_FOUND");
    const after = await metrics();
    expect(after.samples("delivery_events_appended_total")).toEqual(before.samples("delivery_events_appended_total"));
  });
});

describe("watches", () => {
  it("shows an open watch in delivery_watchers, and not after it is cancelled", async () => {
    const id = newId("gauge");
    await createDelivery(client, { deliveryId: id, budget: 100n });
    expect((await metrics()).value("delivery_watchers")).toBe(0);
    const watcher = watch(client, { deliveryId: id });
    await watcher.first;
    expect((await metrics()).value("delivery_watchers")).toBe(1);
    watcher.cancel();
    await waitUntil(async () => (await metrics()).value("delivery_watchers") === 0, "delivery_watchers back to 0", 5_000);
  });

  it("counts a live update received from Pub/Sub", async () => {
    const id = newId("pubsub");
    await createDelivery(client, { deliveryId: id, budget: 100n });
    const watcher = watch(client, { deliveryId: id });
    try {
      await watcher.first;
      const before = (await metrics()).value("delivery_pubsub_messages_total");
      await startDelivery(id);
      await waitUntil(() => watcher.messages.length === 2, "the watcher to receive version 2", 5_000);
      // The message may come after the watcher already has version 2 (the safety net can be first under load).
      await waitUntil(async () => (await metrics()).value("delivery_pubsub_messages_total") - before >= 1, "the Pub/Sub message to be counted", 5_000);
    } finally {
      watcher.cancel();
    }
  });

  it("counts an event repaired from the log after its Pub/Sub message was lost", async () => {
    const id = newId("gap");
    await createDelivery(client, { deliveryId: id, budget: 100n });
    const watcher = watch(client, { deliveryId: id });
    // Another replica makes the change: this one hears of it only through Pub/Sub (its own appends reach its watchers directly).
    const writer = await startTestService({ redisUrl: redis.url, keyPrefix: service.keyPrefix });
    try {
      await watcher.first;
      const before = (await metrics()).value("delivery_watch_gaps_repaired_total");
      const dropped = proxy.dropNextMessage(createRedisKeys(service.keyPrefix).channel(id));
      await startDelivery(id, writer.client());
      await within(dropped, "the proxy to drop the Pub/Sub message", 5_000);
      // Only the safety net (or the next message) can bring version 2 now: it comes from the log.
      await waitUntil(() => watcher.messages.length === 2, "the watcher to receive version 2 from the log", 5_000);
      expect(watcher.messages[1]?.event?.version).toBe(2n);
      expect((await metrics()).value("delivery_watch_gaps_repaired_total") - before).toBeGreaterThanOrEqual(1);
    } finally {
      watcher.cancel();
      await writer.stop();
    }
  });
});

describe("Redis errors (runs last: it stops Redis)", () => {
  it("counts connection errors by connection while Redis is down", async () => {
    const total = (s: Scrape) => s.samples("delivery_redis_errors_total").reduce((sum, sample) => sum + sample.value, 0);
    expect(total(await metrics())).toBe(0);
    await redis.stop();
    const during = await waitUntil(
      async () => {
        const s = await metrics();
        return total(s) > 0 ? s : undefined;
      },
      "delivery_redis_errors_total to move",
      5_000,
    );
    const labels = during.samples("delivery_redis_errors_total").filter((s) => s.value > 0).map((s) => s.labels.connection);
    expect(labels.every((label) => label === "commands" || label === "subscriber")).toBe(true);
    await redis.restart();
  });
});
