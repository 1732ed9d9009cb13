/**
 * One contract suite for every EventStore adapter (src/store/eventStore.ts).
 * Records are built with the real decide()/evolve(), so they are ones the
 * service could write. Each test gets a store of its own.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Delivery, type DeliveryState, type DeliveryStatus, initialState, InvalidInput, type RecordedEvent } from "../../src/domain/index.js";
import type { EventStore, ListQuery } from "../../src/store/eventStore.js";
import { cmd, HISTORY_TO, MAX_SAFE, recordOn, recordsOf, STEP_MS, T0_MS } from "../domain/deliveryScenario.js";

export interface StoreOptions {
  /** The store's clock (retention). */
  readonly now?: () => number;
  readonly retainFinishedForMs?: number;
}

export interface StoreUnderTest {
  readonly store: EventStore;
  cleanup(): Promise<void>;
}

/** The request id and fingerprint appendAll() records with each version. */
export const requestKeyOf = (version: number) => `req-${version}`;
export const fingerprintOf = (version: number) => `fp-${version}`;

/** A record carrying a client request_id. */
export function withRequestId(record: RecordedEvent, requestId: string): RecordedEvent {
  return { ...record, event: { ...record.event, requestId } };
}

/** The records appendAll() stores: each with the request id requestKeyOf(version). */
export function stored(records: readonly RecordedEvent[]): RecordedEvent[] {
  return records.map((r) => withRequestId(r, requestKeyOf(r.event.version)));
}

/** The status a record was decided on. */
export function statusBefore(records: readonly RecordedEvent[], record: RecordedEvent): DeliveryState["status"] {
  const previous = records.find((r) => r.event.deliveryId === record.event.deliveryId && r.event.version === record.event.version - 1);
  return previous?.delivery.status ?? "NONE";
}

/** Appends records in order, each at the version before it, with request ids; fails the test unless every one is appended. */
export async function appendAll(store: EventStore, records: readonly RecordedEvent[]): Promise<void> {
  let previous: DeliveryState["status"] = "NONE";
  for (const plain of records) {
    const record = withRequestId(plain, requestKeyOf(plain.event.version));
    const version = record.event.version;
    if (version === 1) previous = "NONE";
    const result = await store.append({ record, expectedVersion: version - 1, previousStatus: previous, fingerprint: fingerprintOf(version) });
    expect(result.outcome, `append of ${record.event.deliveryId} v${version}`).toBe("appended");
    if (result.outcome === "appended") {
      expect(result.change.record).toEqual(record);
      expect(result.change.entry).toMatchObject({ deliveryId: record.event.deliveryId, version, before: previous, after: record.delivery.status });
    }
    previous = record.delivery.status;
  }
}

/** Creation, start, pickup, a budget increase: four versions. */
export const FOUR_EVENTS = [cmd.create(1000, "leave at the door"), cmd.start(), cmd.pickup(100, 5), cmd.increaseBudget(25)];

/** Everything a store holds about one delivery, for "nothing was written" checks. */
async function snapshot(store: EventStore, id: string) {
  const [{ state }, log, [version]] = await Promise.all([store.load(id), store.readAfter(id, 0, 1000), store.currentVersions([id])]);
  return { state, log, version };
}

/** Every delivery, oldest first. */
const ALL: Omit<ListQuery, "limit"> = { statuses: [], order: "asc" };
const page = (store: EventStore, cursor: string | undefined, limit: number, query = ALL) => store.list({ ...query, cursor, limit });

/** Every page of a query, from its cursor (if any) to the last page. */
async function listAll(store: EventStore, pageSize: number, query: Omit<ListQuery, "limit"> = ALL) {
  const pages: (readonly Delivery[])[] = [];
  let cursor = query.cursor;
  for (let guard = 0; guard < 1000; guard++) {
    const next = await store.list({ ...query, cursor, limit: pageSize });
    pages.push(next.deliveries);
    if (next.nextCursor === undefined) return pages;
    cursor = next.nextCursor;
  }
  throw new Error("list never reached a last page");
}

