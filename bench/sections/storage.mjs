/**
 * Storage: Redis memory per delivery. N deliveries (2,000; 200 in a smoke)
 * each through a whole life — create, start, pick up, increase budget,
 * deliver everything (COMPLETED), a request_id (a UUID) on every command —
 * through the real service into a fresh redis-server of their own. The
 * figure is the growth of used_memory, less the clients' buffers
 * (mem_clients_normal), read after MEMORY PURGE once it has settled, over N.
 * Broken down with MEMORY USAGE of every key, by kind (log List, request
 * Hash, the partition feed's share, the status indexes' share).
 *
 * Baseline: the same deliveries written, in the same run and Redis (after
 * FLUSHDB, with the same measurement), in the layout of the article the
 * service grew from: a Hash per delivery (pk, budget, notes), a Hash per
 * event (pk, delivery_id, type, data as JSON), a String of the state JSON per
 * delivery, under ULID-like 26-character keys. Our deliveries get ULID-like
 * ids too, so the keys are of the same length.
 *
 * One measurement whatever --runs: the figure is a count of bytes, the same
 * from one run to the next within a few bytes.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { BUDGET, NOTES } from "../lib/fixtures.mjs";
import { callUnary } from "../lib/grpcClient.mjs";
import { startPrivateService } from "../lib/privateService.mjs";
import { fmt, metText, ratioTarget, ratioText } from "../lib/report.mjs";
import { nowNs, round } from "../lib/stats.mjs";

const TARGET_BYTES = 1_450;
const CONCURRENCY = 32;
const STATUS_NAMES = ["UNSPECIFIED", "READY", "ACTIVE", "COLLECTED", "COMPLETED", "CANCELLED"];

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** A ULID-like id: 10 characters of time (ms), 16 random, Crockford base32. */
export function ulidLike(ms = Date.now()) {
  let time = "";
  for (let t = ms, i = 0; i < 10; i++, t = Math.floor(t / 32)) time = CROCKFORD[t % 32] + time;
  const random = randomBytes(16);
  let tail = "";
  for (let i = 0; i < 16; i++) tail += CROCKFORD[random[i] % 32];
  return time + tail;
}

/** One delivery's life, as the brief of this section has it; each step with the data the seed layout stores. */
const LIFE = [
  ["createDelivery", { budget: BUDGET, notes: NOTES }, "DeliveryCreated", { budget: Number(BUDGET), notes: NOTES }],
  ["startDelivery", {}, "DeliveryStarted", {}],
  ["pickupProducts", { purchasePrice: 300n, quantity: 10n }, "ProductsPickedUp", { purchase_price: 300, quantity: 10 }],
  ["increaseBudget", { amount: 500n }, "BudgetIncreased", { amount: 500 }],
  ["deliverProducts", { sellPrice: 450n, quantity: 10n }, "ProductsDelivered", { sell_price: 450, quantity: 10 }],
];

/** Runs one delivery's life through the service; what the seed layout needs of it. */
async function live(client, deliveryId) {
  const events = [];
  let delivery;
  for (const [method, fields, type, data] of LIFE) {
    const response = await callUnary(client, method, { deliveryId, expectedVersion: undefined, requestId: randomUUID(), ...fields });
    delivery = response.delivery;
    events.push({ type, data, atMs: response.event.occurredAt.getTime() });
  }
  if (delivery.status !== 4) throw new Error(`${deliveryId} ended ${STATUS_NAMES[delivery.status]}, not COMPLETED`);
  return { deliveryId, delivery, events };
}

async function liveAll(client, ids) {
  const lives = new Array(ids.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < ids.length) {
        const i = next++;
        lives[i] = await live(client, ids[i]);
      }
    }),
  );
  return lives;
}

/** Every key with its MEMORY USAGE (SAMPLES 0: every element counted) and encoding. */
async function keyUsage(admin) {
  const keys = [];
  let cursor = "0";
  do {
    const [nextCursor, batch] = await admin.scan(cursor, "COUNT", 1_000);
    keys.push(...batch);
    cursor = nextCursor;
  } while (cursor !== "0");
  const out = [];
  for (let i = 0; i < keys.length; i += 1_000) {
    const chunk = keys.slice(i, i + 1_000);
    const pipeline = admin.pipeline();
    for (const key of chunk) {
      pipeline.call("MEMORY", "USAGE", key, "SAMPLES", "0");
      pipeline.object("ENCODING", key);
    }
    const replies = await pipeline.exec();
    chunk.forEach((key, j) => out.push({ key, bytes: Number(replies[2 * j][1]), encoding: replies[2 * j + 1][1] }));
  }
  return out;
}

