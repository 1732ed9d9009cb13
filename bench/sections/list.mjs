/**
 * List: ListDeliveries (the real gRPC client, one call at a time) of the
 * first page, page_size 50, statuses = [ACTIVE], among 2,000 deliveries of
 * which 100 are ACTIVE, then among 20,000 with the same 100 ACTIVE (200 and
 * 2,000 in a smoke). The others are READY (3 in 4) or COMPLETED (1 in 4).
 * The service and a fresh redis-server of their own; the deliveries are
 * written straight through the service's Redis store from dist/ (pipelined
 * appends, as the catch-up section seeds its events). Target: the page at
 * 20,000 deliveries within 1.5 x the page at 2,000: it must not grow with the
 * deliveries in the other statuses.
 */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { evolve, initialState } from "../../dist/domain/index.js";
import * as pb from "../../dist/gen/delivery/v1/delivery.js";
import { createRedisEventStore } from "../../dist/store/redis/redisEventStore.js";
import { benchId, NOTES } from "../lib/fixtures.mjs";
import { callUnary } from "../lib/grpcClient.mjs";
import { startPrivateService } from "../lib/privateService.mjs";
import { fmt, metText, ratioTarget, ratioText, trioOf, trio } from "../lib/report.mjs";
import { nowNs, percentile, round, sortNumbers, spread } from "../lib/stats.mjs";

const ACTIVE = 100;
const PAGE_SIZE = 50;
const BATCH = 2_000;
const TARGET_NAME = "list ACTIVE page, 20k vs 2k deliveries";

/** The events that take a delivery from nothing to each status the section uses. */
const LIVES = {
  READY: [{ type: "created", budgetMinor: 1_000_000, notes: NOTES }],
  ACTIVE: [{ type: "created", budgetMinor: 1_000_000, notes: NOTES }, { type: "started" }],
  COMPLETED: [
    { type: "created", budgetMinor: 1_000_000, notes: NOTES },
    { type: "started" },
    { type: "productsPickedUp", purchasePriceMinor: 300, quantity: 10 },
    { type: "productsDelivered", sellPriceMinor: 450, quantity: 10 },
  ],
};

/** Writes deliveries [from, to): ACTIVE every `activeEvery`-th (0: none), else 1 in 4 COMPLETED, the rest READY. */
async function fill(store, from, to, activeEvery) {
  const kindOf = (i) => (activeEvery > 0 && i % activeEvery === 0 ? "ACTIVE" : i % 4 === 1 ? "COMPLETED" : "READY");
  const append = (d, data) => {
    const version = d.state.version + 1;
    const event = { deliveryId: d.id, version, occurredAtMs: Date.now(), requestId: randomUUID(), actor: "", data };
    const record = { event, delivery: evolve(d.state, event) };
    const previousStatus = d.state.status;
    d.state = record.delivery;
    return store.append({ record, expectedVersion: version - 1, previousStatus, fingerprint: "bench" });
  };
  for (let start = from; start < to; start += BATCH) {
    const batch = [];
    for (let i = start; i < Math.min(to, start + BATCH); i++) batch.push({ id: benchId("l"), life: LIVES[kindOf(i)], state: initialState });
    // One step of every delivery of the batch at a time: sent without waiting (pipelined), each finds the version before it.
    for (let step = 0; step < 4; step++) {
      const due = batch.filter((d) => d.life.length > step);
      // The very first append alone: it loads the script (EVALSHA falls back to EVAL once).
      if (start === 0 && step === 0) {
        const first = due.shift();
        await append(first, first.life[0]);
      }
      const outcomes = await Promise.all(due.map((d) => append(d, d.life[step])));
      const bad = outcomes.find((o) => o.outcome !== "appended");
      if (bad) throw new Error(`list fill: ${JSON.stringify(bad)}`);
    }
  }
}

