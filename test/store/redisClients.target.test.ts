import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/configError.js";
import { callWithin, CommandDeadlineError, withDeadline } from "../../src/store/redis/deadline.js";
import { callRedis } from "../../src/store/redis/redisErrors.js";
import { describeRedisTarget, parseRedisTarget, type RedisTarget } from "../../src/store/redis/redisTarget.js";
import { StoreUnavailable } from "../../src/domain/index.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "redis-target-test-"));
const caFile = path.join(dir, "ca.pem");
writeFileSync(caFile, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
const notPem = path.join(dir, "not.pem");
writeFileSync(notPem, "hello");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const defaults = { commandTimeoutMs: 2000, waitReplicas: 0, waitTimeoutMs: 500, tlsCaFile: undefined };
const noAuth = { username: undefined, password: undefined, tls: false };

describe("parseRedisTarget", () => {
  const ok: [string, Record<string, string>, RedisTarget][] = [
    ["nothing: memory", {}, { mode: "memory" }],
    ["empty values count as unset", { REDIS_URL: "", REDIS_CLUSTER_NODES: "" }, { mode: "memory" }],
    ["a URL", { REDIS_URL: "redis://h:6380/2" }, { mode: "single", url: "redis://h:6380/2", ...defaults }],
    ["an upper-case TLS scheme is lower-cased", { REDIS_URL: "REDISS://h:6380" }, { mode: "single", url: "rediss://h:6380", ...defaults }],
    [
      "a rediss URL with a CA",
      { REDIS_URL: "rediss://u:p@h:6380", REDIS_TLS_CA_FILE: caFile },
      { mode: "single", url: "rediss://u:p@h:6380", ...defaults, tlsCaFile: caFile },
    ],
    [
      "cluster nodes (spaces around commas allowed)",
      { REDIS_CLUSTER_NODES: "10.0.0.1:7000, redis-2.svc.local:7001,[::1]:7002,redis_3:7003" },
      {
        mode: "cluster",
        nodes: [
          { host: "10.0.0.1", port: 7000 },
          { host: "redis-2.svc.local", port: 7001 },
          { host: "::1", port: 7002 },
          { host: "redis_3", port: 7003 },
        ],
        ...defaults,
        ...noAuth,
      },
    ],
    [
      "cluster with credentials, TLS and a CA",
      { REDIS_CLUSTER_NODES: "h:1", REDIS_USERNAME: "svc", REDIS_PASSWORD: "pw", REDIS_TLS: "true", REDIS_TLS_CA_FILE: caFile },
      { mode: "cluster", nodes: [{ host: "h", port: 1 }], ...defaults, tlsCaFile: caFile, username: "svc", password: "pw", tls: true },
    ],
    [
      "sentinels",
      { REDIS_SENTINELS: "s1:26379,s2:26379", REDIS_SENTINEL_MASTER: "mymaster", REDIS_PASSWORD: "pw", REDIS_SENTINEL_PASSWORD: "spw" },
      {
        mode: "sentinel",
        sentinels: [
          { host: "s1", port: 26379 },
          { host: "s2", port: 26379 },
        ],
        masterName: "mymaster",
        sentinelUsername: undefined,
        sentinelPassword: "spw",
        ...defaults,
        ...noAuth,
        password: "pw",
      },
    ],
    [
      "timeouts and WAIT",
      { REDIS_URL: "redis://h", REDIS_COMMAND_TIMEOUT_MS: "750", REDIS_WAIT_REPLICAS: "1", REDIS_WAIT_TIMEOUT_MS: "200" },
      { mode: "single", url: "redis://h", ...defaults, commandTimeoutMs: 750, waitReplicas: 1, waitTimeoutMs: 200 },
    ],
    [
      "a WAIT timeout above the command timeout is fine without WAIT",
      { REDIS_URL: "redis://h", REDIS_COMMAND_TIMEOUT_MS: "100" },
      { mode: "single", url: "redis://h", ...defaults, commandTimeoutMs: 100 },
    ],
  ];
  it.each(ok)("%s", (_, env, expected) => {
    expect(parseRedisTarget(env)).toEqual(expected);
  });

  const bad: [string, Record<string, string>, RegExp][] = [
    ["URL and cluster", { REDIS_URL: "redis://h", REDIS_CLUSTER_NODES: "h:1" }, /^set only one of .* got REDIS_URL and REDIS_CLUSTER_NODES$/],
    ["all three", { REDIS_URL: "redis://h", REDIS_CLUSTER_NODES: "h:1", REDIS_SENTINELS: "h:2" }, /got REDIS_URL and REDIS_CLUSTER_NODES and REDIS_SENTINELS/],
    ["not a URL", { REDIS_URL: "localhost:6379" }, /REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/],
    ["http URL", { REDIS_URL: "http://h" }, /got protocol "http:"/],
    ["CA with plain redis://", { REDIS_URL: "redis://h", REDIS_TLS_CA_FILE: caFile }, /REDIS_TLS_CA_FILE needs a rediss:\/\/ REDIS_URL/],
    ["CA not PEM", { REDIS_URL: "rediss://h", REDIS_TLS_CA_FILE: notPem }, /REDIS_TLS_CA_FILE is not a PEM file/],
    ["CA missing", { REDIS_URL: "rediss://h", REDIS_TLS_CA_FILE: path.join(dir, "nope.pem") }, /REDIS_TLS_CA_FILE cannot be read: ENOENT/],
    ["password with a URL", { REDIS_URL: "redis://h", REDIS_PASSWORD: "x" }, /REDIS_PASSWORD is for REDIS_CLUSTER_NODES and REDIS_SENTINELS/],
    ["TLS flag with a URL", { REDIS_URL: "redis://h", REDIS_TLS: "true" }, /REDIS_TLS is for/],
    ["password without Redis", { REDIS_PASSWORD: "x" }, /REDIS_PASSWORD needs REDIS_CLUSTER_NODES or REDIS_SENTINELS/],
    ["CA without Redis", { REDIS_TLS_CA_FILE: caFile }, /REDIS_TLS_CA_FILE needs a Redis target/],
    ["CA without REDIS_TLS", { REDIS_CLUSTER_NODES: "h:1", REDIS_TLS_CA_FILE: caFile }, /REDIS_TLS_CA_FILE needs REDIS_TLS=true/],
    ["REDIS_TLS=yes", { REDIS_CLUSTER_NODES: "h:1", REDIS_TLS: "yes" }, /REDIS_TLS must be true or false, got "yes"/],
    ["username without password", { REDIS_CLUSTER_NODES: "h:1", REDIS_USERNAME: "u" }, /REDIS_USERNAME needs REDIS_PASSWORD/],
    ["no port", { REDIS_CLUSTER_NODES: "h1:7000,h2" }, /REDIS_CLUSTER_NODES must be a comma-separated list of host:port, got "h2" \(entry 2 of 2\)/],
    ["empty entry", { REDIS_CLUSTER_NODES: "h1:7000,,h2:7001" }, /got an empty entry 2 of 3/],
    ["trailing comma", { REDIS_CLUSTER_NODES: "h1:7000," }, /got an empty entry 2 of 2/],
    ["port 0", { REDIS_CLUSTER_NODES: "h1:0" }, /port 0 out of 1-65535/],
    ["port too big", { REDIS_CLUSTER_NODES: "h1:65536" }, /port 65536 out of 1-65535/],
    ["port not a number", { REDIS_CLUSTER_NODES: "h1:70a0" }, /got "h1:70a0"/],
    ["a URL in the list", { REDIS_CLUSTER_NODES: "redis://h1:7000" }, /got "redis:\/\/h1:7000"/],
    ["bad host", { REDIS_CLUSTER_NODES: "-h:7000" }, /invalid host "-h"/],
    ["bad IPv4", { REDIS_CLUSTER_NODES: "10.0.0.300:7000" }, /invalid host "10.0.0.300"/],
    ["bare IPv6", { REDIS_CLUSTER_NODES: "::1:7000" }, /got "::1:7000"/],
    ["bad IPv6", { REDIS_CLUSTER_NODES: "[fe80::zz]:7000" }, /invalid host "fe80::zz"/],
    ["duplicate", { REDIS_CLUSTER_NODES: "H:7000,h:7000" }, /lists "h:7000" twice/],
    ["sentinels without master", { REDIS_SENTINELS: "s:26379" }, /REDIS_SENTINELS needs REDIS_SENTINEL_MASTER/],
    ["master name with a space", { REDIS_SENTINELS: "s:26379", REDIS_SENTINEL_MASTER: "my master" }, /REDIS_SENTINEL_MASTER must be a name/],
    ["master without sentinels", { REDIS_URL: "redis://h", REDIS_SENTINEL_MASTER: "m" }, /REDIS_SENTINEL_MASTER needs REDIS_SENTINELS/],
    ["bad sentinel list", { REDIS_SENTINELS: "s", REDIS_SENTINEL_MASTER: "m" }, /REDIS_SENTINELS must be a comma-separated list of host:port/],
    ["timeout not a number", { REDIS_URL: "redis://h", REDIS_COMMAND_TIMEOUT_MS: "2s" }, /REDIS_COMMAND_TIMEOUT_MS must be an integer from 10 to 600000 ms, got "2s"/],
    ["timeout too small", { REDIS_COMMAND_TIMEOUT_MS: "5" }, /REDIS_COMMAND_TIMEOUT_MS must be an integer/],
    ["negative replicas", { REDIS_URL: "redis://h", REDIS_WAIT_REPLICAS: "-1" }, /REDIS_WAIT_REPLICAS must be an integer from 0 to 100/],
    ["WAIT timeout 0 (forever)", { REDIS_URL: "redis://h", REDIS_WAIT_TIMEOUT_MS: "0" }, /REDIS_WAIT_TIMEOUT_MS must be an integer from 1/],
    [
      "WAIT timeout not below the command timeout",
      { REDIS_URL: "redis://h", REDIS_WAIT_REPLICAS: "1", REDIS_COMMAND_TIMEOUT_MS: "500", REDIS_WAIT_TIMEOUT_MS: "500" },
      /REDIS_WAIT_TIMEOUT_MS \(500\) must be less than REDIS_COMMAND_TIMEOUT_MS \(500\)/,
    ],
  ];
  it.each(bad)("rejects %s", (_, env, message) => {
    let error: unknown;
    try {
      parseRedisTarget(env);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("\n");
  });

  it("describes a target without its secrets", () => {
    expect(describeRedisTarget(parseRedisTarget({ REDIS_URL: "rediss://user:secret@h:6380" }))).toBe("redis rediss://h:6380");
    expect(describeRedisTarget(parseRedisTarget({ REDIS_CLUSTER_NODES: "a:1,[::1]:2", REDIS_PASSWORD: "secret" }))).toBe("redis cluster a:1,[::1]:2");
    expect(describeRedisTarget(parseRedisTarget({ REDIS_SENTINELS: "s:1", REDIS_SENTINEL_MASTER: "m", REDIS_TLS: "true" }))).toBe(
      "redis sentinel m@s:1 (tls)",
    );
  });
});

describe("callWithin", () => {
  it("passes values and errors through", async () => {
    await expect(callWithin(1000, async () => 42)).resolves.toBe(42);
    await expect(callWithin(1000, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    await expect(
      callWithin(1000, () => {
        throw new Error("sync");
      }),
    ).rejects.toThrow("sync");
  });

  it("rejects at the deadline and swallows the late outcome; callRedis makes it StoreUnavailable", async () => {
    let settleLate!: (fail: boolean) => void;
    const late = new Promise<string>((resolve, reject) => {
      settleLate = (fail) => (fail ? reject(new Error("late")) : resolve("late"));
    });
    const started = Date.now();
    const error = await callWithin(50, () => late).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CommandDeadlineError);
    expect((error as Error).message).toMatch(/^Command timed out/);
    expect(Date.now() - started).toBeLessThan(500);
    settleLate(true); // handled: no unhandledRejection
    await expect(callRedis(() => callWithin(10, () => new Promise(() => {})))).rejects.toBeInstanceOf(StoreUnavailable);
    const within = withDeadline(20);
    await expect(within(() => new Promise(() => {}))).rejects.toBeInstanceOf(CommandDeadlineError);
    expect(() => withDeadline(0)).toThrow(RangeError);
  });
});
