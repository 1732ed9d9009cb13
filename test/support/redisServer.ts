/**
 * Start a private `redis-server` (the binary on PATH) for tests.
 *
 * Used as the last-resort source of the shared test Redis (see globalSetup.ts)
 * and directly by tests that need to own a Redis (restart, kill, health).
 *
 * - binds 127.0.0.1 on a free port (found by listening on port 0), retrying
 *   with another port if the chosen one is taken before redis binds it;
 * - `--save ""` (no RDB snapshots), `--appendonly yes|no`, `--daemonize no`,
 *   `--dir` a fresh temp dir (unless given);
 * - resolves once the server answers PING (polled with a deadline);
 * - children never outlive this process: they are SIGKILLed on 'exit' and on
 *   SIGTERM/SIGINT/SIGHUP (which is how vitest stops its fork workers), and a
 *   small watchdog (`sh`, one per process, started with the first child)
 *   SIGKILLs those still alive and removes the temp dirs if this process dies
 *   without running its handlers (SIGKILL, crash).
 *
 * Lower-level pieces for other launchers (redisCluster.ts, redisSentinel.ts):
 * `spawnRedis` (one redis-server / sentinel process with extra arguments or a
 * config file, same readiness check and cleanup), `makeTempDir` /
 * `removeTempDir` (temp dirs in the same cleanup), and `redisCommand` /
 * `redisPipeline` (a raw RESP client: one short-lived socket per call, so no
 * connection is left open to keep the process alive).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface RedisServerOptions {
  /** Enable AOF persistence (data survives restart()). Default false. */
  appendonly?: boolean;
  /** Working dir for AOF files. Default: a new temp dir (removed at process exit). */
  dir?: string;
  /** Fixed port. Default: a free port chosen at start. */
  port?: number;
  /** How long to wait for PING after spawning. Default 15000 ms. */
  startTimeoutMs?: number;
}

export interface RedisServerHandle {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The --dir the server runs in (AOF lives here). */
  dir: string;
  /** SIGTERM and wait for the process to exit. No-op if not running. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the process to exit. No-op if not running. */
  kill(): Promise<void>;
  /** stop(), then start again on the same port and dir; resolves once it answers PING. */
  restart(): Promise<void>;
}

const HOST = "127.0.0.1";
const REDIS_BIN = process.env.REDIS_SERVER_BIN ?? "redis-server";

// ---------------------------------------------------------------------------
// Process-wide cleanup: kill every live child, remove temp dirs we created.
// ---------------------------------------------------------------------------

/** Live children and the port each one listens on (for the watchdog's check). */
const liveChildren = new Map<ChildProcess, number>();
const createdDirs = new Set<string>();
let cleanupInstalled = false;

