/**
 * Helpers for tests that use the shared test Redis (see globalSetup.ts).
 *
 *   const redis = connectRedis(testRedisUrl());
 *   const prefix = uniquePrefix();   // e.g. "t:1a2b3c4d:" — prefix every key
 *
 * Test files run in parallel against the same Redis, so never FLUSHDB/FLUSHALL
 * it; keep to your own prefix. For restart/kill/health scenarios start a
 * private server with `startRedisServer()` from ./redisServer.ts.
 */
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { inject } from "vitest";
import type {} from "./globalSetup.js"; // ProvidedContext['redisUrl'] typing

/** URL of the shared test Redis chosen by globalSetup. */
export function testRedisUrl(): string {
  const url = inject("redisUrl");
  if (!url) throw new Error("redisUrl not provided: is test/support/globalSetup.ts configured in vitest.config.ts?");
  return url;
}

/** A random key prefix, e.g. "t:1a2b3c4d:", so test files don't clash. */
export function uniquePrefix(): string {
  return `t:${randomBytes(4).toString("hex")}:`;
}

/** An ioredis client that connects at once and fails a command after one retry. */
export function connectRedis(url: string): Redis {
  return new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
}