/** Sums MEMORY USAGE by kind; per delivery = sum / deliveries stored; keys and bytes per key of each encoding, by kind. */
function byKind(usage, kindOf, deliveries) {
  const parts = {};
  const encodings = {};
  for (const { key, bytes, encoding } of usage) {
    const kind = kindOf(key);
    parts[kind] = (parts[kind] ?? 0) + bytes;
    encodings[kind] ??= {};
    encodings[kind][encoding] ??= { keys: 0, bytes: 0 };
    encodings[kind][encoding].keys++;
    encodings[kind][encoding].bytes += bytes;
  }
  const perDelivery = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, round(v / deliveries)]));
  const keyCounts = Object.fromEntries(Object.entries(encodings).map(([k, e]) => [k, Object.values(e).reduce((a, b) => a + b.keys, 0)]));
  for (const e of Object.values(encodings)) for (const x of Object.values(e)) x.bytes_per_key = round(x.bytes / x.keys);
  for (const e of Object.values(encodings)) for (const x of Object.values(e)) delete x.bytes;
  return { perDelivery, encodings, keyCounts };
}

const OUR_KINDS = { "l:": "log_list", "q:": "request_hash", "f:": "feed_share", "i:": "index_share", "x:": "expiry_share" };
const ourKind = (key) => OUR_KINDS[key.slice(0, 2)] ?? (key === "meta" ? "meta" : "other_keys");
const seedKind = (key) => (key.startsWith("delivery:") ? "delivery_hash" : key.startsWith("event:") ? "event_hashes" : key.startsWith("state:") ? "state_string" : "other_keys");

/** The same deliveries in the seed article's layout, pipelined. */
async function writeSeedLayout(admin, lives) {
  for (let i = 0; i < lives.length; i += 250) {
    const pipeline = admin.pipeline();
    for (const { deliveryId, delivery, events } of lives.slice(i, i + 250)) {
      pipeline.hset(`delivery:${deliveryId}`, "pk", deliveryId, "budget", String(delivery.budget), "notes", delivery.notes);
      for (const { type, data, atMs } of events) {
        const pk = ulidLike(atMs);
        pipeline.hset(`event:${pk}`, "pk", pk, "delivery_id", deliveryId, "type", type, "data", JSON.stringify(data));
      }
      const state = {
        pk: deliveryId,
        status: STATUS_NAMES[delivery.status],
        budget: Number(delivery.budget),
        notes: delivery.notes,
        purchase_price: Number(delivery.purchasePrice),
        sell_price: Number(delivery.sellPrice),
        quantity: Number(delivery.quantity),
        delivered_quantity: Number(delivery.deliveredQuantity),
        version: Number(delivery.version),
        created_at: delivery.createdAt.toISOString(),
        updated_at: delivery.updatedAt.toISOString(),
      };
      pipeline.set(`state:${deliveryId}`, JSON.stringify(state));
    }
    const replies = await pipeline.exec();
    const failed = replies.find(([error]) => error);
    if (failed) throw failed[0];
  }
}

/** used_memory growth (less client buffers) and key growth over n deliveries; the parts are per delivery stored. */
function growth(before, after, n) {
  return {
    bytesPerDelivery: (after.stored - before.stored) / n,
    keysPerDelivery: (after.dbsize - before.dbsize) / n,
    raw: { used_memory_before: before.used, used_memory_after: after.used, mem_clients_before: before.clients, mem_clients_after: after.clients, keys_before: before.dbsize, keys_after: after.dbsize },
  };
}

/** The part of the figure MEMORY USAGE does not attribute to a key (the keyspace's bucket array, allocator rounding). */
function withRest(perDelivery, total) {
  const attributed = Object.values(perDelivery).reduce((a, b) => a + b, 0);
  return { ...perDelivery, rest: round(total - attributed) };
}