function cleanupSync(): void {
  for (const child of liveChildren.keys()) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  liveChildren.clear();
  for (const dir of createdDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
  createdDirs.clear();
  syncWatchdog();
}

function onSignal(signal: NodeJS.Signals): void {
  cleanupSync();
  uninstallSignalHandlers();
  // If nobody else handles this signal, restore the default behaviour
  // (terminate) by re-raising it now that our listener is gone.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

const SIGNALS: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGHUP"];
const signalHandlers = new Map<NodeJS.Signals, () => void>();

function uninstallSignalHandlers(): void {
  for (const [sig, fn] of signalHandlers) process.off(sig, fn);
  signalHandlers.clear();
}

function installCleanup(): void {
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    process.on("exit", cleanupSync);
  }
  if (signalHandlers.size === 0) {
    for (const sig of SIGNALS) {
      const fn = () => onSignal(sig);
      signalHandlers.set(sig, fn);
      process.on(sig, fn);
    }
  }
  startWatchdog();
}

// ---------------------------------------------------------------------------
// Watchdog: covers the case the handlers above cannot (this process SIGKILLed
// or crashing hard). A detached `sh` holds the read end of a pipe whose write
// end only this process has (libuv opens pipes close-on-exec, so redis
// children do not inherit it). When this process dies the pipe hits EOF and
// the watchdog SIGKILLs every pid listed in its `children` file whose command
// line still names the listed port (guards against pid reuse), removes the
// dirs listed in `dirs`, then its own dir. On a normal exit cleanupSync()
// empties both files first, so the watchdog has nothing left to do.
// ---------------------------------------------------------------------------

const WATCHDOG_SCRIPT = `
cat >/dev/null 2>&1
if [ -f "$1/children" ]; then
  while read -r pid port; do
    [ -n "$pid" ] || continue
    if [ -r "/proc/$pid/cmdline" ]; then
      cmd=$(tr '\\000' ' ' < "/proc/$pid/cmdline" 2>/dev/null)
      case "$cmd" in
        *":$port"*|*" $port "*|*" $port") kill -9 "$pid" 2>/dev/null ;;
      esac
    elif [ ! -d /proc/self ]; then
      kill -9 "$pid" 2>/dev/null
    fi
  done < "$1/children"
fi
if [ -f "$1/dirs" ]; then
  while IFS= read -r d; do
    [ -n "$d" ] && rm -rf -- "$d"
  done < "$1/dirs"
fi
rm -rf -- "$1"
`;

let watchdogDir: string | undefined;

function startWatchdog(): void {
  if (watchdogDir !== undefined || process.platform === "win32") return;
  try {
    const dir = mkdtempSync(path.join(os.tmpdir(), "redis-test-watchdog-"));
    writeFileSync(path.join(dir, "children"), "");
    writeFileSync(path.join(dir, "dirs"), "");
    const wd = spawn("/bin/sh", ["-c", WATCHDOG_SCRIPT, "redis-test-watchdog", dir], {
      stdio: ["pipe", "ignore", "ignore"],
      detached: true,
    });
    wd.on("error", () => undefined); // no sh: live without the watchdog
    wd.stdin?.on("error", () => undefined);
    wd.unref();
    (wd.stdin as unknown as net.Socket | null)?.unref?.();
    watchdogDir = dir;
    syncWatchdog();
  } catch {
    // best effort: the exit/signal handlers still apply
  }
}

/** Rewrite the watchdog's lists from liveChildren / createdDirs. */
function syncWatchdog(): void {
  if (watchdogDir === undefined) return;
  try {
    const children = [...liveChildren].map(([c, port]) => (c.pid ? `${c.pid} ${port}\n` : "")).join("");
    writeFileSync(path.join(watchdogDir, "children"), children);
    writeFileSync(path.join(watchdogDir, "dirs"), [...createdDirs].map((d) => `${d}\n`).join(""));
  } catch {
    // best effort
  }
}

function trackChild(child: ChildProcess, port: number): void {
  liveChildren.set(child, port);
  installCleanup();
  syncWatchdog();
}

function untrackChild(child: ChildProcess): void {
  if (liveChildren.delete(child)) syncWatchdog();
}

/** A fresh temp dir, removed at process exit (or by the watchdog) unless removeTempDir() runs first. */
export async function makeTempDir(prefix = "redis-test-"): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  createdDirs.add(dir);
  installCleanup();
  syncWatchdog();
  return dir;
}

/** Remove a dir made by makeTempDir() now. */
export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  if (createdDirs.delete(dir)) syncWatchdog();
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Ask the OS for a free TCP port on 127.0.0.1 (listen on 0, read it, close). */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** One PING round trip over a raw socket. Resolves true on "+PONG". */
export function pingOnce(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    let buf = "";
    let done = false;
    const sock = net.connect({ host: HOST, port });
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.setNoDelay(true);
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const eol = buf.indexOf("\r\n");
      if (eol >= 0) finish(buf.slice(0, eol) === "+PONG"); // -LOADING etc. => not ready
    });
    sock.on("error", () => finish(false));
    sock.on("close", () => finish(false));
  });
}

