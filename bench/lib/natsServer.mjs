/**
 * A private nats-server with JetStream for the benchmark's NATS peer: loopback,
 * a free client port and a free monitoring port, its JetStream store in a
 * temporary directory (removed on stop), killed when this process exits.
 * Never the nats-server on 4222.
 */
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./redisServer.mjs";

/** The nats-server binary's version ("2.9.10"), or undefined when it is not on PATH. */
export function natsServerVersion(binary = "nats-server") {
  try {
    const out = execFileSync(binary, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5_000 });
    return out.match(/v?(\d+\.\d+\.\d+\S*)/)?.[1] ?? out.trim();
  } catch {
    return undefined;
  }
}

async function httpJson(url, timeoutMs = 1_000) {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

/** Resident set size of a process in bytes (Linux /proc), NaN elsewhere. */
export function rssBytes(pid) {
  try {
    const kb = readFileSync(`/proc/${pid}/status`, "latin1").match(/^VmRSS:\s+(\d+)\s+kB/m)?.[1];
    return kb ? Number(kb) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** CPU time (user + system) of a process, in microseconds (Linux /proc), NaN elsewhere. */
export function cpuMicrosOf(pid) {
  try {
    // pid (comm) state ppid ... utime(14) stime(15), in USER_HZ ticks; comm may hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) / 100) * 1e6;
  } catch {
    return Number.NaN;
  }
}

/**
 * Starts nats-server and resolves once its monitoring endpoint answers
 * /healthz (JetStream included) within `readyTimeoutMs`.
 */
export async function startNats({ binary = "nats-server", readyTimeoutMs = 10_000 } = {}) {
  const [port, monitorPort] = await Promise.all([freePort(), freePort()]);
  if (port === 4222 || monitorPort === 4222) throw new Error("refusing port 4222");
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-nats-"));
  const child = spawn(binary, ["-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort), "-js", "-sd", dir], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d.toString("utf8")).slice(-4_000);
  });
  let exited = false;
  const exitedPromise = new Promise((resolve) => child.once("exit", () => { exited = true; resolve(); }));
  let spawnError;
  // ENOENT etc.: 'exit' may not follow, so the readiness loop stops on this too.
  child.once("error", (error) => {
    spawnError = error;
    exited = true;
  });
  const killNow = () => {
    if (!exited && child.pid) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", killNow);
  const monitor = `http://127.0.0.1:${monitorPort}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    try {
      const health = await httpJson(`${monitor}/healthz`, 500);
      if (health.status === "ok") break;
    } catch {
      // not listening yet
    }
    if (exited || Date.now() > deadline) {
      killNow();
      process.off("exit", killNow);
      if (spawnError) throw new Error(`nats-server could not start: ${spawnError.message}`);
      throw new Error(`nats-server did not become healthy on port ${port} within ${readyTimeoutMs} ms${stderr ? `: ${stderr.trim().split("\n").slice(-3).join(" / ")}` : ""}`);
    }
    await sleep(50);
  }
  return {
    port,
    monitorPort,
    pid: child.pid,
    url: `nats://127.0.0.1:${port}`,
    dir,
    /** The monitoring endpoint's /varz (mem is the server's RSS, cpu its %). */
    varz: () => httpJson(`${monitor}/varz`),
    /** Resident memory in bytes: /proc/<pid>/status VmRSS, else /varz mem. */
    async rss() {
      const rss = rssBytes(child.pid);
      return Number.isFinite(rss) ? rss : (await this.varz()).mem;
    },
    /** CPU microseconds used so far (user + system), like process.cpuUsage() summed. */
    cpuMicros: () => cpuMicrosOf(child.pid),
    async stop() {
      if (!exited) child.kill("SIGTERM");
      await Promise.race([exitedPromise, sleep(3_000)]);
      killNow();
      process.off("exit", killNow);
    },
  };
}
