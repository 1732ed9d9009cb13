/**
 * ListDeliveries by status and order (AIP-132), through the generated gRPC
 * client, on both stores: Redis (the shared test Redis, a key prefix per
 * service) and the in-process store (REDIS_URL unset). Every service started
 * here sees only its own deliveries, so each walk can be compared exactly.
 */
import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Delivery, type DeliveryServiceClient, DeliveryStatus } from "../../src/gen/delivery/v1/delivery.js";
import { testRedisUrl } from "../support/redis.js";
import { violatedFields } from "../support/statusDetails.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { deliveryIn, expectStatus, STATUS, type StatusName } from "./e2e.support.js";

/** Unique per run: the shared Redis may still hold an earlier run's keys (under other prefixes). */
const RUN = randomBytes(3).toString("hex");

const BACKENDS: readonly [name: string, options: () => { redisUrl?: string }][] = [
  ["Redis", () => ({ redisUrl: testRedisUrl() })],
  ["memory", () => ({})],
];

const ALL_STATUSES: readonly StatusName[] = ["READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"];
const NAME_OF = Object.fromEntries(Object.entries(STATUS).map(([name, n]) => [n, name])) as Record<number, StatusName>;

/** Every spelling of order_by the service accepts, and the order it means. */
const ORDERS: readonly [orderBy: string, order: "asc" | "desc"][] = [
  ["", "asc"],
  ["created_at", "asc"],
  ["created_at desc", "desc"],
  ["  created_at   desc ", "desc"],
];

interface Query {
  readonly statuses?: readonly DeliveryStatus[];
  readonly orderBy?: string;
  readonly pageSize?: number;
}

interface Page {
  readonly deliveries: readonly Delivery[];
  readonly nextPageToken: string;
}

function listPage(client: DeliveryServiceClient, query: Query, pageToken = ""): Promise<Page> {
  return call(client, "listDeliveries", {
    statuses: [...(query.statuses ?? [])],
    orderBy: query.orderBy ?? "",
    pageSize: query.pageSize ?? 0,
    pageToken,
  });
}

/**
 * Every page of a query, first to last; `between(pageNumber, page)` runs after
 * each page that has a next one (to change statuses mid-walk).
 */
async function walk(
  client: DeliveryServiceClient,
  query: Query,
  between?: (pageNumber: number, page: Page) => Promise<void>,
): Promise<Page[]> {
  const pages: Page[] = [];
  let pageToken = "";
  for (;;) {
    const page = await listPage(client, query, pageToken);
    pages.push(page);
    if (page.nextPageToken === "") return pages;
    if (pages.length > 200) throw new Error("ListDeliveries never reached a last page");
    await between?.(pages.length, page);
    pageToken = page.nextPageToken;
  }
}

const idsOf = (pages: readonly Page[]) => pages.flatMap((p) => p.deliveries.map((d) => d.id));

/** The store's order: creation time in ms, then id (byte order). */
const orderKey = (d: Pick<Delivery, "id" | "createdAt">) => String(d.createdAt!.getTime()).padStart(13, "0") + d.id;

function sortedIds(deliveries: readonly Pick<Delivery, "id" | "createdAt">[], order: "asc" | "desc"): string[] {
  const sorted = [...deliveries].sort((a, b) => (orderKey(a) < orderKey(b) ? -1 : orderKey(a) > orderKey(b) ? 1 : 0));
  if (order === "desc") sorted.reverse();
  return sorted.map((d) => d.id);
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out.length > 0 ? out : [[]];
}

/** Creates `id` in `target` and reads it back (for its created_at). */
async function make(client: DeliveryServiceClient, target: StatusName, id: string): Promise<Delivery> {
  await deliveryIn(client, target, id);
  const { delivery } = await call(client, "getDelivery", { deliveryId: id });
  return delivery!;
}

function expectNoRepeats(ids: readonly string[]): void {
  expect(ids.filter((id, i) => ids.indexOf(id) !== i), "listed twice in one walk").toEqual([]);
}

