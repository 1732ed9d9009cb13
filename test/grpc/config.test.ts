/**
 * loadConfig(env): defaults, and a ConfigError naming the variable for every
 * value it cannot use. (Running the built entry point is covered elsewhere.)
 */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

describe("loadConfig defaults", () => {
  it("listens on 0.0.0.0:50051 with the memory store when nothing is set", () => {
    const config = loadConfig({});

    expect(config).toMatchObject({ host: "0.0.0.0", port: 50051, redisUrl: undefined, logLevel: "info" });
  });

  it("treats empty variables as unset", () => {
    const config = loadConfig({ HOST: "", PORT: "", REDIS_URL: "", LOG_LEVEL: "" });

    expect(config).toMatchObject({ host: "0.0.0.0", port: 50051, redisUrl: undefined, logLevel: "info" });
  });

  it("reads only the env it is given, not process.env", () => {
    const saved = process.env.PORT;
    process.env.PORT = "not-a-port";
    try {
      expect(loadConfig({}).port).toBe(50051);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });
});

describe("loadConfig accepts", () => {
  it.each(["0", "1", "8080", "65535"])("PORT=%s", (PORT) => {
    expect(loadConfig({ PORT }).port).toBe(Number(PORT));
  });

  it.each(["redis://127.0.0.1:6380", "rediss://user:secret@redis.example:6380/2", "redis://redis"])("REDIS_URL=%s", (REDIS_URL) => {
    expect(loadConfig({ REDIS_URL }).redisUrl).toBe(REDIS_URL);
  });

  it.each(["fatal", "error", "warn", "info", "debug", "trace", "silent"])("LOG_LEVEL=%s", (LOG_LEVEL) => {
    expect(loadConfig({ LOG_LEVEL }).logLevel).toBe(LOG_LEVEL);
  });

  it("HOST as given", () => {
    expect(loadConfig({ HOST: "127.0.0.1" }).host).toBe("127.0.0.1");
  });
});

describe("loadConfig rejects with a ConfigError naming the variable", () => {
  it.each([
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["PORT", "http"],
    ["PORT", " 80"],
    ["PORT", "1e3"],
    ["PORT", "0x50"],
    ["PORT", "99999999999999999999"],
    ["REDIS_URL", "localhost:6379"],
    ["REDIS_URL", "http://localhost:6379"],
    ["REDIS_URL", "not a url"],
    ["REDIS_URL", "127.0.0.1:6379"],
    ["LOG_LEVEL", "verbose"],
    ["LOG_LEVEL", "warning"],
    ["LOG_LEVEL", "INFO"],
  ])("%s=%j", (name, value) => {
    const load = () => loadConfig({ [name]: value });

    expect(load).toThrow(ConfigError);
    expect(load).toThrow(name);
  });

  it("does not echo a REDIS_URL it cannot parse (it may hold a password)", () => {
    expect(() => loadConfig({ REDIS_URL: "redis://:s3cret@[bad" })).toThrow(ConfigError);
    expect(() => loadConfig({ REDIS_URL: "redis://:s3cret@[bad" })).not.toThrow("s3cret");
  });
});
