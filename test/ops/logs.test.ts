/**
 * Logs: one JSON line per finished RPC (method, code, durationMs, deliveryId),
 * and never a request payload. A real pino logger writes into memory; the
 * server is started with startServer() directly so the test owns the logger.
 */
import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import { credentials } from "@grpc/grpc-js";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { configWith } from "../../src/config.js";
import { CancelDeliveryRequest, DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { rejectionOf, waitUntil } from "../support/async.js";
import { createDelivery, getDelivery } from "../support/deliveries.js";
import { testRedisUrl, uniquePrefix } from "../support/redis.js";
import { watch } from "../support/watch.js";
import { codeName } from "./opsSupport.js";

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

const raw: string[] = [];
const lines = (): LogLine[] => raw.map((line) => JSON.parse(line) as LogLine);
const rpcLines = (deliveryId: string) => lines().filter((line) => line.deliveryId === deliveryId);

let server: RunningServer;
let client: DeliveryServiceClient;

beforeAll(async () => {
  let partial = "";
  const memory = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const parts = (partial + chunk.toString("utf8")).split("\n");
      partial = parts.pop() ?? "";
      raw.push(...parts.filter((part) => part !== ""));
      done();
    },
  });
  const logger = pino({ level: "info", base: { service: "delivery-service" } }, memory);
  server = await startServer({
    config: configWith({ host: "127.0.0.1", port: 0, redisUrl: testRedisUrl(), logLevel: "info" }),
    logger,
    keyPrefix: uniquePrefix(),
  });
  client = new DeliveryServiceClient(`127.0.0.1:${server.port}`, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.stop();
});

const newId = (label: string) => `${label}-${randomBytes(4).toString("hex")}`;

describe("one line per finished RPC", () => {
  it("logs a successful CreateDelivery with method, code, durationMs and deliveryId", async () => {
    const deliveryId = newId("created");
    await createDelivery(client, { deliveryId, budget: 100n });
    const [line, ...more] = await waitUntil(() => rpcLines(deliveryId).length > 0 && rpcLines(deliveryId), "the CreateDelivery line", 5_000);
    expect(more).toEqual([]);
    expect(line).toMatchObject({ msg: "rpc", level: 30, method: "CreateDelivery", code: "OK", deliveryId });
    expect(line!.durationMs).toEqual(expect.any(Number));
    expect(line!.durationMs as number).toBeGreaterThanOrEqual(0);
    expect(line!.durationMs as number).toBeLessThan(5_000);
  });

  // README: every line carries the deliveryId. For a create without
  // delivery_id the id is chosen by the server, and only the response has it.
  it("logs the id the server picked for a CreateDelivery without delivery_id", async () => {
    const requestId = newId("create-without-id");
    const picked = await createDelivery(client, { budget: 100n, requestId });
    const line = await waitUntil(
      () => lines().findLast((l) => l.method === "CreateDelivery" && (l.deliveryId === picked || l.deliveryId === undefined)),
      "the CreateDelivery line",
      5_000,
    );
    expect(line.deliveryId).toBe(picked);
  });

  it("logs a failed call with its status code", async () => {
    const deliveryId = newId("missing");
    expect(codeName(await rejectionOf(getDelivery(client, deliveryId)))).toBe("NOT_FOUND");
    const found = await waitUntil(() => rpcLines(deliveryId).length > 0 && rpcLines(deliveryId), "the GetDelivery line", 5_000);
    expect(found).toEqual([expect.objectContaining({ msg: "rpc", method: "GetDelivery", code: "NOT_FOUND", deliveryId })]);
  });

  it("logs a watch once, when it ends (CANCELLED by the client)", async () => {
    const deliveryId = newId("watched");
    await createDelivery(client, { deliveryId, budget: 100n });
    const watcher = watch(client, { deliveryId });
    await watcher.first;
    const beforeEnd = rpcLines(deliveryId).filter((line) => line.method === "WatchDelivery");
    watcher.cancel();
    const watchLines = await waitUntil(
      () => {
        const found = rpcLines(deliveryId).filter((line) => line.method === "WatchDelivery");
        return found.length > 0 && found;
      },
      "the WatchDelivery line",
      5_000,
    );
    expect(beforeEnd).toEqual([]);
    expect(watchLines).toEqual([expect.objectContaining({ msg: "rpc", method: "WatchDelivery", code: "CANCELLED", deliveryId })]);
  });
});

describe("no payloads", () => {
  it("never writes a command's notes, reason or request_id", async () => {
    const deliveryId = newId("private");
    const secrets = {
      notes: `notes-secret-${randomBytes(8).toString("hex")}`,
      reason: `reason-secret-${randomBytes(8).toString("hex")}`,
      requestId: `request-secret-${randomBytes(8).toString("hex")}`,
    };
    await createDelivery(client, { deliveryId, budget: 100n, notes: secrets.notes, requestId: secrets.requestId });
    await new Promise((resolve, reject) =>
      client.cancelDelivery(CancelDeliveryRequest.fromPartial({ deliveryId, reason: secrets.reason }), (error, response) =>
        error ? reject(error) : resolve(response),
      ),
    );
    await waitUntil(() => rpcLines(deliveryId).length === 2, "both lines", 5_000);
    const everything = raw.join("\n");
    for (const secret of Object.values(secrets)) expect(everything).not.toContain(secret);
  });

  // The logged deliveryId is the request field as sent, even when it failed
  // validation: an invalid id is a payload of any size (up to the 4 MiB
  // message limit) and ends up in the log line verbatim.
  it("does not copy an invalid delivery_id into the log", async () => {
    const invalid = `x${"y".repeat(20_000)}/not-an-id`;
    expect(codeName(await rejectionOf(getDelivery(client, invalid)))).toBe("INVALID_ARGUMENT");
    const line = await waitUntil(
      () => lines().find((l) => l.method === "GetDelivery" && l.code === "INVALID_ARGUMENT"),
      "the GetDelivery INVALID_ARGUMENT line",
      5_000,
    );
    expect(String(line.deliveryId ?? "").length).toBeLessThanOrEqual(64 + 16);
    expect(Math.max(...raw.map((l) => l.length))).toBeLessThan(4_096);
  });
});
