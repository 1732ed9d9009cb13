/**
 * vitest globalSetup: decide where the shared test Redis comes from.
 *
 *   1. REDIS_URL, if set (used as is, nothing started or stopped);
 *   2. else testcontainers (redis:7-alpine) if a Docker engine answers;
 *   3. else a `redis-server` binary on PATH, on a free port (redisServer.ts).
 *
 * The URL reaches tests through `provide('redisUrl', url)`; read it with
 * `testRedisUrl()` from ./redis.ts. Test files share this one Redis and keep
 * apart by key prefix (`uniquePrefix()`); tests that need to restart or kill
 * Redis start their own with `startRedisServer()`.
 */
import type { TestProject } from "vitest/node";
import { startRedisServer } from "./redisServer.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

const DOCKER_CHECK_TIMEOUT_MS = 1500;

/** Hide credentials when printing a URL. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "<unparseable REDIS_URL>";
  }
}

/** True if testcontainers finds a working container runtime, within a short timeout. */
async function dockerAvailable(): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), DOCKER_CHECK_TIMEOUT_MS);
    timer.unref();
  });
  const probe = (async () => {
    try {
      const { getContainerRuntimeClient } = await import("testcontainers");
      await getContainerRuntimeClient();
      return true;
    } catch {
      return false;
    }
  })();
  try {
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const fromEnv = process.env.REDIS_URL;
  if (fromEnv) {
    project.provide("redisUrl", fromEnv);
    console.log(`[test redis] using REDIS_URL ${redact(fromEnv)}`);
    return async () => {};
  }

  if (await dockerAvailable()) {
    const { RedisContainer } = await import("@testcontainers/redis");
    const container = await new RedisContainer("redis:7-alpine").start();
    const url = container.getConnectionUrl();
    project.provide("redisUrl", url);
    console.log(`[test redis] using testcontainers redis:7-alpine at ${url}`);
    return async () => {
      await container.stop();
    };
  }

  const server = await startRedisServer();
  project.provide("redisUrl", server.url);
  console.log(`[test redis] no REDIS_URL and no Docker engine: using redis-server binary at ${server.url}`);
  return async () => {
    await server.stop();
  };
}
