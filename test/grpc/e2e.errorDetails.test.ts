/**
 * Every status the service returns, through the generated client against
 * Redis: the google.rpc.Status in grpc-status-details-bin decoded, and the
 * reason, metadata, field violations, precondition and retry delay asserted.
 * (expectStatus checks code/message equality and the ErrorInfo domain.)
 */
import { type Client, credentials, makeGenericClientConstructor, Metadata, type ServiceDefinition, status } from "@grpc/grpc-js";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DeliveryServiceClient, DeliveryServiceService } from "../../src/gen/delivery/v1/delivery.js";
import { within } from "../support/async.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { statusDetailsOf, violatedFields } from "../support/statusDetails.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { watch } from "../support/watch.js";
import { deliveryIn, expectStatus, redisSnapshot } from "./e2e.support.js";

let service: TestService;
let client: DeliveryServiceClient;
let redis: Redis;

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl(), config: { maxWatchers: 3 } });
  client = service.client();
  redis = connectRedis(testRedisUrl());
  await deliveryIn(client, "READY", "ed-ready");
  await deliveryIn(client, "ACTIVE", "ed-active");
  await deliveryIn(client, "COLLECTED", "ed-collected");
});

afterAll(async () => {
  redis?.disconnect();
  await service?.stop();
});

describe("INVALID_ARGUMENT", () => {
  it("lists one BadRequest violation per bad field, named as in the proto", async () => {
    const error = await expectStatus(
      call(client, "pickupProducts", { deliveryId: "bad id", purchasePrice: -1n, quantity: -2n, requestId: "r".repeat(129) }),
      status.INVALID_ARGUMENT,
    );

    expect(error.status.errorInfo?.reason).toBe("INVALID_FIELD");
    expect(violatedFields(error.status)).toEqual(["delivery_id", "purchase_price", "quantity", "request_id"]);
    expect(error.status.errorInfo?.metadata).toEqual({ fields: "delivery_id,purchase_price,quantity,request_id" });
    for (const violation of error.status.badRequest!.fieldViolations) expect(violation.description).toContain(violation.field);
    expect(error.status.retryInfo).toBeUndefined();
  });

  it("names a negative quantity", async () => {
    const error = await expectStatus(
      call(client, "deliverProducts", { deliveryId: "ed-collected", sellPrice: 1n, quantity: -1n }),
      status.INVALID_ARGUMENT,
    );

    expect(violatedFields(error.status)).toEqual(["quantity"]);
    expect(error.status.badRequest?.fieldViolations[0]?.description).toBe("quantity must be at least 1, got -1");
  });

  it("gives a foreign page token its own reason", async () => {
    const error = await expectStatus(call(client, "listDeliveries", { pageToken: "not-a-token!" }), status.INVALID_ARGUMENT);

    expect(error.status.errorInfo?.reason).toBe("PAGE_TOKEN_INVALID");
    expect(violatedFields(error.status)).toEqual(["page_token"]);
  });

  it("says which inputs made an amount overflow", async () => {
    const error = await expectStatus(
      call(client, "pickupProducts", { deliveryId: "ed-active", purchasePrice: 2n ** 27n, quantity: 2n ** 27n }),
      status.INVALID_ARGUMENT,
    );

    expect(error.status.errorInfo?.reason).toBe("AMOUNT_OUT_OF_RANGE");
    expect(error.status.errorInfo?.metadata).toEqual({ limit: String(Number.MAX_SAFE_INTEGER) });
    expect(violatedFields(error.status)).toEqual(["purchase_price", "quantity"]);
  });

  it("names request_id when it is reused for another command", async () => {
    await call(client, "increaseBudget", { deliveryId: "ed-ready", amount: 1n, requestId: "ed-reuse" });

    const error = await expectStatus(
      call(client, "increaseBudget", { deliveryId: "ed-ready", amount: 2n, requestId: "ed-reuse" }),
      status.INVALID_ARGUMENT,
    );

    expect(error.status.errorInfo?.reason).toBe("REQUEST_ID_REUSED");
    expect(error.status.errorInfo?.metadata).toEqual({ deliveryId: "ed-ready", requestId: "ed-reuse" });
    expect(violatedFields(error.status)).toEqual(["request_id"]);
  });
});