describe.each(BACKENDS)("ListDeliveries on the %s store", (_backend, options) => {
  describe("a fixed set of deliveries", () => {
    let service: TestService;
    let client: DeliveryServiceClient;
    let fixture: Delivery[];

    /**
     * Thirteen deliveries, statuses interleaved. Ids do not sort in creation
     * order, so deliveries created in the same millisecond test the id
     * tie-break.
     */
    const PLAN: readonly [suffix: string, status: StatusName][] = [
      ["m", "READY"],
      ["c", "ACTIVE"],
      ["x", "COLLECTED"],
      ["a", "COMPLETED"],
      ["q", "CANCELLED"],
      ["B", "READY"],
      ["z", "ACTIVE"],
      ["k", "READY"],
      ["_", "CANCELLED"],
      ["e", "COLLECTED"],
      ["9", "READY"],
      ["-", "ACTIVE"],
      ["t", "COMPLETED"],
    ];

    beforeAll(async () => {
      service = await startTestService(options());
      client = service.client();
      fixture = [];
      for (const [suffix, target] of PLAN) fixture.push(await make(client, target, `${RUN}-f${suffix}`));
    });

    afterAll(async () => {
      await service?.stop();
    });

    const expected = (names: readonly StatusName[], order: "asc" | "desc") =>
      sortedIds(
        fixture.filter((d) => names.length === 0 || names.includes(NAME_OF[d.status]!)),
        order,
      );

    it("has the fixture in the statuses it was made for", () => {
      expect(fixture.map((d) => NAME_OF[d.status])).toEqual(PLAN.map(([, s]) => s));
    });

    it("lists everything oldest first by default (no statuses, no order_by), on one page", async () => {
      const page = await listPage(client, {});

      expect(page.deliveries.map((d) => d.id)).toEqual(expected([], "asc"));
      expect(page.nextPageToken).toBe("");
      // The current state of each, as GetDelivery has it.
      expect(page.deliveries).toEqual(sortedIds(fixture, "asc").map((id) => fixture.find((d) => d.id === id)));
    });

    const FILTERS: readonly StatusName[][] = [
      ...ALL_STATUSES.map((s) => [s]),
      ["READY", "ACTIVE"],
      ["READY", "CANCELLED"],
      ["COLLECTED", "COMPLETED", "CANCELLED"],
      [...ALL_STATUSES],
      [],
    ];
    const PAGE_SIZES = [1, 2, 3, 5, 13, 0];

    describe.each(ORDERS)("order_by %j", (orderBy, order) => {
      it.each(FILTERS.map((f) => [f.join(",") || "(none)", f] as const))(
        "statuses %s: each matching delivery once, in order, on full pages, at every page size",
        async (_label, names) => {
          const want = expected(names, order);
          for (const pageSize of PAGE_SIZES) {
            const pages = await walk(client, { statuses: names.map((s) => STATUS[s]), orderBy, pageSize });

            const size = pageSize === 0 ? 50 : pageSize;
            expect(
              pages.map((p) => p.deliveries.map((d) => d.id)),
              `page size ${pageSize}`,
            ).toEqual(chunks(want, size));
            for (const delivery of pages.flatMap((p) => p.deliveries)) {
              if (names.length > 0) expect(names).toContain(NAME_OF[delivery.status]);
            }
          }
        },
      );
    });

    it("treats statuses as a set: repeats and order change neither the pages nor which token continues them", async () => {
      const repeated = { statuses: [STATUS.ACTIVE, STATUS.READY, STATUS.ACTIVE], pageSize: 2 };
      const plain = { statuses: [STATUS.READY, STATUS.ACTIVE], pageSize: 2 };

      const a = await walk(client, repeated);
      const b = await walk(client, plain);
      expect(a).toEqual(b);
      expect(idsOf(a)).toEqual(expected(["READY", "ACTIVE"], "asc"));

      // A token of one spelling continues the other, to the same rest.
      const first = await listPage(client, repeated);
      const viaPlain = await listPage(client, plain, first.nextPageToken);
      const viaRepeated = await listPage(client, repeated, first.nextPageToken);
      expect(viaPlain).toEqual(viaRepeated);
      expect(viaPlain).toEqual(a[1]);
      const fromPlain = await listPage(client, plain);
      expect(await listPage(client, { statuses: [STATUS.ACTIVE, STATUS.ACTIVE, STATUS.READY], pageSize: 2 }, fromPlain.nextPageToken)).toEqual(
        a[1],
      );
    });

    it.each([
      ["", "created_at"],
      ["created_at", ""],
      ["created_at desc", "  created_at   desc "],
      ["  created_at   desc ", "created_at desc"],
    ])("accepts a token of order_by %j for order_by %j (the same order)", async (issuedFor, usedWith) => {
      const query = { statuses: [STATUS.READY, STATUS.CANCELLED], pageSize: 2 };
      const first = await listPage(client, { ...query, orderBy: issuedFor });
      const pages = await walk(client, { ...query, orderBy: issuedFor });

      expect(await listPage(client, { ...query, orderBy: usedWith }, first.nextPageToken)).toEqual(pages[1]);
    });

    describe("a token from another query", () => {
      const OTHER: readonly [label: string, issuedFor: Query, usedWith: Query][] = [
        ["other statuses", { statuses: [STATUS.READY] }, { statuses: [STATUS.ACTIVE] }],
        ["a subset of the statuses", { statuses: [STATUS.READY, STATUS.ACTIVE] }, { statuses: [STATUS.READY] }],
        ["a superset of the statuses", { statuses: [STATUS.READY] }, { statuses: [STATUS.READY, STATUS.ACTIVE] }],
        ["no filter, then a filter", {}, { statuses: [STATUS.READY] }],
        ["a filter, then none", { statuses: [STATUS.READY] }, {}],
        ["the other order", { statuses: [STATUS.READY] }, { statuses: [STATUS.READY], orderBy: "created_at desc" }],
        ["the other order, unfiltered", { orderBy: "created_at desc" }, { orderBy: "created_at" }],
        ["other statuses and order", { statuses: [STATUS.READY] }, { statuses: [STATUS.COLLECTED], orderBy: "created_at desc" }],
      ];

      it.each(OTHER)("(%s) is INVALID_ARGUMENT, PAGE_TOKEN_MISMATCH, on page_token", async (_label, issuedFor, usedWith) => {
        const { nextPageToken } = await listPage(client, { ...issuedFor, pageSize: 1 });
        expect(nextPageToken).not.toBe("");

        const error = await expectStatus(listPage(client, { ...usedWith, pageSize: 1 }, nextPageToken), status.INVALID_ARGUMENT);

        expect(error.status.errorInfo?.reason).toBe("PAGE_TOKEN_MISMATCH");
        expect(violatedFields(error.status)).toEqual(["page_token"]);
      });

      it("still continues the query it came from", async () => {
        const { nextPageToken } = await listPage(client, { statuses: [STATUS.READY], pageSize: 1 });
        await expectStatus(listPage(client, { statuses: [STATUS.ACTIVE], pageSize: 1 }, nextPageToken), status.INVALID_ARGUMENT);

        const rest = await listPage(client, { statuses: [STATUS.READY], pageSize: 10 }, nextPageToken);
        expect(rest.deliveries.map((d) => d.id)).toEqual(expected(["READY"], "asc").slice(1));
      });
    });

    describe("a token this service did not issue", () => {
      const b64 = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value), "utf8").toString("base64url");

      it.each([
        ["punctuation", "not-a-token!"],
        ["plain text", "hello"],
        ["base64 of text", b64("hello world")],
        ["base64 of an empty object", b64({})],
        ["base64 of a JSON array", b64([1, 2, 3])],
        ["base64 of null", b64("null")],
        ["a token-shaped object with an empty cursor", b64({ s: [], o: "a", c: "" })],
        ["a token-shaped object with an unknown order", b64({ s: [], o: "x", c: "00000000000001abc" })],
        ["a token-shaped object with a forged cursor", b64({ s: [], o: "a", c: "not a cursor" })],
        ["a token-shaped object with a short timestamp", b64({ s: [], o: "a", c: "123abc" })],
      ])("(%s) is INVALID_ARGUMENT, PAGE_TOKEN_INVALID, on page_token", async (_label, pageToken) => {
        const error = await expectStatus(listPage(client, {}, pageToken), status.INVALID_ARGUMENT);

        expect(error.status.errorInfo?.reason).toBe("PAGE_TOKEN_INVALID");
        expect(violatedFields(error.status)).toEqual(["page_token"]);
      });

      it.each([
        ["with a character changed", (t: string) => (t.startsWith("e") ? "f" : "e") + t.slice(1)],
        ["truncated", (t: string) => t.slice(0, -3)],
        ["with padding added", (t: string) => `${t}=`],
        ["with a character appended", (t: string) => `${t}A`],
      ])("a real token %s is INVALID_ARGUMENT, PAGE_TOKEN_INVALID", async (_label, spoil) => {
        const { nextPageToken } = await listPage(client, { pageSize: 1 });
        const spoiled = spoil(nextPageToken);
        expect(spoiled).not.toBe(nextPageToken);

        const error = await expectStatus(listPage(client, { pageSize: 1 }, spoiled), status.INVALID_ARGUMENT);

        expect(error.status.errorInfo?.reason).toBe("PAGE_TOKEN_INVALID");
        expect(violatedFields(error.status)).toEqual(["page_token"]);
      });
    });

    describe("invalid fields", () => {
      it.each([
        ["UNSPECIFIED", [DeliveryStatus.DELIVERY_STATUS_UNSPECIFIED]],
        ["an unknown number", [9 as DeliveryStatus]],
        ["a negative number", [-1 as DeliveryStatus]],
        ["UNSPECIFIED among valid ones", [STATUS.READY, DeliveryStatus.DELIVERY_STATUS_UNSPECIFIED]],
        ["an unknown number among valid ones", [STATUS.ACTIVE, STATUS.READY, 9 as DeliveryStatus]],
      ])("statuses holding %s is INVALID_ARGUMENT on statuses", async (_label, statuses) => {
        const error = await expectStatus(listPage(client, { statuses }), status.INVALID_ARGUMENT);

        expect(error.status.errorInfo?.reason).toBe("INVALID_FIELD");
        expect(violatedFields(error.status)).toEqual(["statuses"]);
      });

      it("refuses an order_by longer than 64 characters, naming the field", async () => {
        const error = await expectStatus(listPage(client, { orderBy: `created_at${" ".repeat(60)}desc` }), status.INVALID_ARGUMENT);

        expect(violatedFields(error.status)).toEqual(["order_by"]);
        expect(error.status.badRequest?.fieldViolations[0]?.description).toBe("order_by must be at most 64 characters");
      });

      it.each(["id", "created_at asc desc", "updated_at", "desc", "created_at desc asc", "created_at,id", "created_at descending"])(
        "order_by %j is INVALID_ARGUMENT on order_by",
        async (orderBy) => {
          const error = await expectStatus(listPage(client, { orderBy }), status.INVALID_ARGUMENT);

          expect(error.status.errorInfo?.reason).toBe("INVALID_FIELD");
          expect(violatedFields(error.status)).toEqual(["order_by"]);
          expect(error.status.badRequest?.fieldViolations[0]?.description).toContain(orderBy);
        },
      );

      it("reports a bad page_size and a bad order_by together, one violation each", async () => {
        const error = await expectStatus(listPage(client, { pageSize: 501, orderBy: "id" }), status.INVALID_ARGUMENT);

        expect(error.status.errorInfo?.reason).toBe("INVALID_FIELD");
        expect(violatedFields(error.status).sort()).toEqual(["order_by", "page_size"]);
        expect(error.status.errorInfo?.metadata.fields?.split(",").sort()).toEqual(["order_by", "page_size"]);
      });

      it("reports bad statuses, order_by and page_size together, one violation each", async () => {
        const error = await expectStatus(
          listPage(client, { statuses: [DeliveryStatus.DELIVERY_STATUS_UNSPECIFIED], pageSize: 501, orderBy: "updated_at" }),
          status.INVALID_ARGUMENT,
        );

        expect(violatedFields(error.status).sort()).toEqual(["order_by", "page_size", "statuses"]);
      });

      it("accepts the largest page_size", async () => {
        const page = await listPage(client, { pageSize: 500, orderBy: "created_at desc" });

        expect(page.deliveries.map((d) => d.id)).toEqual(expected([], "desc"));
        expect(page.nextPageToken).toBe("");
      });
    });
  });

  describe("paging while statuses change", () => {
    // A service (so a key prefix, or a memory store) per test: each walk starts from a known set.
    let service: TestService | undefined;
    let client: DeliveryServiceClient;
    let serial = 0;

    afterEach(async () => {
      await service?.stop();
      service = undefined;
    });

    /** `count` READY deliveries, in creation order. */
    async function readyDeliveries(count: number): Promise<Delivery[]> {
      service = await startTestService(options());
      client = service.client();
      const made: Delivery[] = [];
      const tag = `${RUN}-w${serial++}`;
      for (let i = 0; i < count; i++) made.push(await make(client, "READY", `${tag}-${String(i).padStart(2, "0")}`));
      return made;
    }

    const start = (id: string) => call(client, "startDelivery", { deliveryId: id });
    const cancel = (id: string) => call(client, "cancelDelivery", { deliveryId: id, reason: "mid-walk" });
    /** A move that may find the delivery already past it (FAILED_PRECONDITION): that is fine here. */
    const unlessDone = (move: Promise<unknown>) =>
      move.catch((error: { code?: number }) => {
        if (error.code !== status.FAILED_PRECONDITION) throw error;
      });

    describe.each([
      ["created_at", "asc"],
      ["created_at desc", "desc"],
    ] as const)("order_by %j", (orderBy, order) => {
      it.each([1, 2, 3])(
        "statuses READY,ACTIVE, %i per page: started ones are listed once, cancelled ones never, listed ones not again",
        async (pageSize) => {
          const made = await readyDeliveries(9);
          const walkOrder = sortedIds(made, order);
          const listed = new Set<string>();
          const cancelledUnlisted = new Set<string>();
          const statusWhenListed = new Map<string, DeliveryStatus>();

          const pages = await walk(client, { statuses: [STATUS.READY, STATUS.ACTIVE], orderBy, pageSize }, async (_n, page) => {
            for (const d of page.deliveries) listed.add(d.id);
            const ahead = walkOrder.filter((id) => !listed.has(id) && !cancelledUnlisted.has(id));
            // Ahead of the walk: one moves on within the filter (READY -> ACTIVE), one leaves it (-> CANCELLED).
            if (ahead[0]) await unlessDone(start(ahead[0]));
            if (ahead[1]) {
              await cancel(ahead[1]);
              cancelledUnlisted.add(ahead[1]);
            }
            // Behind it: an already listed one moves on, another leaves; neither may come back.
            const behind = [...listed];
            await unlessDone(start(behind[0]!));
            if (behind.length > 1) await unlessDone(cancel(behind.at(-1)!));
          });
          for (const d of pages.flatMap((p) => p.deliveries)) statusWhenListed.set(d.id, d.status);
          const ids = idsOf(pages);

          expectNoRepeats(ids);
          expect(ids).toEqual(walkOrder.filter((id) => !cancelledUnlisted.has(id)));
          expect(cancelledUnlisted.size).toBeGreaterThan(0);
          for (const [id, s] of statusWhenListed) expect([STATUS.READY, STATUS.ACTIVE], id).toContain(s);
        },
      );

      it("statuses READY, 2 per page: one started before its page is never listed (as ACTIVE or at all)", async () => {
        const made = await readyDeliveries(7);
        const walkOrder = sortedIds(made, order);
        const left = new Set<string>();
        const listed = new Set<string>();

        const pages = await walk(client, { statuses: [STATUS.READY], orderBy, pageSize: 2 }, async (_n, page) => {
          for (const d of page.deliveries) listed.add(d.id);
          // The second one ahead of the walk leaves READY.
          const target = walkOrder.filter((id) => !listed.has(id) && !left.has(id))[1];
          if (target) {
            await start(target);
            left.add(target);
          }
        });
        const all = pages.flatMap((p) => p.deliveries);

        expectNoRepeats(idsOf(pages));
        expect(left.size).toBeGreaterThan(0);
        expect(idsOf(pages)).toEqual(walkOrder.filter((id) => !left.has(id)));
        for (const d of all) expect(d.status, d.id).toBe(STATUS.READY);
      });

      it("a delivery that moves on after every page, always within the filter, is listed exactly once", async () => {
        const made = await readyDeliveries(8);
        const walkOrder = sortedIds(made, order);
        // Near the end of the walk, so it moves several times before its page.
        const mover = walkOrder[6]!;
        const steps = [
          () => start(mover),
          () => call(client, "pickupProducts", { deliveryId: mover, purchasePrice: 1n, quantity: 2n }),
          () => call(client, "deliverProducts", { deliveryId: mover, sellPrice: 2n, quantity: 1n }),
          () => call(client, "increaseBudget", { deliveryId: mover, amount: 5n }),
          () => call(client, "deliverProducts", { deliveryId: mover, sellPrice: 2n, quantity: 1n }),
        ];
        const matching = [STATUS.READY, STATUS.ACTIVE, STATUS.COLLECTED, STATUS.COMPLETED];

        const pages = await walk(client, { statuses: matching, orderBy, pageSize: 1 }, async () => {
          await steps.shift()?.();
        });
        const ids = idsOf(pages);

        expect(steps).toEqual([]);
        expectNoRepeats(ids);
        expect(ids).toEqual(walkOrder);
        const listedMover = pages.flatMap((p) => p.deliveries).find((d) => d.id === mover)!;
        expect(listedMover.status).toBe(STATUS.COMPLETED);
        for (const d of pages.flatMap((p) => p.deliveries)) expect(matching, d.id).toContain(d.status);
      });

      it("walks every delivery once while the whole set changes status under it, unfiltered", async () => {
        const made = await readyDeliveries(6);
        const walkOrder = sortedIds(made, order);
        let next = 0;

        const pages = await walk(client, { orderBy, pageSize: 2 }, async () => {
          // Every delivery moves, listed or not: READY -> ACTIVE -> CANCELLED.
          for (const id of walkOrder) {
            await unlessDone(next % 2 === 0 ? start(id) : cancel(id));
          }
          next++;
        });

        expect(idsOf(pages)).toEqual(walkOrder);
      });
    });

    it("a delivery created during an oldest-first walk appears at its end; a newest-first walk does not see it", async () => {
      const made = await readyDeliveries(4);
      let late: Delivery | undefined;

      const asc = await walk(client, { statuses: [STATUS.READY], orderBy: "created_at", pageSize: 2 }, async () => {
        late ??= await make(client, "READY", `${RUN}-z-late-asc`);
      });
      expect(idsOf(asc)).toEqual([...sortedIds(made, "asc"), late!.id]);

      let lateDesc: Delivery | undefined;
      const desc = await walk(client, { statuses: [STATUS.READY], orderBy: "created_at desc", pageSize: 2 }, async () => {
        lateDesc ??= await make(client, "READY", `${RUN}-z-late-desc`);
      });
      expect(idsOf(desc)).toEqual([late!.id, ...sortedIds(made, "desc")]);
      expect(idsOf(desc)).not.toContain(lateDesc!.id);
    });
  });
});
