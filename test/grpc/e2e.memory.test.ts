/**
 * The in-process store (REDIS_URL unset) behind the same gRPC surface: a short
 * life, idempotency, listing, and a few status codes.
 */
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { healthClient } from "../support/health.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryIn, expectStatus, MAX_SAFE, RANDOM_UUID, STATUS, TOO_BIG } from "./e2e.support.js";

let service: TestService;
let client: DeliveryServiceClient;

beforeAll(async () => {
  service = await startTestService({});
  client = service.client();
});

afterAll(async () => {
  await service?.stop();
});

describe("a delivery on the memory store", () => {
  const id = "mem-1";

  it("is created, started, picked up and delivered in two parts to COMPLETED", async () => {
    const created = await call(client, "createDelivery", { deliveryId: id, budget: 1000n, notes: "memory" });
    const started = await call(client, "startDelivery", { deliveryId: id, expectedVersion: 1n });
    const picked = await call(client, "pickupProducts", { deliveryId: id, purchasePrice: 100n, quantity: 3n });
    const part = await call(client, "deliverProducts", { deliveryId: id, sellPrice: 150n, quantity: 1n });
    const rest = await call(client, "deliverProducts", { deliveryId: id, sellPrice: 200n, quantity: 2n });

    expect([created, started, picked, part, rest].map((r) => [r.event?.version, r.event?.kind?.$case, r.delivery?.status])).toEqual([
      [1n, "created", STATUS.READY],
      [2n, "started", STATUS.ACTIVE],
      [3n, "productsPickedUp", STATUS.COLLECTED],
      [4n, "productsDelivered", STATUS.COLLECTED],
      [5n, "productsDelivered", STATUS.COMPLETED],
    ]);
    expect(rest.delivery).toEqual({
      id,
      status: STATUS.COMPLETED,
      budget: 1250n,
      notes: "memory",
      purchasePrice: 100n,
      sellPrice: 200n,
      quantity: 0n,
      deliveredQuantity: 3n,
      version: 5n,
      createdAt: created.event?.occurredAt,
      updatedAt: rest.event?.occurredAt,
    });
  });

  it("reads back at every version as the commands returned it", async () => {
    const { events } = await call(client, "listDeliveryEvents", { deliveryId: id });
    const versions = [];
    for (const e of events) versions.push((await call(client, "getDelivery", { deliveryId: id, atVersion: e.version })).delivery?.version);

    expect(events.map((e) => e.version)).toEqual([1n, 2n, 3n, 4n, 5n]);
    expect(versions).toEqual([1n, 2n, 3n, 4n, 5n]);
  });

  it("pages its events with after_version and page_size", async () => {
    const { events } = await call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: 1n, pageSize: 2 });

    expect(events.map((e) => e.version)).toEqual([2n, 3n]);
  });

  it("is increased and cancelled in another life", async () => {
    const { delivery } = await call(client, "createDelivery", { budget: 5n });
    await call(client, "increaseBudget", { deliveryId: delivery!.id, amount: 5n });

    const cancelled = await call(client, "cancelDelivery", { deliveryId: delivery!.id, reason: "memory" });

    expect(delivery?.id).toMatch(RANDOM_UUID);
    expect(cancelled.delivery).toMatchObject({ status: STATUS.CANCELLED, budget: 10n, version: 3n });
  });

  it("replays a retried command with the same request_id", async () => {
    await call(client, "createDelivery", { deliveryId: "mem-retry", budget: 1n });
    const first = await call(client, "increaseBudget", { deliveryId: "mem-retry", amount: 1n, requestId: "mem-r" });

    const retry = await call(client, "increaseBudget", { deliveryId: "mem-retry", amount: 1n, requestId: "mem-r" });

    expect(retry).toEqual(first);
    expect((await call(client, "getDelivery", { deliveryId: "mem-retry" })).delivery?.version).toBe(2n);
  });
});

describe("listing on the memory store", () => {
  it("returns every delivery oldest first across pages, the last page without a token", async () => {
    const seen: string[] = [];
    const tokens: string[] = [];
    let pageToken = "";
    do {
      const page = await call(client, "listDeliveries", { pageSize: 2, pageToken });
      seen.push(...page.deliveries.map((d) => d.id));
      tokens.push(page.nextPageToken);
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && tokens.length < 10);
    const { deliveries: all } = await call(client, "listDeliveries", {});

    expect(seen).toEqual(all.map((d) => d.id));
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen[0]).toBe("mem-1");
    expect(tokens.at(-1)).toBe("");
  });
});

describe("status codes on the memory store", () => {
  it("INVALID_ARGUMENT for a malformed id", async () => {
    await expectStatus(call(client, "getDelivery", { deliveryId: "a/b" }), status.INVALID_ARGUMENT);
  });

  it("INVALID_ARGUMENT for an amount of 2^53", async () => {
    await expectStatus(call(client, "createDelivery", { deliveryId: "mem-big", budget: TOO_BIG }), status.INVALID_ARGUMENT);
  });

  it("INVALID_ARGUMENT for a budget increased past 2^53-1", async () => {
    await call(client, "createDelivery", { deliveryId: "mem-full", budget: MAX_SAFE });

    await expectStatus(call(client, "increaseBudget", { deliveryId: "mem-full", amount: 1n }), status.INVALID_ARGUMENT);
  });

  it("INVALID_ARGUMENT for a page token it did not issue", async () => {
    await expectStatus(call(client, "listDeliveries", { pageToken: "garbage!" }), status.INVALID_ARGUMENT);
  });

  it("NOT_FOUND for an unknown delivery", async () => {
    await expectStatus(call(client, "startDelivery", { deliveryId: "mem-nobody" }), status.NOT_FOUND);
  });

  it("ALREADY_EXISTS for a second create of an id", async () => {
    await expectStatus(call(client, "createDelivery", { deliveryId: "mem-1" }), status.ALREADY_EXISTS);
  });

  it("FAILED_PRECONDITION, naming the status, for a start of a COMPLETED delivery", async () => {
    const error = await expectStatus(call(client, "startDelivery", { deliveryId: "mem-1" }), status.FAILED_PRECONDITION);

    expect(error.details).toContain("COMPLETED");
  });

  it("ABORTED for a stale expected_version, writing nothing", async () => {
    await deliveryIn(client, "READY", "mem-stale");

    await expectStatus(call(client, "cancelDelivery", { deliveryId: "mem-stale", expectedVersion: 2n }), status.ABORTED);

    expect((await call(client, "getDelivery", { deliveryId: "mem-stale" })).delivery).toMatchObject({
      version: 1n,
      status: STATUS.READY,
    });
  });
});

describe("health on the memory store", () => {
  it("reports SERVING", async () => {
    const health = healthClient(service.address);
    try {
      expect([await health.check(""), await health.check("delivery.v1.DeliveryService")]).toEqual(["SERVING", "SERVING"]);
    } finally {
      health.close();
    }
  });
});
