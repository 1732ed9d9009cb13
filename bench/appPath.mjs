/**
 * The service's own path per command, outside gRPC: the application, the
 * Redis store and the server's Redis clients (createRedisClients: their write
 * batching, deadline and timeouts) against a private redis-server, 64
 * concurrent callers running delivery lives (create, start, increase budget,
 * pick up, deliver, with request ids), each command's response encoded as
 * the gRPC handler would. Prints the CPU per command of this process (µs) and the
 * rate, per window; the first window is a warm-up. With --reads, the path of
 * GetDelivery instead: 2,000 deliveries of 3 events each (as the bench's
 * reads section), read at random and encoded as the handler does.
 *
 *   npm run build && node bench/appPath.mjs [--windows 4] [--ms 2000] [--concurrency 64] [--reads]
 *
 * BENCH_SERVICE_DIST: another build than ../dist (a patched copy under bench/results/).
 */
import path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { startRedis } from "./lib/redisServer.mjs";

const { values } = parseArgs({
  options: { windows: { type: "string", default: "4" }, ms: { type: "string", default: "2000" }, concurrency: { type: "string", default: "64" }, reads: { type: "boolean", default: false } },
});
const { reads } = values;
for (const name of ["windows", "ms", "concurrency"]) {
  const value = values[name];
  if (!/^[1-9]\d{0,5}$/.test(value)) {
    console.error(`--${name} must be a positive integer (at most 6 digits), got ${value}`);
    process.exit(2);
  }
}
const dist = process.env.BENCH_SERVICE_DIST ? pathToFileURL(`${path.resolve(process.env.BENCH_SERVICE_DIST)}/`).href : new URL("../dist/", import.meta.url).href;
const { createRedisEventStore } = await import(`${dist}store/redis/redisEventStore.js`);
const { createDeliveryApp } = await import(`${dist}app/deliveryApp.js`);
const { createRedisClients } = await import(`${dist}store/redis/redisClients.js`);
const { parseRedisTarget } = await import(`${dist}store/redis/redisTarget.js`);
const { updateBytes } = await import(`${dist}mapping/protoMapping.js`);
const { encodeDeliveryIn } = await import(`${dist}mapping/wire.js`);

const LIFE = [
  { type: "CreateDelivery", budgetMinor: 1_000_000, notes: "leave at the door, ring twice; fragile: glassware" },
  { type: "StartDelivery" },
  { type: "IncreaseBudget", amountMinor: 500 },
  { type: "PickupProducts", purchasePriceMinor: 300, quantity: 2 },
  { type: "DeliverProducts", sellPriceMinor: 400, quantity: 2 },
];

const redisServer = await startRedis();
// The server's own clients (their write batching, deadline and timeouts); the subscriber stays idle.
const clients = createRedisClients(parseRedisTarget({ REDIS_URL: redisServer.url }), { name: "bench-app-path" });
try {
  await clients.connect();
  // As the server builds it: a deadline per call, the default partitions.
  const store = createRedisEventStore({ redis: clients.commands, within: (operation) => clients.within(operation) });
  const app = createDeliveryApp({ store });
  let calls = 0;
  let stop = false;
  const readIds = [];
  if (reads) {
    const tag = Date.now().toString(36);
    for (let i = 0; i < 2_000; i += 50) {
      const ids = Array.from({ length: 50 }, (_, j) => `read-${i + j}-${tag}`);
      await Promise.all(ids.map(async (id) => {
        for (const [step, command] of LIFE.slice(0, 3).entries()) await app.execute(id, command, { requestId: `${id}-${step}` });
      }));
      readIds.push(...ids);
    }
  }
  const reader = async (w) => {
    for (let n = w; !stop; n += 7) {
      encodeDeliveryIn(1, await app.get(readIds[n % readIds.length], undefined));
      calls++;
    }
  };
  const commander = async (w) => {
    for (let n = 0; !stop; n++) {
      const id = `app-${w}-${n}-${Date.now().toString(36)}`;
      for (const [step, command] of LIFE.entries()) {
        if (stop) return;
        updateBytes(await app.execute(id, command, { requestId: `${id}-${step}` }));
        calls++;
      }
    }
  };
  const worker = reads ? reader : commander;
  const what = reads ? "read" : "command";
  for (let window = 0; window < Number(values.windows); window++) {
    stop = false;
    const workers = Array.from({ length: Number(values.concurrency) }, (_, w) => worker(w));
    await sleep(300);
    const cpu = process.cpuUsage();
    const before = calls;
    const t0 = performance.now();
    await sleep(Number(values.ms));
    const used = process.cpuUsage(cpu);
    const done = calls - before;
    const seconds = (performance.now() - t0) / 1000;
    stop = true;
    await Promise.all(workers);
    console.log(`window ${window + 1}${window === 0 ? " (warm-up)" : ""}: ${((used.user + used.system) / done).toFixed(1)} µs CPU per ${what}, ${Math.round(done / seconds)} ${what}s/s`);
  }
} finally {
  await clients.close();
  await redisServer.stop();
}