/**
 * PING plus INFO server over one socket: resolves the server's process_id if
 * it answered +PONG (i.e. is up and done loading), else undefined. Lets startup
 * make sure the server answering is our child and not someone else on the port.
 */
function readyServerPid(port: number, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((resolve) => {
    let buf = "";
    let done = false;
    const sock = net.connect({ host: HOST, port });
    const finish = (pid: number | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    sock.setNoDelay(true);
    sock.on("connect", () => sock.write("PING\r\nINFO server\r\n"));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const eol = buf.indexOf("\r\n");
      if (eol < 0) return;
      if (buf.slice(0, eol) !== "+PONG") return finish(undefined);
      const m = /\r\nprocess_id:(\d+)\r\n/.exec(buf);
      if (m) finish(Number(m[1]));
    });
    sock.on("error", () => finish(undefined));
    sock.on("close", () => finish(undefined));
  });
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  // Keep the event loop alive while someone awaits the exit.
  child.ref();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** spawnRedis() failed; `addressInUse` says a retry on other ports may work. */
export class RedisStartError extends Error {
  readonly addressInUse: boolean;
  constructor(message: string, addressInUse: boolean) {
    super(message);
    this.name = "RedisStartError";
    this.addressInUse = addressInUse;
  }
}

export interface SpawnRedisOptions {
  /** Port to listen on (127.0.0.1). */
  port: number;
  /** --dir (working dir: AOF, nodes.conf, ...). */
  dir: string;
  /** A config file, passed as the first argument (sentinel needs one, writable). */
  configFile?: string;
  /** Run as a sentinel (`--sentinel`); then --save / --appendonly are not passed. */
  sentinel?: boolean;
  /** --appendonly yes|no (not for sentinels). Default false. */
  appendonly?: boolean;
  /** More arguments after the defaults (a later `--x` overrides an earlier one), e.g. ["--cluster-enabled", "yes"]. */
  args?: readonly string[];
  /** How long to wait for PING after spawning. Default 15000 ms. */
  timeoutMs?: number;
}

/** A running redis-server (or sentinel) child started by spawnRedis(). */
export interface RedisProcess {
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves once the process has exited and its pipes closed. */
  readonly exited: Promise<void>;
  /** True until the process has exited. */
  readonly running: boolean;
  /** The last 4000 characters of its stdout/stderr. */
  output(): string;
  /** Send `signal` (if the process has not already exited) and wait until it has exited. */
  terminate(signal: NodeJS.Signals): Promise<void>;
}

/**
 * Spawn one redis-server on `opts.port` (127.0.0.1) and wait until it answers
 * PING and INFO says it is this child. Rejects with RedisStartError (with
 * `addressInUse` if the port, or a cluster bus port, was taken). The child is
 * in the process-wide cleanup and does not keep the event loop alive.
 */
