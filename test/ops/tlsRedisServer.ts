/**
 * A private `redis-server` that speaks TLS only (`--port 0`, a free
 * `--tls-port`) and requires a password, for the rediss:// tests.
 * test/support/redisServer.ts starts plaintext servers only.
 *
 *   const redis = await startTlsRedisServer({ certFile, keyFile, caFile, ca });
 *   const admin = redis.admin();       // ioredis over TLS, with the password
 *   await redis.stop();
 *
 * Ready means: a TLS connection that trusts `ca` (servername localhost) and
 * sends the password gets PONG, from this child (INFO process_id), polled
 * with a deadline. The child is SIGKILLed if this process exits first.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { findFreePort } from "../support/redisServer.js";

export interface TlsRedisServer {
  readonly tlsPort: number;
  readonly password: string;
  /** A new connection over TLS with the password (the caller quits it). */
  admin(): Redis;
  /** SIGTERM, wait for the exit, remove the data dir. Idempotent. */
  stop(): Promise<void>;
}

export interface TlsRedisOptions {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** The CA's PEM, trusted by the readiness probe and admin(). */
  readonly ca: Buffer;
  readonly startTimeoutMs?: number;
}

const HOST = "127.0.0.1";
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

function connect(port: number, password: string, ca: Buffer, timeoutMs = 2_000): Redis {
  const redis = new Redis({
    host: HOST,
    port,
    password,
    tls: { ca, servername: "localhost" },
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  // Failures reach the caller through the rejected promises.
  redis.on("error", () => {});
  return redis;
}

/** The process_id of the TLS server answering on `port`, or undefined if it does not answer (yet). */
async function answeringPid(port: number, password: string, ca: Buffer): Promise<number | undefined> {
  const redis = connect(port, password, ca, 500);
  try {
    await redis.connect();
    if ((await redis.ping()) !== "PONG") return undefined;
    const pid = /\r\nprocess_id:(\d+)\r\n/.exec(await redis.info("server"))?.[1];
    return pid === undefined ? undefined : Number(pid);
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

async function spawnOnce(options: TlsRedisOptions, dir: string, tlsPort: number, password: string): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    [
      "--port", "0",
      "--tls-port", String(tlsPort),
      "--tls-cert-file", options.certFile,
      "--tls-key-file", options.keyFile,
      "--tls-ca-cert-file", options.caFile,
      "--tls-auth-clients", "no",
      "--requirepass", password,
      "--save", "",
      "--appendonly", "no",
      "--bind", HOST,
      "--dir", dir,
      "--daemonize", "no",
      "--loglevel", "warning",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  live.add(child);
  let output = "";
  const collect = (data: Buffer) => {
    output = (output + data.toString()).slice(-4_000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  let failure: Error | undefined;
  child.once("error", (error) => (failure = error));
  child.once("exit", () => live.delete(child));

  const timeoutMs = options.startTimeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (failure || child.exitCode !== null || child.signalCode !== null) {
      throw Object.assign(new Error(`redis-server (TLS port ${tlsPort}) did not start: ${failure?.message ?? ""}\n${output.trim()}`), {
        addressInUse: /address already in use/i.test(output),
      });
    }
    if ((await answeringPid(tlsPort, password, options.ca)) === child.pid) return child;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server (TLS port ${tlsPort}) did not answer over TLS within ${timeoutMs} ms\n${output.trim()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function startTlsRedisServer(options: TlsRedisOptions): Promise<TlsRedisServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "redis-tls-test-"));
  const password = randomBytes(16).toString("hex");
  let child: ChildProcess | undefined;
  let tlsPort = 0;
  try {
    // The free port can be taken before redis binds it: try another.
    for (let attempt = 1; !child; attempt++) {
      tlsPort = await findFreePort();
      try {
        child = await spawnOnce(options, dir, tlsPort, password);
      } catch (error) {
        if (!(error as { addressInUse?: boolean }).addressInUse || attempt >= 3) throw error;
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const running = child;
  let stopped: Promise<void> | undefined;
  return {
    tlsPort,
    password,
    admin: () => connect(tlsPort, password, options.ca),
    stop() {
      stopped ??= (async () => {
        if (running.exitCode === null && running.signalCode === null) {
          const exited = new Promise((resolve) => running.once("exit", resolve));
          running.kill("SIGTERM");
          const stubborn = setTimeout(() => running.kill("SIGKILL"), 5_000);
          await exited;
          clearTimeout(stubborn);
        }
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