describe("NOT_FOUND and ALREADY_EXISTS", () => {
  it("DELIVERY_NOT_FOUND with the id and a ResourceInfo", async () => {
    const error = await expectStatus(call(client, "getDelivery", { deliveryId: "ed-nobody" }), status.NOT_FOUND);

    expect(error.status.errorInfo).toMatchObject({ reason: "DELIVERY_NOT_FOUND", metadata: { deliveryId: "ed-nobody" } });
    expect(error.status.resourceInfo).toMatchObject({ resourceType: "delivery.v1.Delivery", resourceName: "deliveries/ed-nobody" });
  });

  it("VERSION_NOT_FOUND with the asked and the current version", async () => {
    const error = await expectStatus(call(client, "getDelivery", { deliveryId: "ed-ready", atVersion: 99n }), status.NOT_FOUND);

    expect(error.status.errorInfo?.reason).toBe("VERSION_NOT_FOUND");
    expect(error.status.errorInfo?.metadata).toMatchObject({ deliveryId: "ed-ready", version: "99" });
    expect(Number(error.status.errorInfo?.metadata.currentVersion)).toBeGreaterThanOrEqual(1);
  });

  it("DELIVERY_EXISTS for a second create of an id", async () => {
    const error = await expectStatus(call(client, "createDelivery", { deliveryId: "ed-ready", budget: 1n }), status.ALREADY_EXISTS);

    expect(error.status.errorInfo).toMatchObject({ reason: "DELIVERY_EXISTS", metadata: { deliveryId: "ed-ready" } });
  });
});

describe("FAILED_PRECONDITION", () => {
  it("INVALID_TRANSITION with the status, version, allowed statuses and a PreconditionFailure", async () => {
    const error = await expectStatus(call(client, "startDelivery", { deliveryId: "ed-active" }), status.FAILED_PRECONDITION);

    expect(error.status.errorInfo?.reason).toBe("INVALID_TRANSITION");
    expect(error.status.errorInfo?.metadata).toEqual({ deliveryId: "ed-active", status: "ACTIVE", currentVersion: "2", allowedStatuses: "READY" });
    expect(error.status.preconditionFailure?.violations).toEqual([
      { type: "STATUS", subject: "deliveries/ed-active", description: error.details },
    ]);
  });

  it("INSUFFICIENT_BUDGET with the budget and what was required", async () => {
    const error = await expectStatus(
      call(client, "pickupProducts", { deliveryId: "ed-active", purchasePrice: 1001n, quantity: 1n }),
      status.FAILED_PRECONDITION,
    );

    expect(error.status.errorInfo?.reason).toBe("INSUFFICIENT_BUDGET");
    expect(error.status.errorInfo?.metadata).toMatchObject({ deliveryId: "ed-active", budget: "1000", required: "1001", status: "ACTIVE" });
    expect(error.status.preconditionFailure?.violations[0]).toMatchObject({ type: "BUDGET", subject: "deliveries/ed-active" });
  });

  it("INSUFFICIENT_QUANTITY with what is left and what was asked", async () => {
    const error = await expectStatus(
      call(client, "deliverProducts", { deliveryId: "ed-collected", sellPrice: 1n, quantity: 5n }),
      status.FAILED_PRECONDITION,
    );

    expect(error.status.errorInfo?.reason).toBe("INSUFFICIENT_QUANTITY");
    expect(error.status.errorInfo?.metadata).toMatchObject({ quantity: "4", requested: "5", status: "COLLECTED" });
    expect(error.status.preconditionFailure?.violations[0]).toMatchObject({ type: "QUANTITY" });
  });
});

