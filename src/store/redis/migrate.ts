/**
 * `npm run migrate`: storage layout 1 (release 0.1) -> layout 2, in place.
 *
 * - Walks release 1's creation index (`deliveries`, a Stream) in order and
 *   writes each delivery in layout 2 with one atomic script (importDelivery),
 *   replacing whatever an interrupted run left: idempotent, and resumable
 *   after a kill (the position is kept in the meta Hash after each batch).
 * - Layout 1's keys are left as they were, so replicas of release 0.1 keep
 *   serving reads during the migration. Writes must stop before it starts
 *   (an old replica's write to a delivery already migrated would be lost);
 *   a final pass re-imports any delivery whose log grew meanwhile, and
 *   reports it.
 * - The layout is recorded last: until then release 0.2 refuses to start
 *   (and says a migration is in progress).
 * - `--drop-v1` (afterwards, once no old replica runs) deletes layout 1's keys.
 *
 * Private request keys of release 1 (commands without a request_id) are not
 * carried over: they only guard an append in flight, and none is.
 */
import type { Cluster, Redis } from "ioredis";
import { isTerminal } from "../../domain/index.js";
import { decodeDeliveryJson, decodeEventJson } from "../../mapping/protoMapping.js";
import { encodeStoredEvent, indexMember, requestField, statusCode } from "./codec.js";
import { createRedisKeys, DEFAULT_PARTITIONS, type IndexedStatus } from "./keys.js";
import { LAYOUT_VERSION } from "./redisEventStore.js";
import { registerScripts } from "./scripts.js";

export interface MigrateOptions {
  readonly keyPrefix?: string;
  /** Partitions of the new layout (kept if a previous run already chose them). */
  readonly partitions?: number;
  /** RETAIN_FINISHED_FOR of the service: finished deliveries get their deletion time. */
  readonly retainFinishedForMs?: number;
  readonly batch?: number;
  /** Stop after this many deliveries (tests: an interrupted run). */
  readonly stopAfter?: number;
  readonly dropV1?: boolean;
  readonly log?: (line: string) => void;
}

export interface MigrateReport {
  readonly alreadyMigrated: boolean;
  readonly deliveries: number;
  readonly events: number;
  /** Deliveries imported again because their layout 1 log grew during the run. */
  readonly reimported: readonly string[];
  readonly complete: boolean;
  readonly droppedV1Keys: number;
}

/** Release 1's keys of a delivery. */
function legacyKeys(prefix: string, id: string) {
  return {
    events: `${prefix}delivery:{${id}}:events`,
    state: `${prefix}delivery:{${id}}:state`,
    requests: `${prefix}delivery:{${id}}:requests`,
  };
}

type StreamEntry = [id: string, fields: string[]];