export async function spawnRedis(opts: SpawnRedisOptions): Promise<RedisProcess> {
  const { port, dir } = opts;
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const args = [
    ...(opts.configFile ? [opts.configFile] : []),
    ...(opts.sentinel ? ["--sentinel"] : []),
    "--port", String(port),
    "--bind", HOST,
    ...(opts.sentinel ? [] : ["--save", "", "--appendonly", opts.appendonly ? "yes" : "no"]),
    "--dir", dir,
    "--daemonize", "no",
    "--protected-mode", "no",
    "--loglevel", "warning",
    ...(opts.args ?? []),
  ];
  const child = spawn(REDIS_BIN, args, { stdio: ["ignore", "pipe", "pipe"] });

  // Keep the tail of the output for error messages (and keep draining the pipes).
  let output = "";
  const collect = (d: Buffer) => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);

  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
  });
  let exited = false;
  const exitedP = new Promise<void>((resolve) => {
    child.once("close", () => {
      exited = true;
      untrackChild(child);
      resolve();
    });
  });
  trackChild(child, port);

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError || exited) {
      untrackChild(child);
      if (spawnError && (spawnError as NodeJS.ErrnoException).code === "ENOENT") {
        throw new RedisStartError(`redis-server not found on PATH (${REDIS_BIN})`, false);
      }
      await exitedP.catch(() => undefined);
      const inUse = /address already in use/i.test(output);
      throw new RedisStartError(
        `redis-server on port ${port} exited during startup ` +
          `(code=${child.exitCode}, signal=${child.signalCode}): ${spawnError?.message ?? ""}\n${output.trim()}`,
        inUse,
      );
    }
    if ((await readyServerPid(port, 500)) === child.pid) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exitedP;
      throw new RedisStartError(
        `redis-server on port ${port} did not answer PING within ${timeoutMs} ms\n${output.trim()}`,
        false,
      );
    }
    await sleep(25);
  }

  // A forgotten server must not keep the process alive; the exit/signal
  // handlers kill it.
  child.unref();
  (child.stdout as net.Socket | null)?.unref?.();
  (child.stderr as net.Socket | null)?.unref?.();

  const pid = child.pid as number;
  return {
    port,
    pid,
    child,
    exited: exitedP,
    get running() {
      return !exited;
    },
    output: () => output,
    async terminate(signal: NodeJS.Signals) {
      const done = waitForExit(child);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        // A stopped (SIGSTOP) process only acts on SIGTERM once continued.
        if (signal !== "SIGKILL" && signal !== "SIGCONT") child.kill("SIGCONT");
      }
      await done;
      await exitedP;
    },
  };
}

// ---------------------------------------------------------------------------
// Raw RESP client (admin commands in test support)
// ---------------------------------------------------------------------------

/** An error reply (`-ERR ...`, `-MOVED ...`) from Redis. */
export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RespError";
  }
}

/** A RESP2 reply: simple/bulk string (Buffer with `buffers: true`), integer, nil, array, or an error reply. */
export type RespValue = string | Buffer | number | null | RespError | RespValue[];

export interface RespOptions {
  /** Socket connect + whole-exchange timeout. Default 2000 ms. */
  timeoutMs?: number;
  /** Return bulk strings as Buffers instead of UTF-8 strings. */
  buffers?: boolean;
  /** Host. Default 127.0.0.1. */
  host?: string;
}

type Parsed = { v: RespValue; p: number } | undefined;

function parseResp(buf: Buffer, pos: number, buffers: boolean): Parsed {
  if (pos >= buf.length) return undefined;
  const eol = buf.indexOf("\r\n", pos);
  if (eol < 0) return undefined;
  const line = buf.toString("utf8", pos + 1, eol);
  switch (buf[pos]) {
    case 0x2b: // +
      return { v: line, p: eol + 2 };
    case 0x2d: // -
      return { v: new RespError(line), p: eol + 2 };
    case 0x3a: // :
      return { v: Number(line), p: eol + 2 };
    case 0x24: { // $
      const n = Number(line);
      if (n < 0) return { v: null, p: eol + 2 };
      const start = eol + 2;
      if (buf.length < start + n + 2) return undefined;
      const bytes = buf.subarray(start, start + n);
      return { v: buffers ? Buffer.from(bytes) : bytes.toString("utf8"), p: start + n + 2 };
    }
    case 0x2a: { // *
      const n = Number(line);
      if (n < 0) return { v: null, p: eol + 2 };
      const arr: RespValue[] = [];
      let p = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseResp(buf, p, buffers);
        if (!r) return undefined;
        arr.push(r.v);
        p = r.p;
      }
      return { v: arr, p };
    }
    default:
      throw new Error(`bad RESP reply: ${JSON.stringify(buf.toString("latin1", pos, Math.min(buf.length, pos + 40)))}`);
  }
}

