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
 *   SIGTERM/SIGINT/SIGHUP (which is how vitest stops its fork workers).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
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

const liveChildren = new Set<ChildProcess>();
const createdDirs = new Set<string>();
let cleanupInstalled = false;

function cleanupSync(): void {
  for (const child of liveChildren) {
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

class StartError extends Error {
  readonly addressInUse: boolean;
  constructor(message: string, addressInUse: boolean) {
    super(message);
    this.addressInUse = addressInUse;
  }
}

interface Running {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Spawn redis-server on `port` and wait until it answers PING. */
async function spawnAndWait(
  port: number,
  dir: string,
  appendonly: boolean,
  timeoutMs: number,
): Promise<Running> {
  const args = [
    "--port", String(port),
    "--bind", HOST,
    "--save", "",
    "--appendonly", appendonly ? "yes" : "no",
    "--dir", dir,
    "--daemonize", "no",
    "--protected-mode", "no",
    "--loglevel", "warning",
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
      liveChildren.delete(child);
      resolve();
    });
  });
  liveChildren.add(child);
  installCleanup();

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError || exited) {
      liveChildren.delete(child);
      if (spawnError && (spawnError as NodeJS.ErrnoException).code === "ENOENT") {
        throw new StartError(`redis-server not found on PATH (${REDIS_BIN})`, false);
      }
      await exitedP.catch(() => undefined);
      const inUse = /address already in use/i.test(output);
      throw new StartError(
        `redis-server on port ${port} exited during startup ` +
          `(code=${child.exitCode}, signal=${child.signalCode}): ${spawnError?.message ?? ""}\n${output.trim()}`,
        inUse,
      );
    }
    if ((await readyServerPid(port, 500)) === child.pid) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await exitedP;
      throw new StartError(
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
  return { child, exited: exitedP };
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

export async function startRedisServer(opts: RedisServerOptions = {}): Promise<RedisServerHandle> {
  const appendonly = opts.appendonly ?? false;
  const timeoutMs = opts.startTimeoutMs ?? 15_000;

  let dir = opts.dir;
  if (!dir) {
    dir = await mkdtemp(path.join(os.tmpdir(), "redis-test-"));
    createdDirs.add(dir);
    installCleanup();
  }

  // First start: pick a free port, retry with a new one on a bind clash.
  let running: Running | undefined;
  let port = 0;
  const maxAttempts = opts.port ? 1 : 5;
  for (let attempt = 1; ; attempt++) {
    port = opts.port ?? (await findFreePort());
    try {
      running = await spawnAndWait(port, dir, appendonly, timeoutMs);
      break;
    } catch (err) {
      if (err instanceof StartError && err.addressInUse && attempt < maxAttempts) continue;
      throw err;
    }
  }

  const serverDir = dir;
  let current: Running | undefined = running;

  const terminate = async (signal: NodeJS.Signals) => {
    const r = current;
    current = undefined;
    if (!r) return;
    const done = waitForExit(r.child);
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill(signal);
    await done;
    await r.exited;
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
          current = await spawnAndWait(port, serverDir, appendonly, timeoutMs);
          return;
        } catch (err) {
          if (err instanceof StartError && err.addressInUse && Date.now() < deadline) {
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
