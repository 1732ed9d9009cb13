import { afterEach, describe, expect, it } from "vitest";
import { connectRedis, testRedisUrl } from "./redis.js";
import { pingOnce, startRedisServer, type RedisServerHandle } from "./redisServer.js";
import type { Redis } from "ioredis";

describe("startRedisServer", () => {
  let server: RedisServerHandle | undefined;
  let client: Redis | undefined;

  afterEach(async () => {
    client?.disconnect();
    client = undefined;
    await server?.kill();
    server = undefined;
  });

  it("starts a server, keeps appendonly data across restart(), and kill() stops it", async () => {
    server = await startRedisServer({ appendonly: true });
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`);

    client = connectRedis(server.url);
    await client.set("k", "v1");
    expect(await client.get("k")).toBe("v1");
    client.disconnect();

    await server.restart();
    expect(await pingOnce(server.port)).toBe(true);

    client = connectRedis(server.url);
    expect(await client.get("k")).toBe("v1");
    client.disconnect();
    client = undefined;

    await server.kill();
    expect(await pingOnce(server.port)).toBe(false);
  });

  it("two servers get different ports", async () => {
    const a = await startRedisServer();
    const b = await startRedisServer();
    try {
      expect(a.port).not.toBe(b.port);
      expect(await pingOnce(a.port)).toBe(true);
      expect(await pingOnce(b.port)).toBe(true);
    } finally {
      await a.stop();
      await b.stop();
    }
    expect(await pingOnce(a.port)).toBe(false);
  });
});

describe("shared test Redis", () => {
  it("answers PING", async () => {
    const client = connectRedis(testRedisUrl());
    try {
      expect(await client.ping()).toBe("PONG");
    } finally {
      client.disconnect();
    }
  });
});
