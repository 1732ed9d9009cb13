import { Cluster, Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, within } from "./async.js";
import { keySlot, parseClusterNodes, startRedisCluster, type RedisClusterHandle } from "./redisCluster.js";
import { startRedisSentinel, type RedisSentinelHandle } from "./redisSentinel.js";
import { pingOnce, redisCommand, redisPipeline, RespError } from "./redisServer.js";

const timings: string[] = [];
async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const out = await f();
  timings.push(`${label}: ${Date.now() - t0} ms`);
  return out;
}

afterAll(() => {
  console.log(`[redis cluster/sentinel timings] ${timings.join("; ")}`);
});

describe("keySlot", () => {
  it("matches known CRC16 values", () => {
    expect(keySlot("123456789")).toBe(0x31c3 % 16384); // the CRC16/XMODEM check value
    expect(keySlot("foo")).toBe(12182);
    expect(keySlot("{user1000}.following")).toBe(keySlot("user1000"));
    expect(keySlot("foo{{bar}}zap")).toBe(keySlot("{bar"));
    expect(keySlot("foo{bar}{zap}")).toBe(keySlot("bar"));
  });
});

describe("startRedisCluster", () => {
  let cluster: RedisClusterHandle;
  let client: Cluster | undefined;

  beforeAll(async () => {
    cluster = await timed("cluster start (3+3)", () => startRedisCluster());
  });

  afterAll(async () => {
    client?.disconnect();
    await cluster?.stopAll();
  });

  it("forms 3 primaries with 3 linked replicas covering all slots", async () => {
    const nodes = cluster.nodes;
    expect(nodes).toHaveLength(6);
    const primaries = cluster.primaries();
    const replicas = cluster.replicas();
    expect(primaries).toHaveLength(3);
    expect(replicas).toHaveLength(3);
    expect(primaries.flatMap((p) => p.slots).reduce((n, [a, b]) => n + b - a + 1, 0)).toBe(16384);
    // one replica per primary
    expect(new Set(replicas.map((r) => r.primaryId))).toEqual(new Set(primaries.map((p) => p.id)));
    for (const n of nodes) {
      expect(n.id).toMatch(/^[0-9a-f]{40}$/);
      expect(n.pid).toBeGreaterThan(0);
      expect(n.port).not.toBe(6379);
    }
    expect(cluster.seeds).toBe(nodes.map((n) => `127.0.0.1:${n.port}`).join(","));
    for (const n of nodes) {
      const info = String(await redisCommand(n.port, ["CLUSTER", "INFO"]));
      expect(info).toContain("cluster_state:ok");
      expect(info).toContain("cluster_known_nodes:6");
    }
  });

  it("keySlot() and primaryForKey() agree with CLUSTER KEYSLOT / the slot owner", async () => {
    const keys = [
      "foo", "bar", "", "a", "{", "}", "{}", "{}x", "x{}", "a{b", "a}b{c", "{a}", "x{a}y", "{a}{b}", "foo{}{bar}",
      "foo{{bar}}zap", "foo{bar}{zap}", "{user1000}.following", "{user1000}.followers", "delivery:{42}:events",
      "ключ", "{ключ}:1", "emoji-🚚", "tab\tkey", ...Array.from({ length: 200 }, (_, i) => `k:${i}:${(i * 7919).toString(36)}`),
    ];
    const port = cluster.ports[0] as number;
    const replies = await redisPipeline(port, keys.map((k) => ["CLUSTER", "KEYSLOT", k]));
    expect(replies).toEqual(keys.map((k) => keySlot(k)));
    expect(keySlot(Buffer.from("{user1000}.x"))).toBe(replies[keys.indexOf("{user1000}.following")]);

    const owners = parseClusterNodes(String(await redisCommand(port, ["CLUSTER", "NODES"])));
    for (const k of keys.slice(0, 30)) {
      const slot = keySlot(k);
      const owner = owners.find((e) => e.flags.has("master") && e.slots.some(([a, b]) => slot >= a && slot <= b));
      expect(cluster.primaryForKey(k).id).toBe(owner?.id);
    }
  });

  it("serves an ioredis Cluster client across slots, and survives a killed primary", async () => {
    const [first] = cluster.nodes;
    client = new Cluster([{ host: "127.0.0.1", port: first!.port }], {
      clusterRetryStrategy: (times) => Math.min(100 * times, 500),
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      slotsRefreshTimeout: 1000,
      redisOptions: { connectTimeout: 1000 },
    });
    client.on("error", () => undefined); // connection errors to the killed node
    const keys = Array.from({ length: 300 }, (_, i) => `order:${i}`);
    await Promise.all(keys.map((k) => client!.set(k, `v-${k}`)));
    const slots = new Set(keys.map(keySlot));
    expect(slots.size).toBeGreaterThan(250);
    expect(new Set(keys.map((k) => cluster.primaryForKey(k).port)).size).toBe(3);
    expect(await client.get("order:7")).toBe("v-order:7");

    const victim = cluster.primaryForKey("order:0");
    const replicaOfVictim = cluster.replicas().find((r) => r.primaryId === victim.id)!;
    await cluster.waitReplicated();
    await cluster.kill(victim.port);
    expect(await pingOnce(victim.port)).toBe(false);
    const { newPrimary, elapsedMs } = await cluster.waitForFailover(victim.port);
    timings.push(`cluster failover after SIGKILL: ${elapsedMs} ms`);
    expect(newPrimary.port).toBe(replicaOfVictim.port);
    expect(cluster.primaryForKey("order:0").port).toBe(newPrimary.port);
    expect(cluster.node(victim.port).state).toBe("stopped");
    expect(cluster.node(victim.port).pid).toBeUndefined();

    // Every key still readable (the client finds the new owner through MOVED / slot refresh).
    const values = await within(
      eventually(async () => {
        const got = await Promise.all(keys.map((k) => client!.get(k)));
        expect(got).toEqual(keys.map((k) => `v-${k}`));
        return got;
      }, { timeoutMs: 10_000, intervalMs: 200 }),
      "reads after failover",
      15_000,
    );
    expect(values).toHaveLength(300);
    await client.set("order:0", "after-failover");
    expect(await redisCommand(newPrimary.port, ["GET", "order:0"])).toBe("after-failover");
  });

  it("restart() brings the killed primary back as a replica of its successor", async () => {
    const old = cluster.nodes.find((n) => n.state === "stopped")!;
    await timed("cluster restart of killed node", () => cluster.restart(old.port));
    const back = cluster.node(old.port);
    expect(back.state).toBe("running");
    expect(back.role).toBe("replica");
    expect(back.id).toBe(old.id); // same nodes.conf
    expect(back.primaryPort).toBe(cluster.primaryForKey("order:0").port);
    expect(cluster.primaries()).toHaveLength(3);
  });

  it("migrateSlot() moves a slot and its keys to another primary", async () => {
    const key = "migrate:{slot-test}";
    await client!.set(key, "moving");
    const slot = keySlot(key);
    const from = cluster.primaryForSlot(slot);
    const to = cluster.primaries().find((p) => p.port !== from.port)!;
    const { keysMoved, fromPort } = await timed("migrateSlot", () => cluster.migrateSlot(slot, to.port));
    expect(fromPort).toBe(from.port);
    expect(keysMoved).toBe(1);
    expect(cluster.primaryForSlot(slot).port).toBe(to.port);
    expect(await redisCommand(to.port, ["GET", key])).toBe("moving");
    const moved = await redisCommand(from.port, ["GET", key]).catch((e: unknown) => e);
    expect(moved).toBeInstanceOf(RespError);
    expect(String((moved as Error).message)).toBe(`MOVED ${slot} 127.0.0.1:${to.port}`);
    expect(await client!.get(key)).toBe("moving");
    // the slot is still served by exactly one primary in every view
    for (const n of cluster.nodes.filter((x) => x.state === "running")) {
      const entries = parseClusterNodes(String(await redisCommand(n.port, ["CLUSTER", "NODES"])));
      const owners = entries.filter((e) => e.slots.some(([a, b]) => slot >= a && slot <= b));
      expect(owners.map((e) => e.port)).toEqual([to.port]);
    }
  });

  it("pause() of a primary fails it over; resume() lets it rejoin as a replica", async () => {
    const victim = cluster.primaryForKey("order:1");
    await cluster.waitReplicated();
    await cluster.pause(victim.port);
    expect(cluster.node(victim.port).state).toBe("paused");
    const { newPrimary, elapsedMs } = await cluster.waitForFailover(victim.port);
    timings.push(`cluster failover after SIGSTOP: ${elapsedMs} ms`);
    expect(newPrimary.port).not.toBe(victim.port);
    await cluster.resume(victim.port);
    await timed("cluster rejoin after SIGCONT", () => cluster.waitHealthy());
    expect(cluster.node(victim.port).role).toBe("replica");
    expect(await within(eventually(async () => {
      expect(await client!.get("order:1")).toBe("v-order:1");
      return true;
    }), "read after pause failover")).toBe(true);
  });
});