function encodeCommand(args: readonly (string | number | Buffer)[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a), "utf8");
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n"));
  }
  return Buffer.concat(parts);
}

/**
 * Send several commands over one fresh connection and resolve their replies
 * in order (error replies as RespError values, not rejections). Rejects on a
 * connection error, an early close, or the timeout; the socket is always closed.
 */
export function redisPipeline(
  port: number,
  commands: readonly (readonly (string | number | Buffer)[])[],
  opts: RespOptions = {},
): Promise<RespValue[]> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const buffers = opts.buffers ?? false;
  const host = opts.host ?? HOST;
  return new Promise((resolve, reject) => {
    const replies: RespValue[] = [];
    let buf = Buffer.alloc(0);
    let pos = 0;
    let done = false;
    const sock = net.connect({ host, port });
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(replies);
    };
    const what = () => `${commands.map((c) => String(c[0]) + (c[1] !== undefined ? ` ${String(c[1])}` : "")).join(", ")} on ${host}:${port}`;
    const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms: ${what()}`)), timeoutMs);
    sock.setNoDelay(true);
    sock.on("connect", () => sock.write(Buffer.concat(commands.map(encodeCommand))));
    sock.on("data", (d) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      try {
        for (;;) {
          const r = parseResp(buf, pos, buffers);
          if (!r) break;
          replies.push(r.v);
          pos = r.p;
          if (replies.length === commands.length) return finish();
        }
      } catch (err) {
        finish(err as Error);
      }
    });
    sock.on("error", (err) => finish(new Error(`${err.message}: ${what()}`)));
    sock.on("close", () => finish(new Error(`connection closed before all replies: ${what()}`)));
  });
}

/** One command over a fresh connection; an error reply rejects with RespError. */
export async function redisCommand(
  port: number,
  args: readonly (string | number | Buffer)[],
  opts: RespOptions = {},
): Promise<RespValue> {
  const [reply] = await redisPipeline(port, [args], opts);
  if (reply instanceof RespError) throw reply;
  return reply as RespValue;
}

/** Parse an INFO reply into field -> value (section headers and blanks skipped). */
export function parseInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\r\n")) {
    if (!line || line.startsWith("#")) continue;
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const appendonly = opts.appendonly ?? false;
  const timeoutMs = opts.startTimeoutMs ?? 15_000;

  const dir = opts.dir ?? (await makeTempDir("redis-test-"));

  // First start: pick a free port, retry with a new one on a bind clash.
  let running: RedisProcess | undefined;
  let port = 0;
  const maxAttempts = opts.port ? 1 : 5;
  for (let attempt = 1; ; attempt++) {
    port = opts.port ?? (await findFreePort());
    try {
      running = await spawnRedis({ port, dir, appendonly, timeoutMs });
      break;
    } catch (err) {
      if (err instanceof RedisStartError && err.addressInUse && attempt < maxAttempts) continue;
      throw err;
    }
  }

  const serverDir = dir;
  let current: RedisProcess | undefined = running;

  const terminate = async (signal: NodeJS.Signals) => {
    const r = current;
    current = undefined;
    if (!r) return;
    await r.terminate(signal);
  };

  const handle: RedisServerHandle = {
    url: `redis://${HOST}:${port}`,
    port,
    dir: serverDir,
    stop: () => terminate("SIGTERM"),
    kill: () => terminate("SIGKILL"),
    async restart() {
      await terminate("SIGTERM");
      // Same port: it is normally free right away (redis uses SO_REUSEADDR),
      // but retry briefly in case something grabbed it meanwhile.
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          current = await spawnRedis({ port, dir: serverDir, appendonly, timeoutMs });
          return;
        } catch (err) {
          if (err instanceof RedisStartError && err.addressInUse && Date.now() < deadline) {
            await sleep(100);
            continue;
          }
          throw err;
        }
      }
    },
  };
  return handle;
}
