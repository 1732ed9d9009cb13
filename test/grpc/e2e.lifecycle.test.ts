/**
 * The whole life of deliveries through a real client, the real server and a
 * real Redis: every response field, the log, reads at every version, listing.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Delivery, DeliveryEvent, DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { connectRedis, testRedisUrl } from "../support/redis.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryKeys, NAME_BASED_UUID, RANDOM_UUID, STATUS } from "./e2e.support.js";

let service: TestService;
let client: DeliveryServiceClient;
let redis: Redis;

beforeAll(async () => {
  service = await startTestService({ redisUrl: testRedisUrl() });
  client = service.client();
  redis = connectRedis(testRedisUrl());
});

afterAll(async () => {
  redis?.disconnect();
  await service?.stop();
});

/** Runs a call and returns its response with the wall-clock window it ran in. */
async function timed<T>(run: () => Promise<T>): Promise<T & { window: [number, number] }> {
  const start = Date.now();
  const response = await run();
  return { ...response, window: [start, Date.now()] };
}

function expectOccurredWithin(event: DeliveryEvent | undefined, [start, end]: [number, number]): void {
  const at = event?.occurredAt?.getTime();
  expect(at).toBeGreaterThanOrEqual(start);
  expect(at).toBeLessThanOrEqual(end);
}

describe("a delivery picked up and delivered in two parts", () => {
  const id = "order-1001";
  /** What each command answered, by version - 1. */
  const events: DeliveryEvent[] = [];
  const states: Delivery[] = [];
  const created = () => events[0]!.occurredAt;

  function remember(response: { delivery?: Delivery | undefined; event?: DeliveryEvent | undefined }): void {
    events.push(response.event!);
    states.push(response.delivery!);
  }

  it("is created READY at version 1 under the client's id", async () => {
    const response = await timed(() =>
      call(client, "createDelivery", { deliveryId: id, budget: 5000n, notes: "ring twice", requestId: "create-1001" }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 1n,
      occurredAt: expect.any(Date),
      requestId: "create-1001",
      actor: "",
      kind: { $case: "created", created: { budget: 5000n, notes: "ring twice" } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.READY,
      budget: 5000n,
      notes: "ring twice",
      purchasePrice: 0n,
      sellPrice: 0n,
      quantity: 0n,
      deliveredQuantity: 0n,
      version: 1n,
      createdAt: response.event!.occurredAt,
      updatedAt: response.event!.occurredAt,
    });
    remember(response);
  });

  it("starts: READY -> ACTIVE at version 2", async () => {
    const response = await timed(() =>
      call(client, "startDelivery", { deliveryId: id, expectedVersion: 1n, requestId: "start-1001" }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 2n,
      occurredAt: expect.any(Date),
      requestId: "start-1001",
      actor: "",
      kind: { $case: "started", started: {} },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      ...states[0],
      status: STATUS.ACTIVE,
      version: 2n,
      createdAt: created(),
      updatedAt: response.event!.occurredAt,
    });
    remember(response);
  });

  it("picks up 5 products at 300 each: ACTIVE -> COLLECTED, budget 5000 - 1500", async () => {
    const response = await timed(() =>
      call(client, "pickupProducts", { deliveryId: id, purchasePrice: 300n, quantity: 5n }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 3n,
      occurredAt: expect.any(Date),
      requestId: "",
      actor: "",
      kind: { $case: "productsPickedUp", productsPickedUp: { purchasePrice: 300n, quantity: 5n } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.COLLECTED,
      budget: 3500n,
      notes: "ring twice",
      purchasePrice: 300n,
      sellPrice: 0n,
      quantity: 5n,
      deliveredQuantity: 0n,
      version: 3n,
      createdAt: created(),
      updatedAt: response.event!.occurredAt,
    });
    remember(response);
  });

  it("delivers 2 of them at 450 each and stays COLLECTED with 3 left", async () => {
    const response = await timed(() =>
      call(client, "deliverProducts", { deliveryId: id, sellPrice: 450n, quantity: 2n, requestId: "deliver-1" }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 4n,
      occurredAt: expect.any(Date),
      requestId: "deliver-1",
      actor: "",
      kind: { $case: "productsDelivered", productsDelivered: { sellPrice: 450n, quantity: 2n } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.COLLECTED,
      budget: 4400n,
      notes: "ring twice",
      purchasePrice: 300n,
      sellPrice: 450n,
      quantity: 3n,
      deliveredQuantity: 2n,
      version: 4n,
      createdAt: created(),
      updatedAt: response.event!.occurredAt,
    });
    remember(response);
  });

  it("delivers the remaining 3 at 500 each: COLLECTED -> COMPLETED", async () => {
    const response = await timed(() =>
      call(client, "deliverProducts", { deliveryId: id, sellPrice: 500n, quantity: 3n, expectedVersion: 4n }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 5n,
      occurredAt: expect.any(Date),
      requestId: "",
      actor: "",
      kind: { $case: "productsDelivered", productsDelivered: { sellPrice: 500n, quantity: 3n } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.COMPLETED,
      budget: 5900n,
      notes: "ring twice",
      purchasePrice: 300n,
      sellPrice: 500n,
      quantity: 0n,
      deliveredQuantity: 5n,
      version: 5n,
      createdAt: created(),
      updatedAt: response.event!.occurredAt,
    });
    remember(response);
  });

  it("reads back as the state the last command returned", async () => {
    const { delivery } = await call(client, "getDelivery", { deliveryId: id });

    expect(delivery).toEqual(states[4]);
  });

  it.each([1, 2, 3, 4, 5])("reads back at version %i as the state that command returned", async (version) => {
    const { delivery } = await call(client, "getDelivery", { deliveryId: id, atVersion: BigInt(version) });

    expect(delivery).toEqual(states[version - 1]);
  });

  it("lists its events ascending, exactly as the commands returned them", async () => {
    const { events: listed } = await call(client, "listDeliveryEvents", { deliveryId: id });

    expect(listed).toEqual(events);
  });

  it("lists only the events after after_version", async () => {
    const { events: listed } = await call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: 2n });

    expect(listed).toEqual(events.slice(2));
  });

  it("pages through its events with page_size and after_version", async () => {
    const pages: bigint[][] = [];
    let after = 0n;
    for (;;) {
      const { events: page } = await call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: after, pageSize: 2 });
      if (page.length === 0) break;
      pages.push(page.map((e) => e.version));
      after = page.at(-1)!.version;
    }

    expect(pages).toEqual([[1n, 2n], [3n, 4n], [5n]]);
  });

  it("lists no events after its current version", async () => {
    const { events: listed } = await call(client, "listDeliveryEvents", { deliveryId: id, afterVersion: 5n });

    expect(listed).toEqual([]);
  });

  it("is stored as a log of five events, indexed as COMPLETED, with five feed entries", async () => {
    const keys = deliveryKeys(service.keyPrefix, id);

    expect(await redis.llen(keys.log)).toBe(5);
    expect(await redis.zrange(keys.index("COMPLETED"), "0", "-1")).toContain(`${String(created()!.getTime()).padStart(13, "0")}${id}`);
    const feed = (await redis.xrange(keys.feed, "-", "+")).filter(([, fields]) => fields[1] === id);
    expect(feed.map(([, fields]) => fields[3])).toEqual(["1", "2", "3", "4", "5"]);
  });
});

