// npm run inspect -- <delivery id> [<delivery id> ...] [--prefix P]
// Prints, as JSON (an array, one element per id), what storage layout 2 keeps
// for each delivery: partition, keys, every event decoded, the current state,
// the request Hash, the index entry and the feed entries (see
// src/store/redis/inspect.ts). Read-only. Uses REDIS_URL (default
// redis://127.0.0.1:6379) and REDIS_TLS_CA_FILE like the service.
// Exit status: 0 when every id was found; 1 when one is unknown (NOT_FOUND on
// stderr, the others still printed) or the store cannot be read; 2 on usage.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { inspectDeliveries } from "../dist/store/redis/inspect.js";
import { createRedisConnection } from "../dist/store/redis/redisConnection.js";

const USAGE = "usage: npm run inspect -- <delivery id> [<delivery id> ...] [--prefix P]";
const ID = /^[A-Za-z0-9_-]{1,64}$/;

let parsed;
try {
  parsed = parseArgs({ options: { prefix: { type: "string", default: "" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
} catch (error) {
  console.error(`inspect: ${error.message}\n${USAGE}`);
  process.exit(2);
}
const { values, positionals: ids } = parsed;
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
if (ids.length === 0) {
  console.error(`inspect: no delivery id given\n${USAGE}`);
  process.exit(2);
}
const malformed = ids.filter((id) => !ID.test(id));
if (malformed.length > 0) {
  for (const id of malformed) console.error(`inspect: INVALID_ARGUMENT: "${id}" is not a delivery id (^[A-Za-z0-9_-]{1,64}$)`);
  process.exit(2);
}

const url = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const tlsCa = process.env.REDIS_TLS_CA_FILE ? readFileSync(process.env.REDIS_TLS_CA_FILE) : undefined;
const redis = createRedisConnection(url, "delivery-service:inspect", { tlsCa });
try {
  await redis.connect();
  const results = await inspectDeliveries(redis, values.prefix, ids);
  const missing = results.filter((r) => !r.found);
  console.log(JSON.stringify(results.filter((r) => r.found), null, 2));
  for (const m of missing) {
    console.error(`inspect: NOT_FOUND: delivery ${m.id} not found under prefix "${values.prefix}" (partition ${m.partition}, ${m.log} is empty)`);
  }
  await redis.quit();
  process.exit(missing.length > 0 ? 1 : 0);
} catch (error) {
  console.error(`inspect: ${error instanceof Error ? error.message : String(error)}`);
  redis.disconnect();
  process.exit(1);
}