async function run(ctx) {
  const N = ctx.smoke ? 200 : 2_000;
  const svc = await startPrivateService(ctx);
  try {
    const { admin } = svc.redis;
    // One delivery first: the layout recorded, the append script loaded, the partition keys' first allocations.
    await live(svc.client, ulidLike());
    const before = await svc.redis.memory();
    const ids = Array.from({ length: N }, () => ulidLike());
    const started = nowNs();
    const lives = await liveAll(svc.client, ids);
    const serviceMs = (nowNs() - started) / 1e6;
    const after = await svc.redis.memory();
    const ours = growth(before, after, N);
    const ourUsage = byKind(await keyUsage(admin), ourKind, N + 1);
    ctx.log(`storage: ${N} deliveries (5 commands each) through the service in ${serviceMs.toFixed(0)} ms: ${ours.bytesPerDelivery.toFixed(0)} B and ${ours.keysPerDelivery.toFixed(2)} keys per delivery`);

    await svc.stopServer();
    await admin.flushdb("SYNC");
    const seedBefore = await svc.redis.memory();
    await writeSeedLayout(admin, lives);
    const seedAfter = await svc.redis.memory();
    const seed = growth(seedBefore, seedAfter, N);
    const seedUsage = byKind(await keyUsage(admin), seedKind, N);
    ctx.log(`storage: the same in the seed layout: ${seed.bytesPerDelivery.toFixed(0)} B and ${seed.keysPerDelivery.toFixed(2)} keys per delivery`);

    return {
      bytes_per_delivery: round(ours.bytesPerDelivery),
      seed_layout_bytes_per_delivery: round(seed.bytesPerDelivery),
      ratio_to_seed: round(ours.bytesPerDelivery / seed.bytesPerDelivery),
      keys_per_delivery: round(ours.keysPerDelivery),
      seed_layout_keys_per_delivery: round(seed.keysPerDelivery),
      deliveries: N,
      events_per_delivery: LIFE.length,
      id_length: ids[0].length,
      // MEMORY USAGE by key kind, per delivery stored (N + the warm-up one); "rest" = the figure less all of them.
      parts: withRest(ourUsage.perDelivery, ours.bytesPerDelivery),
      seed_layout_parts: withRest(seedUsage.perDelivery, seed.bytesPerDelivery),
      key_counts: ourUsage.keyCounts,
      encodings: ourUsage.encodings,
      seed_layout_encodings: seedUsage.encodings,
      service_ms: round(serviceMs),
      raw: { ours: ours.raw, seed_layout: seed.raw },
    };
  } finally {
    await svc.stop();
  }
}

const targets = (piece) =>
  piece.bytes_per_delivery === undefined
    ? []
    : [
        { name: "storage bytes/delivery", value: piece.bytes_per_delivery, target: `<= ${TARGET_BYTES} B`, met: piece.bytes_per_delivery <= TARGET_BYTES },
        ratioTarget("storage bytes/delivery vs seed layout", piece.bytes_per_delivery, piece.seed_layout_bytes_per_delivery, "<=", 0.8),
      ];

function rows(s, targetList) {
  const ours = s.parts;
  const seed = s.seed_layout_parts;
  return [
    [`storage bytes/delivery (N=${fmt(s.deliveries)}; seed layout as baseline)`, fmt(s.seed_layout_bytes_per_delivery), fmt(s.bytes_per_delivery), ratioText(s.bytes_per_delivery, s.seed_layout_bytes_per_delivery), metText(targetList, "storage bytes/delivery vs seed layout")],
    [`storage bytes/delivery, absolute`, "", fmt(s.bytes_per_delivery), "", metText(targetList, "storage bytes/delivery")],
    [`  keys per delivery`, fmt(s.seed_layout_keys_per_delivery), fmt(s.keys_per_delivery), ratioText(s.keys_per_delivery, s.seed_layout_keys_per_delivery), ""],
    [`  log List | delivery Hash`, fmt(seed.delivery_hash), fmt(ours.log_list), "", ""],
    [`  request Hash | 5 event Hashes`, fmt(seed.event_hashes), fmt(ours.request_hash), "", ""],
    [`  feed share | state String`, fmt(seed.state_string), fmt(ours.feed_share), "", ""],
    [`  index share${ours.expiry_share !== undefined ? " (+ expiry share)" : ""}`, "", `${fmt(ours.index_share)}${ours.expiry_share !== undefined ? ` (+ ${fmt(ours.expiry_share)})` : ""}`, "", ""],
    [`  rest (keyspace, allocator)`, fmt(seed.rest), fmt(ours.rest), "", ""],
  ];
}

export default { name: "storage", run, targets, rows };