export function eventStoreContract(name: string, makeStore: (options?: StoreOptions) => Promise<StoreUnderTest>): void {
  describe(`${name} event store (contract)`, () => {
    let subject: StoreUnderTest;
    let store: EventStore;

    beforeEach(async () => {
      subject = await makeStore();
      store = subject.store;
    });

    afterEach(async () => {
      await store.close();
      await subject.cleanup();
    });

    describe("append and load", () => {
      it("loads the initial state for a delivery it has never seen", async () => {
        expect(await store.load("never-created")).toEqual({ state: initialState });
        expect(await store.load("never-created", "some-request")).toEqual({ state: initialState });
      });

      it("loads the state after the last appended event", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records);
        const { state, prior } = await store.load("d1");
        expect(state).toEqual(records[3]!.delivery);
        expect(prior).toBeUndefined();
      });

      it("tells each append's feed entry and the one before it, as the feed holds them", async () => {
        const changes = [];
        for (const [id, budget] of [["f1", 1], ["f2", 2], ["f1", 3]] as const) {
          const { state } = await store.load(id);
          const record = state.status === "NONE" ? recordsOf(id, [cmd.create(budget)])[0]! : recordOn(id, state, cmd.increaseBudget(budget));
          const result = await store.append({ record, expectedVersion: state.version, previousStatus: state.status, fingerprint: "fp" });
          if (result.outcome !== "appended") throw new Error(result.outcome);
          changes.push(result.change);
        }
        for (const { previous, entry } of changes) {
          const all = await store.feed.read(entry.partition, "0-0", 10_000);
          const at = all.findIndex((e) => e.id === entry.id);
          expect(all[at]).toEqual(entry);
          expect(previous).toBe(all[at - 1]?.id ?? "0-0");
        }
      });

      it("keeps each delivery apart", async () => {
        const first = recordsOf("d1", FOUR_EVENTS);
        const second = recordsOf("d2", [cmd.create(7, "other")]);
        await appendAll(store, first);
        await appendAll(store, second);
        expect((await store.load("d1")).state).toEqual(first[3]!.delivery);
        expect((await store.load("d2")).state).toEqual(second[0]!.delivery);
      });

      it("reports the prior outcome of a request key recorded on the delivery", async () => {
        await appendAll(store, recordsOf("d1", FOUR_EVENTS));
        expect((await store.load("d1", requestKeyOf(2))).prior).toEqual({ version: 2, fingerprint: fingerprintOf(2) });
        expect((await store.load("d1", requestKeyOf(4))).prior).toEqual({ version: 4, fingerprint: fingerprintOf(4) });
        expect((await store.load("d1", "not-a-recorded-key")).prior).toBeUndefined();
      });

      it("scopes request keys to their delivery", async () => {
        await appendAll(store, recordsOf("d1", FOUR_EVENTS));
        expect((await store.load("d2", requestKeyOf(1))).prior).toBeUndefined();
        // The same key on another delivery is a new request there.
        await appendAll(store, recordsOf("d2", [cmd.create(5)]));
        expect((await store.load("d2", requestKeyOf(1))).prior).toEqual({ version: 1, fingerprint: fingerprintOf(1) });
      });

      it("keeps amounts up to 2^53-1 and any text exactly", async () => {
        const notes = `quotes " and ' , backslash \\ , newline \n , tab \t , emoji 📦🚚 , accents éàü , 中文 , {"json":true} , 0x00-ish \u0001`;
        const records = recordsOf("d-edge", [cmd.create(MAX_SAFE - 1, notes), cmd.increaseBudget(1), cmd.cancel("🙅 nope")]);
        await appendAll(store, records);
        expect((await store.load("d-edge")).state).toEqual(records[2]!.delivery);
        expect((await store.load("d-edge")).state).toMatchObject({ budgetMinor: MAX_SAFE, notes });
        expect(await store.readAfter("d-edge", 0, 10)).toEqual(stored(records));
      });
    });

    describe("optimistic concurrency", () => {
      it("rejects an append at a stale expected version and writes nothing", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 3));
        const before = await snapshot(store, "d1");
        // Decided on version 2, but version 3 is already there.
        const stale = recordOn("d1", records[1]!.delivery, cmd.cancel("too late"));
        expect(stale.event.version).toBe(3);

        const result = await store.append({ record: withRequestId(stale, "stale-req"), expectedVersion: 2, previousStatus: "ACTIVE", fingerprint: "fp-stale" });

        expect(result).toEqual({ outcome: "conflict", currentVersion: 3 });
        expect(await snapshot(store, "d1")).toEqual(before);
        expect((await store.load("d1", "stale-req")).prior).toBeUndefined();
        expect(await store.readAt("d1", 4)).toBeUndefined();
      });

      it("rejects an append at an expected version ahead of the stored one", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 2));
        const before = await snapshot(store, "d1");
        const result = await store.append({ record: withRequestId(records[3]!, "ahead"), expectedVersion: 3, previousStatus: "COLLECTED", fingerprint: "fp" });
        expect(result).toEqual({ outcome: "conflict", currentVersion: 2 });
        expect(await snapshot(store, "d1")).toEqual(before);
      });

      it("lets only the first of two creations of the same delivery in", async () => {
        const first = recordsOf("d1", [cmd.create(100, "first")]);
        const second = recordsOf("d1", [cmd.create(200, "second")]);
        await appendAll(store, first);
        const result = await store.append({ record: withRequestId(second[0]!, "other-create"), expectedVersion: 0, previousStatus: "NONE", fingerprint: "fp" });
        expect(result).toEqual({ outcome: "conflict", currentVersion: 1 });
        expect((await store.load("d1")).state).toEqual(first[0]!.delivery);
        const listed = await page(store, undefined, 10);
        expect(listed.deliveries.map((d) => d.id)).toEqual(["d1"]);
      });
    });

    describe("request idempotency", () => {
      it("answers a recorded request key with its prior version and fingerprint, and writes nothing", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 3));
        const before = await snapshot(store, "d1");

        const result = await store.append({
          record: withRequestId(records[3]!, requestKeyOf(2)),
          expectedVersion: 3,
          previousStatus: "COLLECTED",
          fingerprint: "a-different-fingerprint",
        });

        expect(result).toEqual({ outcome: "duplicate", prior: { version: 2, fingerprint: fingerprintOf(2) } });
        expect(await snapshot(store, "d1")).toEqual(before);
        expect((await store.load("d1", requestKeyOf(2))).prior).toEqual({ version: 2, fingerprint: fingerprintOf(2) });
      });

      it("answers a retry after a lost reply with duplicate even though the version moved on", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 3));
        // The retry of version 2's append still carries expectedVersion 1.
        const result = await store.append({
          record: withRequestId(records[1]!, requestKeyOf(2)),
          expectedVersion: 1,
          previousStatus: "READY",
          fingerprint: fingerprintOf(2),
        });
        expect(result).toEqual({ outcome: "duplicate", prior: { version: 2, fingerprint: fingerprintOf(2) } });
        expect((await snapshot(store, "d1")).version).toBe(3);
      });
    });

    describe("reading the log", () => {
      it("reads the event and the state after it at every version", async () => {
        const records = stored(recordsOf("d1", [...HISTORY_TO.COMPLETED]));
        await appendAll(store, records);
        for (const record of records) {
          expect(await store.readAt("d1", record.event.version)).toEqual(record);
        }
        expect((await store.readAt("d1", 3))?.delivery.status).toBe("COLLECTED");
      });

      it("has nothing at version 0, past the end, or for an unknown delivery", async () => {
        await appendAll(store, recordsOf("d1", FOUR_EVENTS));
        expect(await store.readAt("d1", 0)).toBeUndefined();
        expect(await store.readAt("d1", 5)).toBeUndefined();
        expect(await store.readAt("unknown", 1)).toBeUndefined();
      });

      it("reads the events after a version, ascending, up to the limit", async () => {
        const records = stored(recordsOf("d1", FOUR_EVENTS));
        await appendAll(store, records);
        expect(await store.readAfter("d1", 0, 100)).toEqual(records);
        expect(await store.readAfter("d1", 1, 2)).toEqual(records.slice(1, 3));
        expect(await store.readAfter("d1", 3, 100)).toEqual(records.slice(3));
        expect(await store.readAfter("d1", 0, 1)).toEqual(records.slice(0, 1));
      });

      it.each([1, 2, 3, 4, 10])("pages through the whole log %i at a time, each event once", async (limit) => {
        const records = stored(recordsOf("d1", [...FOUR_EVENTS, cmd.increaseBudget(1), cmd.increaseBudget(2), cmd.cancel("done")]));
        await appendAll(store, records);
        const seen: RecordedEvent[] = [];
        let after = 0;
        for (let guard = 0; guard < 100; guard++) {
          const page = await store.readAfter("d1", after, limit);
          expect(page.length).toBeLessThanOrEqual(limit);
          if (page.length === 0) break;
          seen.push(...page);
          after = page.at(-1)!.event.version;
        }
        expect(seen).toEqual(records);
      });

      it.each([1, 3])("pages %i at a time folding on from the previous page's last state, the same records", async (limit) => {
        const records = stored(recordsOf("d1", [...FOUR_EVENTS, cmd.increaseBudget(1), cmd.increaseBudget(2), cmd.cancel("done")]));
        await appendAll(store, records);
        const seen: RecordedEvent[] = [];
        let last: RecordedEvent | undefined;
        for (let guard = 0; guard < 100; guard++) {
          const page = await store.readAfter("d1", last?.event.version ?? 0, limit, last?.delivery);
          if (page.length === 0) break;
          seen.push(...page);
          last = page.at(-1);
        }
        expect(seen).toEqual(records);
      });

      it("ignores a state of another version than the one read after", async () => {
        const records = stored(recordsOf("d1", FOUR_EVENTS));
        await appendAll(store, records);
        expect(await store.readAfter("d1", 2, 10, records[0]!.delivery)).toEqual(records.slice(2));
        expect(await store.readAfter("d1", 0, 10, records[3]!.delivery)).toEqual(records);
      });

      it("reads nothing after the last version, beyond it, or for an unknown delivery", async () => {
        await appendAll(store, recordsOf("d1", FOUR_EVENTS));
        expect(await store.readAfter("d1", 4, 10)).toEqual([]);
        expect(await store.readAfter("d1", 5, 10)).toEqual([]);
        expect(await store.readAfter("d1", 1000, 10)).toEqual([]);
        expect(await store.readAfter("unknown", 0, 10)).toEqual([]);
      });
    });

    describe("listing deliveries", () => {
      const IDS = ["d-c", "d-a", "d-e", "d-b", "d-g", "d-d", "d-f"];

      /** Creates IDS in that order; some get more events after creation so the list shows current states. */
      async function createAll(): Promise<Map<string, Delivery>> {
        const latest = new Map<string, Delivery>();
        for (const [i, id] of IDS.entries()) {
          // Created one millisecond apart: creation order is time order (ids are not in order).
          const commands = i % 2 === 0 ? [cmd.create(100 + i)] : [cmd.create(100 + i), cmd.start(), cmd.increaseBudget(i)];
          const records = recordsOf(id, commands, T0_MS + i);
          await appendAll(store, records);
          latest.set(id, records.at(-1)!.delivery);
        }
        return latest;
      }

      it("lists nothing, and no next page, when there are no deliveries", async () => {
        expect(await page(store, undefined, 10)).toEqual({ deliveries: [] });
      });

      it.each([1, 2, 3, 6, 7, 8, 500])("lists every delivery once, in creation order, %i per page", async (pageSize) => {
        const latest = await createAll();
        const pages = await listAll(store, pageSize);

        expect(pages.flat().map((d) => d.id)).toEqual(IDS);
        expect(pages).toHaveLength(Math.ceil(IDS.length / pageSize));
        pages.slice(0, -1).forEach((page) => expect(page).toHaveLength(pageSize));
        expect(pages.at(-1)!.length).toBe(IDS.length - pageSize * (pages.length - 1));
        // Current states, not the states at creation.
        for (const delivery of pages.flat()) expect(delivery).toEqual(latest.get(delivery.id));
      });

      it("leaves nextCursor out on the last page, including a last page that is exactly full", async () => {
        await createAll();
        const full = await page(store, undefined, IDS.length);
        expect(full.deliveries).toHaveLength(IDS.length);
        expect(full.nextCursor).toBeUndefined();
        expect("nextCursor" in full).toBe(false);

        const first = await page(store, undefined, 4);
        expect(first.nextCursor).toEqual(expect.any(String));
        const last = await page(store, first.nextCursor, 3);
        expect(last.deliveries.map((d) => d.id)).toEqual(IDS.slice(4));
        expect(last.nextCursor).toBeUndefined();
      });

      it("shows a delivery created between two pages on a later page, once", async () => {
        await createAll();
        const first = await page(store, undefined, 3);
        await appendAll(store, recordsOf("d-late", [cmd.create(1)], T0_MS + 1_000));
        const seen = [...first.deliveries];
        let cursor = first.nextCursor;
        for (let guard = 0; cursor !== undefined && guard < 100; guard++) {
          const next = await page(store, cursor, 3);
          seen.push(...next.deliveries);
          cursor = next.nextCursor;
        }
        expect(cursor).toBeUndefined();
        expect(seen.map((d) => d.id)).toEqual([...IDS, "d-late"]);
      });

      it("lists a delivery once however many events it has", async () => {
        await appendAll(store, recordsOf("d1", [...FOUR_EVENTS, cmd.increaseBudget(1), cmd.increaseBudget(2), cmd.cancel("x")]));
        const listed = await page(store, undefined, 10);
        expect(listed.deliveries.map((d) => [d.id, d.version])).toEqual([["d1", 7]]);
        expect(listed.nextCursor).toBeUndefined();
      });

      // The last ones look like index members but are not: too short, a space, a dash in the time, an id too long.
      it.each([
        "garbage",
        "-1",
        "1.5",
        "abc-0",
        " 1",
        "1-0; DEL x",
        "0000000000001",
        "0000000000001d a",
        "000000000001-d1",
        `0000000000001${"x".repeat(65)}`,
      ])(
        "rejects the malformed cursor %j with InvalidInput",
        async (cursor) => {
          await createAll();
          const error = await page(store, cursor, 3).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(InvalidInput);
          expect((error as InvalidInput).kind).toBe("InvalidInput");
        },
      );
    });

    describe("listing by status and order", () => {
      /** One delivery per history, created in this order, a millisecond apart. */
      const HISTORIES: readonly (readonly [id: string, status: keyof typeof HISTORY_TO])[] = [
        ["s-ready-1", "READY"],
        ["s-active-1", "ACTIVE"],
        ["s-collected", "COLLECTED"],
        ["s-completed", "COMPLETED"],
        ["s-cancelled", "CANCELLED"],
        ["s-ready-2", "READY"],
        ["s-active-2", "ACTIVE"],
        ["s-ready-3", "READY"],
      ];

      async function createHistories(): Promise<void> {
        for (const [i, [id, status]] of HISTORIES.entries()) await appendAll(store, recordsOf(id, HISTORY_TO[status], T0_MS + i));
      }

      const idsIn = (statuses: readonly string[]) => HISTORIES.filter(([, s]) => statuses.includes(s)).map(([id]) => id);

      it.each(["READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"] as const)("lists only %s deliveries, oldest first", async (status) => {
        await createHistories();
        const pages = await listAll(store, 2, { statuses: [status], order: "asc" });

        expect(pages.flat().map((d) => d.id)).toEqual(idsIn([status]));
        for (const delivery of pages.flat()) expect(delivery.status).toBe(status);
      });

      it.each([1, 2, 3, 50])("lists a set of statuses newest first, %i per page", async (pageSize) => {
        await createHistories();
        const pages = await listAll(store, pageSize, { statuses: ["READY", "CANCELLED", "ACTIVE"], order: "desc" });

        expect(pages.flat().map((d) => d.id)).toEqual(idsIn(["READY", "CANCELLED", "ACTIVE"]).reverse());
      });

      it.each([1, 3, 500])("scans every delivery in a set of statuses once, %i per batch", async (batch) => {
        await createHistories();
        const seen: string[] = [];
        for await (const page of store.scan(["READY", "COMPLETED"], batch)) {
          expect(page.length).toBeLessThanOrEqual(batch);
          seen.push(...page.map((d) => d.id));
        }
        expect(seen.sort()).toEqual(idsIn(["READY", "COMPLETED"]).sort());
        const all: string[] = [];
        for await (const page of store.scan([], batch)) all.push(...page.map((d) => d.id));
        expect(all.sort()).toEqual(HISTORIES.map(([id]) => id).sort());
      });

      it("lists everything newest first without a filter", async () => {
        await createHistories();
        const pages = await listAll(store, 3, { statuses: [], order: "desc" });

        expect(pages.flat().map((d) => d.id)).toEqual(HISTORIES.map(([id]) => id).reverse());
      });

      it("follows the current status while paging: one that stays matching once, one that leaves never after", async () => {
        await createHistories();
        const query = { statuses: ["READY"] as DeliveryStatus[], order: "asc" as const };
        const first = await store.list({ ...query, limit: 1 });
        expect(first.deliveries.map((d) => d.id)).toEqual(["s-ready-1"]);
        // s-ready-2 leaves READY between pages; s-ready-1 (already listed) is cancelled.
        const ready2 = recordsOf("s-ready-2", HISTORY_TO.READY, T0_MS + 5)[0]!.delivery;
        await store.append({
          record: withRequestId(recordOn("s-ready-2", ready2, cmd.start(), "", T0_MS + 5), "move"),
          expectedVersion: 1,
          previousStatus: "READY",
          fingerprint: "fp-move",
        });
        const rest = await listAll(store, 1, { ...query, cursor: first.nextCursor });
        const walk = [...first.deliveries, ...rest.flat()].map((d) => d.id);

        expect(walk).toEqual(["s-ready-1", "s-ready-3"]);
        for (const delivery of rest.flat()) expect(delivery.status).toBe("READY");
      });

      it("lists a delivery that keeps a matching status through many status changes exactly once", async () => {
        await createHistories();
        const query = { statuses: ["READY", "ACTIVE", "COLLECTED", "COMPLETED"] as DeliveryStatus[], order: "asc" as const };
        const seen: string[] = [];
        let cursor: string | undefined;
        let moved = false;
        for (let guard = 0; guard < 100; guard++) {
          const next = await store.list({ ...query, cursor, limit: 2 });
          seen.push(...next.deliveries.map((d) => d.id));
          if (!moved) {
            // s-active-1 moves on (ACTIVE -> COLLECTED) after the first page: still matching.
            moved = true;
            const active = recordsOf("s-active-1", HISTORY_TO.ACTIVE, T0_MS + 1);
            await store.append({
              record: withRequestId(recordOn("s-active-1", active[1]!.delivery, cmd.pickup(1, 1), "", T0_MS + 1), "pick"),
              expectedVersion: 2,
              previousStatus: "ACTIVE",
              fingerprint: "fp-pick",
            });
          }
          if (next.nextCursor === undefined) break;
          cursor = next.nextCursor;
        }
        expect(seen).toEqual(idsIn(["READY", "ACTIVE", "COLLECTED", "COMPLETED"]));
      });
    });

    describe("retention of finished deliveries", () => {
      const DAY = 86_400_000;
      let clock: number;
      let retained: EventStore;
      let retainedSubject: StoreUnderTest;

      beforeEach(async () => {
        clock = T0_MS;
        retainedSubject = await makeStore({ now: () => clock, retainFinishedForMs: DAY });
        retained = retainedSubject.store;
      });

      afterEach(async () => {
        await retained.close();
        await retainedSubject.cleanup();
      });

      it("keeps a finished delivery until its retention is over, then answers like an unknown id everywhere", async () => {
        const done = recordsOf("r-done", HISTORY_TO.COMPLETED);
        await appendAll(retained, done);
        const finishedAt = done.at(-1)!.event.occurredAtMs;

        clock = finishedAt + DAY - 1;
        expect((await retained.load("r-done")).state).toEqual(done.at(-1)!.delivery);
        expect((await retained.list({ statuses: ["COMPLETED"], order: "asc", limit: 10 })).deliveries).toHaveLength(1);

        clock = finishedAt + DAY;
        expect(await retained.load("r-done")).toEqual({ state: initialState });
        expect(await retained.readAt("r-done", 1)).toBeUndefined();
        expect(await retained.readAfter("r-done", 0, 10)).toEqual([]);
        expect((await retained.list({ statuses: [], order: "asc", limit: 10 })).deliveries).toEqual([]);
        expect(await retained.currentVersions(["r-done"])).toEqual([0]);
      });

      it("never removes a delivery that is not finished, however old", async () => {
        const active = recordsOf("r-active", HISTORY_TO.COLLECTED);
        await appendAll(retained, active);
        clock = T0_MS + 365 * DAY;

        expect(await retained.sweep()).toBe(0);
        expect((await retained.load("r-active")).state).toEqual(active.at(-1)!.delivery);
        expect((await retained.list({ statuses: ["COLLECTED"], order: "asc", limit: 10 })).deliveries.map((d) => d.id)).toEqual(["r-active"]);
      });

      it("sweeps finished deliveries nobody reads, once their time has come, and only those", async () => {
        await appendAll(retained, recordsOf("r-old", HISTORY_TO.CANCELLED));
        await appendAll(retained, recordsOf("r-new", HISTORY_TO.CANCELLED, T0_MS + DAY / 2));
        await appendAll(retained, recordsOf("r-open", HISTORY_TO.READY));

        clock = T0_MS + STEP_MS + DAY;
        expect(await retained.sweep()).toBe(1);
        expect(await retained.sweep()).toBe(0);

        const left = await retained.list({ statuses: [], order: "asc", limit: 10 });
        expect(left.deliveries.map((d) => d.id)).toEqual(["r-open", "r-new"]);
      });

      it("lets a new delivery take the id of one that is gone", async () => {
        await appendAll(retained, recordsOf("r-reuse", HISTORY_TO.CANCELLED));
        clock = T0_MS + STEP_MS + DAY;
        expect((await retained.load("r-reuse")).state).toEqual(initialState);

        const again = recordsOf("r-reuse", [cmd.create(7, "second life")], clock);
        await appendAll(retained, again);

        expect((await retained.load("r-reuse")).state).toEqual(again[0]!.delivery);
        expect(await retained.currentVersions(["r-reuse"])).toEqual([1]);
      });
    });

    describe("current versions", () => {
      it("returns the current version of each delivery, 0 for unknown ones, in the order asked", async () => {
        await appendAll(store, recordsOf("d1", FOUR_EVENTS));
        await appendAll(store, recordsOf("d2", [cmd.create(1)]));
        expect(await store.currentVersions(["d2", "unknown", "d1", "d1"])).toEqual([1, 0, 4, 4]);
      });

      it("answers an empty question with an empty list", async () => {
        expect(await store.currentVersions([])).toEqual([]);
      });

      it("follows appends", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        for (const record of records) {
          await appendAll(store, [record]);
          expect(await store.currentVersions(["d1"])).toEqual([record.event.version]);
        }
      });
    });
  });
}