describe("ABORTED", () => {
  it("VERSION_MISMATCH carries the current and the expected version, and no retry advice", async () => {
    const error = await expectStatus(call(client, "cancelDelivery", { deliveryId: "ed-collected", expectedVersion: 1n }), status.ABORTED);

    expect(error.status.errorInfo?.reason).toBe("VERSION_MISMATCH");
    expect(error.status.errorInfo?.metadata).toEqual({ deliveryId: "ed-collected", currentVersion: "3", expectedVersion: "1" });
    expect(error.status.preconditionFailure?.violations[0]).toMatchObject({ type: "VERSION", subject: "deliveries/ed-collected" });
    expect(error.status.retryInfo).toBeUndefined();
  });
});

describe("a watch refused before it starts", () => {
  it("carries the same details as the unary calls", async () => {
    const end = await within(watch(client, { deliveryId: "ed-nobody" }).ended, "the watch to end");

    expect(status[end.code]).toBe("NOT_FOUND");
    expect(statusDetailsOf(end)?.errorInfo).toMatchObject({ reason: "DELIVERY_NOT_FOUND", metadata: { deliveryId: "ed-nobody" } });
  });
});

describe("RESOURCE_EXHAUSTED", () => {
  it("TOO_MANY_WATCHERS with the limit and a retry delay", async () => {
    const open = [0, 1, 2].map(() => watch(client, { deliveryId: "ed-ready" }));
    await within(Promise.all(open.map((w) => w.first)), "three watches to start");

    const refused = watch(client, { deliveryId: "ed-ready" });
    const end = await within(refused.ended, "the fourth watch to be refused");

    for (const w of open) w.cancel();
    expect(status[end.code]).toBe("RESOURCE_EXHAUSTED");
    const details = statusDetailsOf(end);
    expect(details).toMatchObject({ code: end.code, message: end.details });
    expect(details?.errorInfo).toMatchObject({ domain: "delivery.v1", reason: "TOO_MANY_WATCHERS", metadata: { maxWatchers: "3" } });
    expect(details?.retryDelayMs).toBe(5_000);
  });
});

/** A client that sends raw bytes as the request of any method of the service. */
function rawClient(): Client & { [method: string]: (...args: unknown[]) => unknown } {
  const raw: { [name: string]: ServiceDefinition[string] } = {};
  for (const [name, method] of Object.entries(DeliveryServiceService)) {
    raw[name] = { ...method, requestSerialize: (bytes: Buffer) => bytes, responseDeserialize: (bytes: Buffer) => bytes };
  }
  const Constructor = makeGenericClientConstructor(raw, "RawDeliveryService");
  return new Constructor(service.address, credentials.createInsecure()) as never;
}

/** Bytes that no message decodes: a field 1 (string) whose length runs past the end. */
const MALFORMED = Buffer.from([0x0a, 0x7f, 0x61]);

describe("MALFORMED_REQUEST", () => {
  const methods = Object.entries(DeliveryServiceService).map(([name, method]) => [method.path, name, method.responseStream] as const);

  it.each(methods)("%s answers INVALID_ARGUMENT and writes nothing", async (path, name, streaming) => {
    const raw = rawClient();
    const before = await redisSnapshot(redis, service.keyPrefix);
    try {
      const outcome = streaming
        ? await new Promise<{ code: status; details: string; metadata: Metadata }>((resolve) => {
            const stream = raw[name]!(MALFORMED, new Metadata()) as NodeJS.EventEmitter;
            stream.on("data", () => {});
            stream.on("error", () => {});
            stream.on("status", resolve);
          })
        : await new Promise<{ code: status; details: string; metadata: Metadata }>((resolve) => {
            raw[name]!(MALFORMED, new Metadata(), (error: { code: status; details: string; metadata: Metadata } | null) => resolve(error!));
          });

      expect(status[outcome.code]).toBe("INVALID_ARGUMENT");
      const details = statusDetailsOf(outcome);
      expect(details?.errorInfo).toEqual({ domain: "delivery.v1", reason: "MALFORMED_REQUEST", metadata: { method: path } });
      expect(details?.message).toBe(outcome.details);
      expect(await redisSnapshot(redis, service.keyPrefix)).toEqual(before);
    } finally {
      raw.close();
    }
  });
});