function field(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

export async function migrateToLayout2(redis: Redis | Cluster, options: MigrateOptions = {}): Promise<MigrateReport> {
  const { keyPrefix = "", batch = 100, dropV1 = false, log = () => {} } = options;
  const probe = createRedisKeys(keyPrefix, 1);
  const meta = await redis.hgetall(probe.meta);
  const hasLegacy = (await redis.exists(probe.legacyIndex)) === 1;

  if (meta.layout === LAYOUT_VERSION) {
    log(`already at storage layout ${LAYOUT_VERSION}`);
    const droppedV1Keys = dropV1 && hasLegacy ? await dropLegacy(redis, keyPrefix, log) : 0;
    return { alreadyMigrated: true, deliveries: 0, events: 0, reimported: [], complete: true, droppedV1Keys };
  }
  if (meta.layout !== undefined) throw new Error(`this Redis holds storage layout ${meta.layout}; this release migrates layout 1 only`);

  await redis.hsetnx(probe.meta, "partitions", String(options.partitions ?? DEFAULT_PARTITIONS));
  await redis.hset(probe.meta, "migrating", "1");
  const partitions = Number(await redis.hget(probe.meta, "partitions"));
  const keys = createRedisKeys(keyPrefix, partitions);
  const runScript = registerScripts(redis);

  const importOne = async (id: string): Promise<{ events: number; legacyLength: number }> => {
    const legacy = legacyKeys(keyPrefix, id);
    const [entries, requests] = await Promise.all([
      redis.xrange(legacy.events, "-", "+") as Promise<StreamEntry[]>,
      redis.hgetall(legacy.requests),
    ]);
    if (entries.length === 0) return { events: 0, legacyLength: 0 };
    const events = entries.map(([, fields]) => decodeEventJson(field(fields, "event") ?? "null"));
    events.forEach((event, i) => {
      if (event.version !== i + 1 || event.deliveryId !== id) throw new Error(`delivery ${id}: layout 1 log out of order at entry ${i + 1}`);
    });
    const last = decodeDeliveryJson(field(entries.at(-1)![1], "delivery") ?? "null");
    const requestArgs: string[] = [];
    for (const [key, value] of Object.entries(requests)) {
      const version = Number(value.slice(0, value.indexOf(":")));
      // A client's request_id is the one its event records; anything else was a private key.
      if (events[version - 1]?.requestId === key) requestArgs.push(requestField(key, true), value);
    }
    const member = indexMember(last);
    const due = options.retainFinishedForMs !== undefined && isTerminal(last.status) ? String(last.updatedAtMs + options.retainFinishedForMs) : "";
    const d = keys.delivery(id);
    await runScript(
      "importDelivery",
      [d.log, d.requests, d.index(last.status as IndexedStatus), d.expiry],
      [member, due === "" ? "" : `${statusCode(last.status)}${member}`, due, String(events.length), ...events.map(encodeStoredEvent), ...requestArgs],
    );
    return { events: events.length, legacyLength: entries.length };
  };

  let cursor = meta.migrateCursor;
  let deliveries = 0;
  let eventCount = 0;
  const imported = new Map<string, number>();
  if (cursor) log(`resuming after index entry ${cursor}`);
  for (;;) {
    const page = (await redis.xrange(probe.legacyIndex, cursor ? `(${cursor}` : "-", "+", "COUNT", batch)) as StreamEntry[];
    if (page.length === 0) break;
    for (const [entryId, fields] of page) {
      const id = field(fields, "id");
      if (id !== undefined) {
        const { events, legacyLength } = await importOne(id);
        imported.set(id, legacyLength);
        deliveries++;
        eventCount += events;
      }
      cursor = entryId;
      if (options.stopAfter !== undefined && deliveries >= options.stopAfter) {
        await redis.hset(probe.meta, "migrateCursor", cursor);
        log(`stopped after ${deliveries} deliveries (resume by running again)`);
        return { alreadyMigrated: false, deliveries, events: eventCount, reimported: [], complete: false, droppedV1Keys: 0 };
      }
    }
    await redis.hset(probe.meta, "migrateCursor", cursor!);
    log(`migrated ${deliveries} deliveries (${eventCount} events)`);
  }

  // Anything written through an old replica during the walk: import it again.
  const reimported: string[] = [];
  for (const [id, length] of imported) {
    if ((await redis.xlen(legacyKeys(keyPrefix, id).events)) !== length) {
      await importOne(id);
      reimported.push(id);
    }
  }
  if (reimported.length > 0) log(`imported again (written during the migration): ${reimported.join(", ")}`);

  await redis.hset(probe.meta, "layout", LAYOUT_VERSION);
  await redis.hdel(probe.meta, "migrating", "migrateCursor");
  log(`storage layout ${LAYOUT_VERSION} recorded (${partitions} partitions); release 0.2 can start`);
  const droppedV1Keys = dropV1 ? await dropLegacy(redis, keyPrefix, log) : 0;
  return { alreadyMigrated: false, deliveries, events: eventCount, reimported, complete: true, droppedV1Keys };
}

/** Deletes layout 1's keys (after a complete migration); the index goes last, so this too can be run again. */
async function dropLegacy(redis: Redis | Cluster, keyPrefix: string, log: (line: string) => void): Promise<number> {
  const probe = createRedisKeys(keyPrefix, 1);
  let dropped = 0;
  let cursor = "-";
  for (;;) {
    const page = (await redis.xrange(probe.legacyIndex, cursor, "+", "COUNT", 100)) as StreamEntry[];
    const fresh = cursor === "-" ? page : page.filter(([entryId]) => entryId !== cursor);
    if (fresh.length === 0) break;
    for (const [entryId, fields] of fresh) {
      const id = field(fields, "id");
      if (id !== undefined) {
        const legacy = legacyKeys(keyPrefix, id);
        // One key per command: on a cluster the three share a slot, but DEL of several keys is kept simple here.
        for (const key of [legacy.events, legacy.state, legacy.requests]) dropped += await redis.del(key);
      }
      cursor = entryId;
    }
  }
  dropped += await redis.del(probe.legacyIndex);
  log(`deleted ${dropped} keys of storage layout 1`);
  return dropped;
}
