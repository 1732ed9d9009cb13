/**
 * Catch-up: a delivery with N events (1 created through the service, the rest
 * appended straight through the service's own Redis store); the time from
 * WatchDelivery with after_version 0 to the receipt of version N. Baseline:
 * the bare server writing N pre-encoded updates of the same size to one
 * stream, respecting backpressure.
 */
import grpc from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { evolve } from "../../dist/domain/index.js";
import { createRedisEventStore } from "../../dist/store/redis/redisEventStore.js";
import { benchId, BUDGET, NOTES } from "../lib/fixtures.mjs";
import { callUnary, clientFor } from "../lib/grpcClient.mjs";
import { limitedBy, medianUtil, utilisation } from "../lib/measure.mjs";
import { metText, ratioTarget, ratioText, trio } from "../lib/report.mjs";
import { nowNs, round, spread } from "../lib/stats.mjs";

/** Appends events straight through the service's own Redis store: IncreaseBudget after IncreaseBudget. */
async function seedEvents(redisUrl, deliveryId, total) {
  const connection = new Redis(redisUrl, { lazyConnect: false, maxRetriesPerRequest: 1 });
  try {
    const store = createRedisEventStore({ redis: connection });
    let { state } = await store.load(deliveryId);
    const appendNext = () => {
      const version = state.version + 1;
      const event = { deliveryId, version, occurredAtMs: Date.now(), requestId: `seed-${version}`, actor: "", data: { type: "budgetIncreased", amountMinor: 1 } };
      const record = { event, delivery: evolve(state, event) };
      const previousStatus = state.status;
      state = record.delivery;
      return store.append({ record, expectedVersion: version - 1, previousStatus, fingerprint: "seed" });
    };
    await appendNext(); // loads the script (EVALSHA falls back to EVAL once)
    while (state.version < total) {
      // Sent without waiting: one connection keeps them in order, so each finds the version before it.
      const batch = [];
      while (state.version < total && batch.length < 2_000) batch.push(appendNext());
      const outcomes = await Promise.all(batch);
      const bad = outcomes.find((o) => o.outcome !== "appended");
      if (bad) throw new Error(`seeding failed: ${JSON.stringify(bad)}`);
    }
  } finally {
    connection.disconnect();
  }
}

function catchUpOnce(client, deliveryId, total) {
  return new Promise((resolve, reject) => {
    const started = nowNs();
    let received = 0;
    const call = client.watchDelivery({ deliveryId, afterVersion: 0n });
    const timer = setTimeout(() => {
      call.cancel();
      reject(new Error(`catch-up got ${received}/${total} in 30 s`));
    }, 30_000);
    call.on("data", (m) => {
      received++;
      if (Number(m.delivery.version) === total) {
        const ms = (nowNs() - started) / 1e6;
        clearTimeout(timer);
        call.cancel();
        resolve({ ms, received });
      }
    });
    call.on("error", (error) => {
      if (error.code === grpc.status.CANCELLED) return;
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** The JSON key of the figure: events10k_ms for 10,000 events, events200_ms for 200. */
const figureKey = (n) => `events${n >= 1000 ? `${n / 1000}k` : n}_ms`;

async function run(ctx) {
  const N = ctx.cfg.catchUpEvents;
  const [real, bare] = await Promise.all([ctx.servers.startServer("real"), ctx.servers.startServer("bare")]);
  const servers = { real, bare };
  const clients = { real: clientFor(servers.real.port), bare: clientFor(servers.bare.port) };
  try {
    const deliveryId = benchId("k");
    await callUnary(clients.real, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` });
    const seedStart = nowNs();
    await seedEvents(ctx.redis.url, deliveryId, N);
    ctx.log(`catch-up: seeded ${N} events in ${((nowNs() - seedStart) / 1e6).toFixed(0)} ms`);
    await servers.bare.request("prepareCatchUp", { n: N });
    const runs = { real: [], bare: [] };
    for (let r = 0; r < ctx.runs; r++) {
      for (const kind of ["bare", "real"]) {
        const xrangeBefore = await ctx.redis.calls("xrange");
        const stopProfile = await ctx.servers.profileWindow(servers[kind], `catchup-${kind}-run${r + 1}`);
        const a = await ctx.measure.snapshot(servers[kind]);
        const { ms, received } = await catchUpOnce(clients[kind], kind === "real" ? deliveryId : "bare", N);
        const b = await ctx.measure.snapshot(servers[kind]);
        await stopProfile();
        const xrange = (await ctx.redis.calls("xrange")) - xrangeBefore;
        runs[kind].push({ ms, received, xrange, util: utilisation(a, b), server_us_per_event: (b.server - a.server) / N });
        ctx.log(`catch-up ${N} run ${r + 1} ${kind}: ${ms.toFixed(0)} ms (${received} messages, ${xrange} XRANGE calls)`);
      }
    }
    const key = figureKey(N);
    const realMs = spread(runs.real.map((x) => x.ms));
    const bareMs = spread(runs.bare.map((x) => x.ms));
    return {
      [key]: round(realMs.median),
      [`baseline_${key}`]: round(bareMs.median),
      events: N,
      server_us_per_event: round(spread(runs.real.map((x) => x.server_us_per_event)).median),
      baseline_server_us_per_event: round(spread(runs.bare.map((x) => x.server_us_per_event)).median),
      xrange_calls: spread(runs.real.map((x) => x.xrange)).median,
      limited_by: limitedBy(medianUtil(runs.real), true),
      baseline_limited_by: limitedBy(medianUtil(runs.bare), false),
      detail: {
        [key]: { min: round(realMs.min), median: round(realMs.median), max: round(realMs.max) },
        [`baseline_${key}`]: { min: round(bareMs.min), median: round(bareMs.median), max: round(bareMs.max) },
      },
    };
  } finally {
    for (const c of Object.values(clients)) c.close();
    await Promise.all(Object.values(servers).map((s) => s.stop()));
  }
}

const targets = (piece) => {
  const k = piece.events10k_ms;
  return k === undefined ? [] : [ratioTarget("catch-up 10k events", k, piece.baseline_events10k_ms, "<=", 1.5)].filter(Boolean);
};

function rows(k, targetList) {
  const key = figureKey(k.events);
  return [
    [`catch-up ${k.events} events ms`, trio(k.detail[`baseline_${key}`]), trio(k.detail[key]), ratioText(k[key], k[`baseline_${key}`]), metText(targetList, "catch-up 10k events")],
    [`  limited by`, k.baseline_limited_by, k.limited_by, "", ""],
  ];
}

export default { name: "catchup", run, targets, rows };
