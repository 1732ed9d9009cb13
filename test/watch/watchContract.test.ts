import { testRedisUrl } from "../support/redis.js";
import { startTestService } from "../support/testServer.js";
import { describeWatchContract } from "./watchContract.js";

describeWatchContract("redis", () => startTestService({ redisUrl: testRedisUrl() }));
describeWatchContract("memory", () => startTestService({}));
