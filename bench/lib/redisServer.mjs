/**
 * A private redis-server for the benchmark: loopback, a free port, no
 * persistence, killed when this process exits. Never the Redis on 6379.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
    sock.on("error", () => done(false));
  });
}

/**
 * `port` (default a free one), `args` more redis-server arguments (the cluster
 * nodes of bench/lib/redisCluster.mjs), `dirPrefix` its temporary --dir.
 */
export async function startRedis({ port: fixedPort, args = [], dirPrefix = "bench-redis-" } = {}) {
  const port = fixedPort ?? (await freePort());
  if (port === 6379) throw new Error("refusing port 6379");
  const dir = mkdtempSync(path.join(os.tmpdir(), dirPrefix));
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", "--loglevel", "warning", ...args],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  let exited = false;
  const exitedPromise = new Promise((resolve) => child.once("exit", () => { exited = true; resolve(); }));
  const killNow = () => {
    if (!exited) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killNow);
  const deadline = Date.now() + 10_000;
  while (!(await ping(port))) {
    if (exited || Date.now() > deadline) {
      killNow();
      throw new Error(`redis-server did not start on port ${port}`);
    }
    await sleep(50);
  }
  return {
    port,
    pid: child.pid,
    dir,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (!exited) child.kill("SIGTERM");
      await Promise.race([exitedPromise, sleep(3_000)]);
      killNow();
      process.off("exit", killNow);
    },
  };
}