describe("a delivery whose budget is increased, then cancelled", () => {
  let id: string;
  let createdAt: Date | undefined;

  it("is created without a client id or request_id and gets a random UUID", async () => {
    const { delivery, event } = await call(client, "createDelivery", { budget: 0n });

    expect(delivery?.id).toMatch(RANDOM_UUID);
    expect(event).toEqual({
      deliveryId: delivery!.id,
      version: 1n,
      occurredAt: delivery!.createdAt,
      requestId: "",
      actor: "",
      kind: { $case: "created", created: { budget: 0n, notes: "" } },
    });
    expect(delivery).toMatchObject({ status: STATUS.READY, budget: 0n, notes: "", version: 1n });
    id = delivery!.id;
    createdAt = delivery!.createdAt;
  });

  it("gets 250 more budget at version 2", async () => {
    const response = await timed(() => call(client, "increaseBudget", { deliveryId: id, amount: 250n, requestId: "top-up" }));

    expect(response.event).toEqual({
      deliveryId: id,
      version: 2n,
      occurredAt: expect.any(Date),
      requestId: "top-up",
      actor: "",
      kind: { $case: "budgetIncreased", budgetIncreased: { amount: 250n } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.READY,
      budget: 250n,
      notes: "",
      purchasePrice: 0n,
      sellPrice: 0n,
      quantity: 0n,
      deliveredQuantity: 0n,
      version: 2n,
      createdAt,
      updatedAt: response.event!.occurredAt,
    });
  });

  it("is cancelled with a reason: READY -> CANCELLED at version 3", async () => {
    const response = await timed(() =>
      call(client, "cancelDelivery", { deliveryId: id, reason: "customer moved", expectedVersion: 2n }),
    );

    expect(response.event).toEqual({
      deliveryId: id,
      version: 3n,
      occurredAt: expect.any(Date),
      requestId: "",
      actor: "",
      kind: { $case: "cancelled", cancelled: { reason: "customer moved" } },
    });
    expectOccurredWithin(response.event, response.window);
    expect(response.delivery).toEqual({
      id,
      status: STATUS.CANCELLED,
      budget: 250n,
      notes: "",
      purchasePrice: 0n,
      sellPrice: 0n,
      quantity: 0n,
      deliveredQuantity: 0n,
      version: 3n,
      createdAt,
      updatedAt: response.event!.occurredAt,
    });
  });

  it("reads back at every version with the matching status and budget", async () => {
    const seen = [];
    for (const atVersion of [1n, 2n, 3n]) {
      const { delivery } = await call(client, "getDelivery", { deliveryId: id, atVersion });
      seen.push({ version: delivery?.version, status: delivery?.status, budget: delivery?.budget });
    }

    expect(seen).toEqual([
      { version: 1n, status: STATUS.READY, budget: 0n },
      { version: 2n, status: STATUS.READY, budget: 250n },
      { version: 3n, status: STATUS.CANCELLED, budget: 250n },
    ]);
  });

  it("lists the created, budgetIncreased and cancelled events in order", async () => {
    const { events } = await call(client, "listDeliveryEvents", { deliveryId: id });

    expect(events.map((e) => [e.version, e.kind?.$case])).toEqual([
      [1n, "created"],
      [2n, "budgetIncreased"],
      [3n, "cancelled"],
    ]);
  });
});

describe("ids chosen by the server", () => {
  it("derives a name-based UUID from the request_id of a create without an id", async () => {
    const { delivery, event } = await call(client, "createDelivery", { budget: 10n, requestId: "checkout-7f3a" });

    expect(delivery?.id).toMatch(NAME_BASED_UUID);
    expect(event?.deliveryId).toBe(delivery?.id);
    expect(event?.requestId).toBe("checkout-7f3a");
  });

  it("gives two creates without an id or request_id different ids", async () => {
    const first = await call(client, "createDelivery", { budget: 1n });
    const second = await call(client, "createDelivery", { budget: 1n });

    expect(first.delivery?.id).not.toBe(second.delivery?.id);
  });

  it("gives creates with different request_ids different ids", async () => {
    const first = await call(client, "createDelivery", { budget: 1n, requestId: "cart-a" });
    const second = await call(client, "createDelivery", { budget: 1n, requestId: "cart-b" });

    expect(first.delivery?.id).not.toBe(second.delivery?.id);
  });
});

describe("listing deliveries", () => {
  // Its own prefix, so the index holds exactly the deliveries made here.
  let listing: TestService;
  let listClient: DeliveryServiceClient;
  const ids = ["list-a", "list-b", "list-c", "list-d", "list-e", "list-f", "list-g"];

  beforeAll(async () => {
    listing = await startTestService({ redisUrl: testRedisUrl() });
    listClient = listing.client();
    for (const deliveryId of ids) await call(listClient, "createDelivery", { deliveryId, budget: 100n });
    await call(listClient, "startDelivery", { deliveryId: "list-c" });
  });

  afterAll(async () => {
    await listing?.stop();
  });

  async function allPages(pageSize: number) {
    const pages: { ids: string[]; nextPageToken: string }[] = [];
    let pageToken = "";
    do {
      const page = await call(listClient, "listDeliveries", { pageSize, pageToken });
      pages.push({ ids: page.deliveries.map((d) => d.id), nextPageToken: page.nextPageToken });
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && pages.length <= ids.length);
    return pages;
  }

  it("returns them oldest first across pages, each exactly once", async () => {
    const pages = await allPages(3);

    expect(pages.map((p) => p.ids)).toEqual([ids.slice(0, 3), ids.slice(3, 6), ids.slice(6)]);
  });

  it("has a next_page_token on every page but the last, where it is empty", async () => {
    const pages = await allPages(3);

    expect(pages.map((p) => p.nextPageToken !== "")).toEqual([true, true, false]);
  });

  it("ends after one page when the page size equals the number of deliveries", async () => {
    const pages = await allPages(ids.length);

    expect(pages).toEqual([{ ids, nextPageToken: "" }]);
  });

  it("uses the default page size when page_size is 0", async () => {
    const page = await call(listClient, "listDeliveries", {});

    expect(page.deliveries.map((d) => d.id)).toEqual(ids);
    expect(page.nextPageToken).toBe("");
  });

  it("shows each delivery's current state", async () => {
    const page = await call(listClient, "listDeliveries", {});
    const started = page.deliveries.find((d) => d.id === "list-c");

    expect(started).toEqual((await call(listClient, "getDelivery", { deliveryId: "list-c" })).delivery);
    expect(started).toMatchObject({ status: STATUS.ACTIVE, version: 2n });
  });

  it("continues from an earlier token to deliveries created after it was issued", async () => {
    const firstPage = await call(listClient, "listDeliveries", { pageSize: 4 });
    await call(listClient, "createDelivery", { deliveryId: "list-h", budget: 1n });

    const rest = await call(listClient, "listDeliveries", { pageSize: 10, pageToken: firstPage.nextPageToken });

    expect(rest.deliveries.map((d) => d.id)).toEqual([...ids.slice(4), "list-h"]);
    expect(rest.nextPageToken).toBe("");
  });
});
