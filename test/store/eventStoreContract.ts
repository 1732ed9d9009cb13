/**
 * One contract suite for every EventStore adapter (src/store/eventStore.ts).
 * Records are built with the real decide()/evolve(), so they are ones the
 * service could write. Each test gets a store of its own.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Delivery, initialState, InvalidInput, type RecordedEvent } from "../../src/domain/index.js";
import type { EventStore } from "../../src/store/eventStore.js";
import { cmd, HISTORY_TO, MAX_SAFE, recordOn, recordsOf } from "../domain/deliveryScenario.js";

export interface StoreUnderTest {
  readonly store: EventStore;
  cleanup(): Promise<void>;
}

/** The request key and fingerprint appendAll() records with each version. */
export const requestKeyOf = (version: number) => `req-${version}`;
export const fingerprintOf = (version: number) => `fp-${version}`;

/** Appends records in order, each at the version before it; fails the test unless every one is appended. */
export async function appendAll(store: EventStore, records: readonly RecordedEvent[]): Promise<void> {
  for (const record of records) {
    const version = record.event.version;
    const result = await store.append({
      record,
      expectedVersion: version - 1,
      requestKey: requestKeyOf(version),
      fingerprint: fingerprintOf(version),
    });
    expect(result, `append of ${record.event.deliveryId} v${version}`).toEqual({ outcome: "appended" });
  }
}

/** Creation, start, pickup, a budget increase: four versions. */
export const FOUR_EVENTS = [cmd.create(1000, "leave at the door"), cmd.start(), cmd.pickup(100, 5), cmd.increaseBudget(25)];

/** Everything a store holds about one delivery, for "nothing was written" checks. */
async function snapshot(store: EventStore, id: string) {
  const [{ state }, log, [version]] = await Promise.all([store.load(id), store.readAfter(id, 0, 1000), store.currentVersions([id])]);
  return { state, log, version };
}

async function listAll(store: EventStore, pageSize: number) {
  const pages: (readonly Delivery[])[] = [];
  let cursor: string | undefined;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await store.list(cursor, pageSize);
    pages.push(page.deliveries);
    if (page.nextCursor === undefined) return pages;
    cursor = page.nextCursor;
  }
  throw new Error("list never reached a last page");
}

