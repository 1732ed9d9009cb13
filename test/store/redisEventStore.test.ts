import { createRedisEventStore } from "../../src/store/redis/redisEventStore.js";
import { connectRedis, testRedisUrl, uniquePrefix } from "../support/redis.js";
import { eventStoreContract } from "./eventStoreContract.js";

// A connection and a fresh key prefix per test: tests share nothing, files share one Redis.
eventStoreContract("redis", async (options = {}) => {
  const redis = connectRedis(testRedisUrl());
  const store = createRedisEventStore({ redis, keyPrefix: uniquePrefix(), ...options });
  return {
    store,
    // The store never closes a connection it was given.
    cleanup: async () => {
      await redis.quit();
    },
  };
});
