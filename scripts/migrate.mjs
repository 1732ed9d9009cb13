// npm run migrate [-- --drop-v1] [--partitions N] [--prefix P]
// Converts a Redis written by release 0.1 (storage layout 1) to layout 2 in
// place (see src/store/redis/migrate.ts for what is safe while it runs).
// Uses REDIS_URL (and REDIS_TLS_CA_FILE, RETAIN_FINISHED_FOR) like the service.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { duration } from "../dist/config.js";
import { migrateToLayout2 } from "../dist/store/redis/migrate.js";
import { createRedisConnection } from "../dist/store/redis/redisConnection.js";

const { values } = parseArgs({
  options: {
    "drop-v1": { type: "boolean", default: false },
    partitions: { type: "string" },
    prefix: { type: "string", default: "" },
  },
});
const url = process.env.REDIS_URL;
if (!url) {
  console.error("migrate: set REDIS_URL to the Redis to migrate");
  process.exit(2);
}
const tlsCa = process.env.REDIS_TLS_CA_FILE ? readFileSync(process.env.REDIS_TLS_CA_FILE) : undefined;
const redis = createRedisConnection(url, "delivery-service:migrate", { tlsCa });
// Connection errors reach the caller as rejections; ioredis would also print them.
redis.on("error", () => {});
try {
  await redis.connect();
  const report = await migrateToLayout2(redis, {
    keyPrefix: values.prefix,
    ...(values.partitions ? { partitions: Number(values.partitions) } : {}),
    retainFinishedForMs: duration(process.env, "RETAIN_FINISHED_FOR", undefined, 1_000),
    dropV1: values["drop-v1"],
    log: (line) => console.log(`migrate: ${line}`),
  });
  console.log(JSON.stringify(report));
  await redis.quit();
} catch (error) {
  console.error(`migrate: ${error instanceof Error ? error.message : String(error)}`);
  redis.disconnect();
  process.exit(1);
}