export function eventStoreContract(name: string, makeStore: () => Promise<StoreUnderTest>): void {
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
        expect(await store.readAfter("d-edge", 0, 10)).toEqual(records);
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

        const result = await store.append({ record: stale, expectedVersion: 2, requestKey: "stale-req", fingerprint: "fp-stale" });

        expect(result).toEqual({ outcome: "conflict", currentVersion: 3 });
        expect(await snapshot(store, "d1")).toEqual(before);
        expect((await store.load("d1", "stale-req")).prior).toBeUndefined();
        expect(await store.readAt("d1", 4)).toBeUndefined();
      });

      it("rejects an append at an expected version ahead of the stored one", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 2));
        const before = await snapshot(store, "d1");
        const result = await store.append({ record: records[3]!, expectedVersion: 3, requestKey: "ahead", fingerprint: "fp" });
        expect(result).toEqual({ outcome: "conflict", currentVersion: 2 });
        expect(await snapshot(store, "d1")).toEqual(before);
      });

      it("lets only the first of two creations of the same delivery in", async () => {
        const first = recordsOf("d1", [cmd.create(100, "first")]);
        const second = recordsOf("d1", [cmd.create(200, "second")]);
        await appendAll(store, first);
        const result = await store.append({ record: second[0]!, expectedVersion: 0, requestKey: "other-create", fingerprint: "fp" });
        expect(result).toEqual({ outcome: "conflict", currentVersion: 1 });
        expect((await store.load("d1")).state).toEqual(first[0]!.delivery);
        const page = await store.list(undefined, 10);
        expect(page.deliveries.map((d) => d.id)).toEqual(["d1"]);
      });
    });

    describe("request idempotency", () => {
      it("answers a recorded request key with its prior version and fingerprint, and writes nothing", async () => {
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records.slice(0, 3));
        const before = await snapshot(store, "d1");

        const result = await store.append({
          record: records[3]!,
          expectedVersion: 3,
          requestKey: requestKeyOf(2),
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
          record: records[1]!,
          expectedVersion: 1,
          requestKey: requestKeyOf(2),
          fingerprint: fingerprintOf(2),
        });
        expect(result).toEqual({ outcome: "duplicate", prior: { version: 2, fingerprint: fingerprintOf(2) } });
        expect((await snapshot(store, "d1")).version).toBe(3);
      });
    });

    describe("reading the log", () => {
      it("reads the event and the state after it at every version", async () => {
        const records = recordsOf("d1", [...HISTORY_TO.COMPLETED]);
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
        const records = recordsOf("d1", FOUR_EVENTS);
        await appendAll(store, records);
        expect(await store.readAfter("d1", 0, 100)).toEqual(records);
        expect(await store.readAfter("d1", 1, 2)).toEqual(records.slice(1, 3));
        expect(await store.readAfter("d1", 3, 100)).toEqual(records.slice(3));
        expect(await store.readAfter("d1", 0, 1)).toEqual(records.slice(0, 1));
      });

      it.each([1, 2, 3, 4, 10])("pages through the whole log %i at a time, each event once", async (limit) => {
        const records = recordsOf("d1", [...FOUR_EVENTS, cmd.increaseBudget(1), cmd.increaseBudget(2), cmd.cancel("done")]);
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
          const records = recordsOf(id, i % 2 === 0 ? [cmd.create(100 + i)] : [cmd.create(100 + i), cmd.start(), cmd.increaseBudget(i)]);
          await appendAll(store, records);
          latest.set(id, records.at(-1)!.delivery);
        }
        return latest;
      }

      it("lists nothing, and no next page, when there are no deliveries", async () => {
        expect(await store.list(undefined, 10)).toEqual({ deliveries: [] });
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
        const full = await store.list(undefined, IDS.length);
        expect(full.deliveries).toHaveLength(IDS.length);
        expect(full.nextCursor).toBeUndefined();
        expect("nextCursor" in full).toBe(false);

        const first = await store.list(undefined, 4);
        expect(first.nextCursor).toEqual(expect.any(String));
        const last = await store.list(first.nextCursor, 3);
        expect(last.deliveries.map((d) => d.id)).toEqual(IDS.slice(4));
        expect(last.nextCursor).toBeUndefined();
      });

      it("shows a delivery created between two pages on a later page, once", async () => {
        await createAll();
        const first = await store.list(undefined, 3);
        await appendAll(store, recordsOf("d-late", [cmd.create(1)]));
        const seen = [...first.deliveries];
        let cursor = first.nextCursor;
        for (let guard = 0; cursor !== undefined && guard < 100; guard++) {
          const page = await store.list(cursor, 3);
          seen.push(...page.deliveries);
          cursor = page.nextCursor;
        }
        expect(cursor).toBeUndefined();
        expect(seen.map((d) => d.id)).toEqual([...IDS, "d-late"]);
      });

      it("lists a delivery once however many events it has", async () => {
        await appendAll(store, recordsOf("d1", [...FOUR_EVENTS, cmd.increaseBudget(1), cmd.increaseBudget(2), cmd.cancel("x")]));
        const page = await store.list(undefined, 10);
        expect(page.deliveries.map((d) => [d.id, d.version])).toEqual([["d1", 7]]);
        expect(page.nextCursor).toBeUndefined();
      });

      // The last three look like stream ids but are past 2^64-1 or have nothing after them.
      it.each([
        "garbage",
        "-1",
        "1.5",
        "abc-0",
        " 1",
        "1-0; DEL x",
        "99999999999999999999-99999999999999999999",
        "18446744073709551616-0",
        "18446744073709551615-18446744073709551615",
      ])(
        "rejects the malformed cursor %j with InvalidInput",
        async (cursor) => {
          await createAll();
          const error = await store.list(cursor, 3).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(InvalidInput);
          expect((error as InvalidInput).kind).toBe("InvalidInput");
        },
      );
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