async function activeCount(admin) {
  const keys = [];
  let cursor = "0";
  do {
    const [next, batch] = await admin.scan(cursor, "MATCH", "i:*:ACTIVE", "COUNT", 1_000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  const counts = await Promise.all(keys.map((k) => admin.zcard(k)));
  return counts.reduce((a, b) => a + b, 0);
}

const REQUEST = { pageSize: PAGE_SIZE, pageToken: "", statuses: [pb.DeliveryStatus.DELIVERY_STATUS_ACTIVE], orderBy: "" };

async function page(client) {
  const response = await callUnary(client, "listDeliveries", REQUEST);
  if (response.deliveries.length !== PAGE_SIZE || !response.nextPageToken || response.deliveries.some((d) => d.status !== pb.DeliveryStatus.DELIVERY_STATUS_ACTIVE)) {
    throw new Error(`list: a page of ${response.deliveries.length} (next token ${response.nextPageToken ? "set" : "empty"}), expected ${PAGE_SIZE} ACTIVE and a next page`);
  }
}

/** `runs` windows of `calls` sequential calls (after a warm-up): p50 and p99 of each. */
async function measure(ctx, client, calls, warmup) {
  for (let i = 0; i < warmup; i++) await page(client);
  const windows = [];
  for (let r = 0; r < ctx.runs; r++) {
    const latencies = [];
    for (let i = 0; i < calls; i++) {
      const started = nowNs();
      await page(client);
      latencies.push((nowNs() - started) / 1e6);
    }
    const sorted = sortNumbers(latencies);
    windows.push({ p50: percentile(sorted, 50), p99: percentile(sorted, 99) });
  }
  return { p50: spread(windows.map((w) => w.p50)), p99: spread(windows.map((w) => w.p99)) };
}

async function run(ctx) {
  const large = ctx.smoke ? 2_000 : 20_000;
  const small = ctx.smoke ? 200 : 2_000;
  const calls = ctx.smoke ? 20 : 200;
  const warmup = ctx.smoke ? 5 : 30;
  const svc = await startPrivateService(ctx);
  const connection = new Redis(svc.redis.url, { enableAutoPipelining: true, maxRetriesPerRequest: 1 });
  try {
    const store = createRedisEventStore({ redis: connection });
    const sizes = {};
    let filled = 0;
    for (const size of [small, large]) {
      const started = nowNs();
      await fill(store, filled, size, filled === 0 ? size / ACTIVE : 0);
      const fillMs = (nowNs() - started) / 1e6;
      filled = size;
      const active = await activeCount(svc.redis.admin);
      if (active !== ACTIVE) throw new Error(`list: ${active} ACTIVE deliveries indexed, expected ${ACTIVE}`);
      const m = await measure(ctx, svc.client, calls, warmup);
      sizes[size] = { ...m, fillMs };
      ctx.log(`list: ${size} deliveries (${ACTIVE} ACTIVE; filled in ${fillMs.toFixed(0)} ms): ACTIVE page p50 ${m.p50.median.toFixed(2)} ms, p99 ${m.p99.median.toFixed(2)} ms`);
    }
    const [s, l] = [sizes[small], sizes[large]];
    return {
      active_page_ms: round(l.p50.median),
      active_page_p99_ms: round(l.p99.median),
      [`active_page_ms_${small}`]: round(s.p50.median),
      [`active_page_p99_ms_${small}`]: round(s.p99.median),
      deliveries: large,
      small_deliveries: small,
      active: ACTIVE,
      page_size: PAGE_SIZE,
      calls_per_run: calls,
      fill_ms: { [small]: round(s.fillMs), [large]: round(l.fillMs) },
      detail: {
        active_page_ms: trioOf(l.p50),
        active_page_p99_ms: trioOf(l.p99),
        [`active_page_ms_${small}`]: trioOf(s.p50),
        [`active_page_p99_ms_${small}`]: trioOf(s.p99),
      },
    };
  } finally {
    connection.disconnect();
    await svc.stop();
  }
}

const targets = (piece) => [ratioTarget(TARGET_NAME, piece.active_page_ms, piece[`active_page_ms_${piece.small_deliveries}`], "<=", 1.5)];

function rows(p, targetList) {
  const small = p.small_deliveries;
  return [
    [`list ACTIVE page p50 ms (${fmt(small)} as baseline → ${fmt(p.deliveries)} deliveries)`, trio(p.detail[`active_page_ms_${small}`]), trio(p.detail.active_page_ms), ratioText(p.active_page_ms, p[`active_page_ms_${small}`]), metText(targetList, TARGET_NAME)],
    [`list ACTIVE page p99 ms`, trio(p.detail[`active_page_p99_ms_${small}`]), trio(p.detail.active_page_p99_ms), ratioText(p.active_page_p99_ms, p[`active_page_p99_ms_${small}`]), ""],
  ];
}

export default { name: "list", run, targets, rows };