describe("startRedisSentinel", () => {
  let sentinel: RedisSentinelHandle;
  let client: Redis | undefined;

  beforeAll(async () => {
    sentinel = await timed("sentinel start (1+1+3)", () => startRedisSentinel());
  });

  afterAll(async () => {
    client?.disconnect();
    await sentinel?.stopAll();
  });

  it("fails over to the replica when the primary is killed; a sentinel client follows", async () => {
    expect(sentinel.sentinels.split(",")).toHaveLength(3);
    expect(sentinel.sentinels).toBe(sentinel.sentinelPorts.map((p) => `127.0.0.1:${p}`).join(","));
    const old = await sentinel.primaryPort();
    expect(old).toBe(sentinel.initialPrimaryPort);
    const replicaPort = sentinel.dataPorts.find((p) => p !== old)!;

    client = new Redis({
      sentinels: sentinel.sentinels.split(",").map((hp) => {
        const [host, port] = hp.split(":");
        return { host: host!, port: Number(port) };
      }),
      name: sentinel.masterName,
      connectTimeout: 1000,
      sentinelRetryStrategy: () => 100,
      retryStrategy: () => 100,
    });
    client.on("error", () => undefined); // reconnect noise while the primary is down
    await client.set("before", "1");
    expect(await client.call("WAIT", "1", "2000")).toBe(1);

    await sentinel.kill(old);
    expect(sentinel.state(old)).toBe("stopped");
    const { newPrimaryPort, elapsedMs } = await sentinel.waitForFailover(old);
    timings.push(`sentinel failover after SIGKILL: ${elapsedMs} ms`);
    expect(newPrimaryPort).toBe(replicaPort);
    expect(await sentinel.primaryPort()).toBe(replicaPort);

    await within(
      eventually(async () => {
        await client!.set("after", "2");
      }, { timeoutMs: 10_000, intervalMs: 100 }),
      "a write through the sentinel client after failover",
      15_000,
    );
    expect(await redisCommand(replicaPort, ["GET", "after"])).toBe("2");
    expect(await redisCommand(replicaPort, ["GET", "before"])).toBe("1");
    expect(await client.get("before")).toBe("1");
  });

  it("a restarted sentinel reloads its rewritten config and reports the new primary", async () => {
    const current = await sentinel.primaryPort();
    expect(current).not.toBe(sentinel.initialPrimaryPort);
    const s0 = sentinel.sentinelPorts[0]!;
    await sentinel.kill(s0);
    await timed("sentinel process restart", () => sentinel.restart(s0));
    expect(sentinel.state(s0)).toBe("running");
    const addr = (await redisCommand(s0, ["SENTINEL", "get-master-addr-by-name", sentinel.masterName])) as string[];
    expect(addr).toEqual(["127.0.0.1", String(current)]);
  });
});
