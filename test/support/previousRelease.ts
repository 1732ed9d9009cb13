/**
 * The previous release (release 1, storage v1), built from git and run as a
 * real process, for migration tests that must start from what that release
 * actually wrote to Redis.
 *
 *   const dir = await buildPreviousRelease();                  // cached per commit
 *   const redis = await startRedisServer();                     // a Redis of its own
 *   const old = await startPreviousRelease({ redisUrl: redis.url });
 *   const manifest = await fillWithPreviousRelease(old.client);
 *   await old.stop();
 *   // ...migrate redis, start the new release, compare with manifest...
 *
 * - buildPreviousRelease() extracts the commit with `git archive`, runs
 *   `npm ci`, `npm run build` and `npm prune --omit=dev` in a temp dir, writes
 *   a marker file and renames the dir to
 *   ${XDG_CACHE_HOME:-~/.cache}/delivery-service/release-<sha>/ (a killed
 *   build is redone, never reused). Concurrent builders (vitest workers)
 *   share one build through a lock directory.
 * - startPreviousRelease() runs `node dist/main.js` of that build with
 *   REDIS_URL, PORT=0, HOST=127.0.0.1 and reads the port from its
 *   "delivery service listening" log line. Its client is made with
 *   @grpc/proto-loader from the OLD proto (uint64/int64 as strings, enums as
 *   names), so it does not depend on the new generated code.
 * - fillWithPreviousRelease() writes deliveries in every status through that
 *   client and returns a manifest of everything the old service answered.
 *
 * Children never outlive the test process: SIGKILLed on exit and on
 * SIGTERM/SIGINT/SIGHUP, and each exits by itself when its stdin (a pipe from
 * this process) closes, which covers a SIGKILLed test worker too.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type CallOptions,
  type Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

/** The last commit of release 1 ("README: .ci/run also runs the benchmark smoke"). */
export const PREVIOUS_RELEASE_COMMIT = "1aee976156e1b7983e61e51abd32d078bd44c51a";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const run = promisify(execFile);

const MARKER = ".previous-release-build.json";
const NPM_CI_TIMEOUT_MS = 10 * 60_000;
const NPM_BUILD_TIMEOUT_MS = 5 * 60_000;
/** How long a builder waits for another process's build of the same commit. */
const LOCK_WAIT_MS = NPM_CI_TIMEOUT_MS + NPM_BUILD_TIMEOUT_MS + 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------
// Build
// ---------------------------------------------------------------------------

export interface BuildOptions {
  /** Where release-<sha>/ directories live. Default ${XDG_CACHE_HOME:-~/.cache}/delivery-service. */
  readonly cacheRoot?: string;
  /** Progress lines (cold builds take a while). Default: console.log with a prefix. */
  readonly log?: (line: string) => void;
}

/** ${XDG_CACHE_HOME:-~/.cache}/delivery-service */
export function defaultCacheRoot(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "delivery-service");
}

async function git(repo: string, args: readonly string[]): Promise<string> {
  const { stdout } = await run("git", ["-C", repo, ...args], { maxBuffer: 16 * 1024 * 1024 });
  return stdout.trim();
}

async function repoRoot(): Promise<string> {
  try {
    return await git(HERE, ["rev-parse", "--show-toplevel"]);
  } catch (error) {
    throw new Error(
      `buildPreviousRelease needs the project's git checkout (with history) around ${HERE}: ${(error as Error).message}`,
    );
  }
}

/** The full sha of `commit`, or an error that says how to get the history. */
export async function resolvePreviousReleaseCommit(commit = PREVIOUS_RELEASE_COMMIT): Promise<string> {
  const root = await repoRoot();
  try {
    return await git(root, ["rev-parse", "--verify", "--quiet", `${commit}^{commit}`]);
  } catch {
    const shallow = await git(root, ["rev-parse", "--is-shallow-repository"]).catch(() => "unknown");
    throw new Error(
      `the previous release (commit ${commit}) is not in the git history of ${root}` +
        (shallow === "true" ? " — this is a shallow clone" : "") +
        `. Migration tests build it from git: fetch the history with \`git fetch --unshallow\`` +
        ` (or \`git fetch origin ${commit}\`), or clone without --depth.`,
    );
  }
}

interface Marker {
  readonly commit: string;
  readonly builtAt: string;
  readonly node: string;
  readonly buildMs: number;
}

function readMarker(dir: string, sha: string): Marker | undefined {
  try {
    const marker = JSON.parse(readFileSync(path.join(dir, MARKER), "utf8")) as Marker;
    if (marker.commit !== sha) return undefined;
    // The files the service needs to run, and the old proto the client is made from.
    for (const file of ["dist/main.js", "dist/store/redis/lua/appendEvent.lua", "proto/delivery/v1/delivery.proto", "node_modules"]) {
      if (!existsSync(path.join(dir, file))) return undefined;
    }
    return marker;
  } catch {
    return undefined;
  }
}

/** The environment for npm in the extracted tree: without what an outer `npm run`/`npx` set for THIS project. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_(package_|lifecycle_|command$|execpath$|node_execpath$|config_local_prefix$)/i.test(key)) continue;
    if (key === "INIT_CWD" || key === "NODE_OPTIONS" || key === "VITEST" || key.startsWith("VITEST_")) continue;
    env[key] = value;
  }
  // The npm next to the node running the tests (Node 24), not whatever is first on PATH.
  env.PATH = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ""}`;
  return env;
}

async function step(what: string, file: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<void> {
  try {
    await run(file, args, { cwd, env: npmEnv(), timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const { stdout, stderr, killed } = error as { stdout?: string; stderr?: string; killed?: boolean };
    const tail = (text: string | undefined) => (text ?? "").trim().split("\n").slice(-40).join("\n");
    throw new Error(
      `previous release build: ${what} ${killed ? `timed out after ${timeoutMs} ms` : "failed"} in ${cwd}\n` +
        `${(error as Error).message.split("\n")[0]}\n--- stdout ---\n${tail(stdout)}\n--- stderr ---\n${tail(stderr)}`,
    );
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Leftovers of builds whose process is gone (killed mid-build): release-<sha>.tmp-<pid>-<random>. */
async function removeStaleTemps(cacheRoot: string, sha: string): Promise<void> {
  const prefix = `release-${sha}.tmp-`;
  for (const name of await readdir(cacheRoot).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) {
      await rm(path.join(cacheRoot, name), { recursive: true, force: true });
    }
  }
}

/**
 * A lock directory per commit, so two test workers do not both spend minutes
 * building the same thing. Stale when its owner is dead (same host) or older
 * than any build can take.
 */
async function withBuildLock<T>(lockDir: string, body: () => Promise<T>, done: () => boolean): Promise<T | undefined> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    if (done()) return undefined;
    let stale = false;
    try {
      const owner = JSON.parse(await readFile(path.join(lockDir, "owner.json"), "utf8")) as { pid: number; host: string };
      const age = Date.now() - (await stat(lockDir)).mtimeMs;
      stale = (owner.host === os.hostname() && !pidAlive(owner.pid)) || age > LOCK_WAIT_MS;
    } catch {
      // owner.json not written yet (or the lock just went away): judge by age only.
      const age = await stat(lockDir).then((s) => Date.now() - s.mtimeMs, () => 0);
      stale = age > 30_000;
    }
    if (stale) {
      await rm(lockDir, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`previous release build: gave up waiting for the build lock ${lockDir}`);
    await sleep(250);
  }
  try {
    await writeFile(path.join(lockDir, "owner.json"), JSON.stringify({ pid: process.pid, host: os.hostname() }));
    return await body();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

const builds = new Map<string, Promise<string>>();

/**
 * Builds `commit` (default the previous release) into the cache and returns
 * the directory: <dir>/dist/main.js, <dir>/proto/, <dir>/node_modules/.
 * Reuses a complete build; throws naming `git fetch --unshallow` when the
 * commit is not in the clone.
 */
export async function buildPreviousRelease(commit = PREVIOUS_RELEASE_COMMIT, options: BuildOptions = {}): Promise<string> {
  const sha = await resolvePreviousReleaseCommit(commit);
  const cacheRoot = options.cacheRoot ?? defaultCacheRoot();
  const key = `${cacheRoot}\0${sha}`;
  let build = builds.get(key);
  if (!build) {
    build = buildInto(sha, cacheRoot, options.log ?? ((line) => console.log(`[previous release] ${line}`)));
    builds.set(key, build);
    build.catch(() => builds.delete(key));
  }
  return build;
}

async function buildInto(sha: string, cacheRoot: string, log: (line: string) => void): Promise<string> {
  const finalDir = path.join(cacheRoot, `release-${sha}`);
  if (readMarker(finalDir, sha)) return finalDir;

  await mkdir(cacheRoot, { recursive: true });
  await withBuildLock(
    path.join(cacheRoot, `release-${sha}.lock`),
    async () => {
      if (readMarker(finalDir, sha)) return; // built by another process while we waited
      await removeStaleTemps(cacheRoot, sha);
      const started = Date.now();
      const tmp = path.join(cacheRoot, `release-${sha}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
      await mkdir(tmp);
      try {
        const root = await repoRoot();
        log(`building ${sha.slice(0, 12)} into ${finalDir} (git archive, npm ci, npm run build)`);
        const tar = `${tmp}.tar`;
        try {
          await step("git archive", "git", ["-C", root, "archive", "--format=tar", `--output=${tar}`, sha], root, 120_000);
          await step("tar -x", "tar", ["-x", "-f", tar, "-C", tmp], tmp, 120_000);
        } finally {
          await rm(tar, { force: true });
        }
        // --ignore-scripts: only dev tools (buf, ssh2/cpu-features via testcontainers)
        // have install scripts; nothing the build or the service runs needs them.
        await step("npm ci", "npm", ["ci", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"], tmp, NPM_CI_TIMEOUT_MS);
        await step("npm run build", "npm", ["run", "build"], tmp, NPM_BUILD_TIMEOUT_MS);
        // Only what `node dist/main.js` needs stays in the cache: ~30 MB instead of ~250 MB.
        await step(
          "npm prune --omit=dev",
          "npm",
          ["prune", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
          tmp,
          NPM_CI_TIMEOUT_MS,
        );
        const marker: Marker = { commit: sha, builtAt: new Date().toISOString(), node: process.version, buildMs: Date.now() - started };
        // Last: a directory without the marker is never used.
        await writeFile(path.join(tmp, MARKER), `${JSON.stringify(marker, null, 2)}\n`);
        if (!readMarker(tmp, sha)) throw new Error(`previous release build in ${tmp} is missing files after npm run build`);
        // A leftover without a marker (made by hand, or a changed layout) is replaced.
        if (existsSync(finalDir)) await rm(finalDir, { recursive: true, force: true });
        await rename(tmp, finalDir);
        log(`built ${sha.slice(0, 12)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      } catch (error) {
        await rm(tmp, { recursive: true, force: true });
        throw error;
      }
    },
    () => readMarker(finalDir, sha) !== undefined,
  );
  if (!readMarker(finalDir, sha)) throw new Error(`previous release build of ${sha} did not produce ${finalDir}`);
  return finalDir;
}

// ---------------------------------------------------------------------------
// Run
// ---------------------------------------------------------------------------

/** The unary methods of release 1's DeliveryService, as proto-loader names them. */
export type PreviousReleaseMethod =
  | "createDelivery"
  | "startDelivery"
  | "pickupProducts"
  | "deliverProducts"
  | "increaseBudget"
  | "cancelDelivery"
  | "getDelivery"
  | "listDeliveries"
  | "listDeliveryEvents";

/** Plain JSON, as the old service's answers are recorded. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface PreviousReleaseOptions {
  /** The Redis the old service writes to (its own: release 1's process has no key prefix). */
  readonly redisUrl: string;
  /** Release 1 takes a prefix only in-process; anything but "" or undefined is refused. */
  readonly keyPrefix?: string;
  /** Default PREVIOUS_RELEASE_COMMIT. */
  readonly commit?: string;
  /** An already built directory (skips buildPreviousRelease). */
  readonly dir?: string;
  /** Deadline for the listening line and Redis. Default 20 s. */
  readonly startTimeoutMs?: number;
  /** More environment for the old service (e.g. MAX_WATCHERS). */
  readonly env?: Readonly<Record<string, string>>;
}

export interface PreviousRelease {
  readonly port: number;
  readonly address: string;
  /** The built release the process runs from. */
  readonly dir: string;
  /** A grpc-js client of release 1's DeliveryService, made from its proto (longs and enums as strings). */
  readonly client: Client;
  readonly child: ChildProcess;
  /** The last log lines of the process (JSON objects, or {msg: "<not JSON> ..."}), for diagnostics. */
  logs(): readonly Record<string, unknown>[];
  /** Closes the client, SIGTERMs the process and waits for it (SIGKILL after 10 s). Idempotent. */
  stop(): Promise<void>;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
const signalHooks = new Map<NodeJS.Signals, () => void>();

function killAllSync(): void {
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone already
    }
  }
  liveChildren.clear();
}

function installChildCleanup(): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", killAllSync);
  }
  if (signalHooks.size > 0) return;
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    const hook = () => {
      killAllSync();
      for (const [s, h] of signalHooks) process.off(s, h);
      signalHooks.clear();
      // Nobody else handles it: the default action (terminate), now that we are out of the way.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    signalHooks.set(signal, hook);
    process.on(signal, hook);
  }
}

/** Preloaded into the old service: exit when the test process (our stdin pipe) goes away, however it died. */
const EXIT_WITH_PARENT =
  "data:text/javascript," +
  encodeURIComponent(
    'process.stdin.on("end",()=>process.exit(0));process.stdin.on("error",()=>process.exit(0));process.stdin.resume();',
  );

const clientConstructors = new Map<string, ServiceClientConstructor>();

/** release 1's DeliveryService client class, from <dir>/proto with @grpc/proto-loader. */
export function previousReleaseClientConstructor(dir: string): ServiceClientConstructor {
  let ctor = clientConstructors.get(dir);
  if (!ctor) {
    const definition = loadSync("delivery/v1/delivery.proto", {
      includeDirs: [path.join(dir, "proto")],
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = loadPackageDefinition(definition) as unknown as { delivery: { v1: { DeliveryService: ServiceClientConstructor } } };
    ctor = pkg.delivery.v1.DeliveryService;
    clientConstructors.set(dir, ctor);
  }
  return ctor;
}

/** Runs release 1's service (`node dist/main.js`) against `redisUrl` and connects a client to it. */
export async function startPreviousRelease(options: PreviousReleaseOptions): Promise<PreviousRelease> {
  if (options.keyPrefix) {
    throw new Error(
      "startPreviousRelease: release 1's process cannot namespace its keys (keyPrefix is in-process only in that release); " +
        "give it a Redis of its own (startRedisServer()) instead of a prefix",
    );
  }
  const dir = options.dir ?? (await buildPreviousRelease(options.commit ?? PREVIOUS_RELEASE_COMMIT));
  const timeoutMs = options.startTimeoutMs ?? 20_000;
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    REDIS_URL: options.redisUrl,
    HOST: "127.0.0.1",
    PORT: "0",
    // info: the "listening" line carries the port; the lines stay in memory, not in the test output.
    LOG_LEVEL: "info",
    LOG_FORMAT: "json",
    NODE_ENV: "production",
    SHUTDOWN_GRACE_MS: "2000",
    ...options.env,
  };
  const child = spawn(process.execPath, ["--import", EXIT_WITH_PARENT, path.join(dir, "dist", "main.js")], {
    cwd: dir,
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  liveChildren.add(child);
  installChildCleanup();

  const logs: Record<string, unknown>[] = [];
  let stderr = "";
  let rest = "";
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding("utf8").on("data", (text: string) => {
    const lines = (rest + text).split("\n");
    rest = lines.pop() ?? "";
    for (const raw of lines) {
      if (raw.trim() === "") continue;
      let line: Record<string, unknown>;
      try {
        line = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        line = { msg: `<not JSON> ${raw}` };
      }
      logs.push(line);
      if (logs.length > 200) logs.splice(0, logs.length - 200);
      for (const listener of listeners) listener();
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    stderr = (stderr + text).slice(-8000);
  });
  child.stdin!.on("error", () => {}); // EPIPE once the child is gone
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once("error", (error) => {
      stderr += `\nspawn error: ${error.message}`;
      exit ??= { code: null, signal: null };
      liveChildren.delete(child);
      resolve();
    });
    child.once("close", (code, signal) => {
      exit = { code, signal };
      liveChildren.delete(child);
      for (const listener of listeners) listener();
      resolve();
    });
  });

  const describe = () =>
    `last logs: ${
      logs
        .slice(-10)
        .map((l) => `${String(l.msg)}${l.err ? ` (${String((l.err as { message?: unknown }).message)})` : ""}`)
        .join(" | ") || "(none)"
    }; ` +
    `stderr: ${stderr.trim() || "(none)"}`;

  // Listening with its port, and Redis reachable (the service starts and answers UNAVAILABLE without it).
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const check = () => {
        const listening = logs.find((l) => l.msg === "delivery service listening");
        const availability = logs.filter((l) => l.msg === "redis is reachable" || l.msg === "redis is unreachable").at(-1);
        if (listening && availability?.available === true) {
          if (typeof listening.port !== "number" || listening.port <= 0) {
            return finish(new Error(`previous release logged "listening" without a port: ${JSON.stringify(listening)}`));
          }
          return finish(listening.port);
        }
        if (exit) {
          return finish(new Error(`previous release exited during start (code ${exit.code}, signal ${exit.signal}); ${describe()}`));
        }
      };
      const timer = setTimeout(
        () => finish(new Error(`previous release did not listen with Redis reachable within ${timeoutMs} ms; ${describe()}`)),
        timeoutMs,
      );
      const finish = (result: number | Error) => {
        clearTimeout(timer);
        listeners.delete(check);
        if (result instanceof Error) reject(result);
        else resolve(result);
      };
      listeners.add(check);
      check();
    });
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    throw error;
  }

  const address = `127.0.0.1:${port}`;
  const Ctor = previousReleaseClientConstructor(dir);
  const client = new Ctor(address, credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

  let stopping: Promise<void> | undefined;
  return {
    port,
    address,
    dir,
    client,
    child,
    logs: () => [...logs],
    stop() {
      stopping ??= (async () => {
        client.close();
        if (!exit) {
          child.kill("SIGTERM");
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(true), 10_000);
          });
          if (await Promise.race([exited.then(() => false), late])) child.kill("SIGKILL");
          clearTimeout(timer);
          await exited;
        }
        liveChildren.delete(child);
      })();
      return stopping;
    },
  };
}

/**
 * One unary call of the old service, as a promise of its answer as plain JSON
 * (proto-loader objects: camelCase, int64/uint64 as strings, enums as names,
 * Timestamps as {seconds: "…", nanos: n}, `kind` naming the event's oneof).
 * Rejects with the ServiceError (match on .code).
 */
export function callPreviousRelease(
  client: Client,
  method: PreviousReleaseMethod,
  request: JsonObject,
  { deadlineMs = 10_000 }: { deadlineMs?: number } = {},
): Promise<JsonObject> {
  const fn = (client as unknown as Record<string, unknown>)[method];
  if (typeof fn !== "function") return Promise.reject(new Error(`the previous release's client has no method ${method}`));
  return new Promise((resolve, reject) => {
    (fn as (r: unknown, m: Metadata, o: CallOptions, cb: (e: ServiceError | null, r: unknown) => void) => void).call(
      client,
      request,
      new Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => (error ? reject(error) : resolve(JSON.parse(JSON.stringify(response)) as JsonObject)),
    );
  });
}

// ---------------------------------------------------------------------------
// Fill
// ---------------------------------------------------------------------------

export type CommandMethod = "createDelivery" | "startDelivery" | "pickupProducts" | "deliverProducts" | "increaseBudget" | "cancelDelivery";

export type StatusName =
  | "DELIVERY_STATUS_READY"
  | "DELIVERY_STATUS_ACTIVE"
  | "DELIVERY_STATUS_COLLECTED"
  | "DELIVERY_STATUS_COMPLETED"
  | "DELIVERY_STATUS_CANCELLED";

/** One accepted command: what was sent and what the old service answered. */
export interface ManifestStep {
  /** The version this command produced (1 = the create). */
  readonly version: number;
  readonly method: CommandMethod;
  readonly requestId: string;
  /** The request exactly as sent (resend it with callPreviousRelease to replay). */
  readonly request: JsonObject;
  /** The answer's DeliveryEvent and Delivery, as plain JSON. */
  readonly event: JsonObject;
  readonly delivery: JsonObject;
}

/** A command sent again with the request_id of an earlier one: the old service answered with the recorded step. */
export interface ManifestReplay {
  readonly deliveryId: string;
  /** The version of the step that was replayed (not necessarily the latest). */
  readonly version: number;
  readonly method: CommandMethod;
  readonly requestId: string;
  readonly request: JsonObject;
  readonly event: JsonObject;
  readonly delivery: JsonObject;
  /** The delivery's latest version when the replay was sent. */
  readonly atVersion: number;
}

export interface ManifestDelivery {
  readonly id: string;
  /** What this delivery exercises, e.g. "cancelled-from-collected". */
  readonly scenario: string;
  /** client: delivery_id given on create; server: derived by the old service from request_id. */
  readonly idChosenBy: "client" | "server";
  readonly status: StatusName;
  /** Latest version = steps.length. */
  readonly version: number;
  /** requestIds[v - 1] is the request_id of the command that made version v. */
  readonly requestIds: readonly string[];
  /** In version order, one per stored event. */
  readonly steps: readonly ManifestStep[];
  /** GetDelivery after the fill. */
  readonly final: JsonObject;
}

export interface PreviousReleaseManifest {
  /** Prefix of every client-chosen id and request_id of this fill (unique per fill). */
  readonly tag: string;
  /** In creation order. */
  readonly deliveries: readonly ManifestDelivery[];
  /** Every id ListDeliveries returned (all pages), in its order: creation order. */
  readonly listOrder: readonly string[];
  readonly replays: readonly ManifestReplay[];
}

export interface FillOptions {
  /** Prefix for ids and request ids; default a random "r1x<hex>". Ids match ^[A-Za-z0-9_-]{1,64}$ with it. */
  readonly tag?: string;
  readonly deadlineMs?: number;
}

const NOTES = {
  german: "Bitte beim Nachbarn abgeben – Hausnummer 12ä, 3. Stock (Grüße!)",
  emoji: "Blumen 🌷🌻 für Oma 👵 — fragile ⚠️",
  cjk: "請在下午送達。玄関前に置いてください。",
  rtl: "الرجاء الاتصال قبل الوصول",
  mixed: "Crème brûlée ×3, naïve café — Ελληνικά, русский, עברית, 한국어",
  // 1000 characters (the limit counts code points), about 2.7 KB of UTF-8.
  long: "ß漢🚚".repeat(333) + "é",
} as const;

const REASONS = {
  empty: "",
  german: "Kunde nicht erreichbar – Rücksendung",
  emoji: "Store closed 🚫🏪",
  cjk: "顧客がキャンセルしました",
  mixed: "Adresse introuvable; адрес не найден; 住所不明",
} as const;

function field(object: JsonObject, name: string, what: string): JsonObject {
  const value = object[name];
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`previous release: ${what} has no ${name}: ${JSON.stringify(object)}`);
  }
  return value;
}

function sameJson(a: Json, b: Json): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Writes ~25 deliveries in every status through release 1's service: READY,
 * ACTIVE, COLLECTED (partly delivered), COMPLETED, CANCELLED from READY,
 * ACTIVE and COLLECTED; budget increases; client-chosen and server-chosen ids;
 * non-ASCII notes and reasons; a request_id on every command; replays of
 * earlier commands with the same request_id. Sequential, so creation order is
 * the order of `deliveries`. Throws if the old service answers unexpectedly.
 */
export async function fillWithPreviousRelease(client: Client, options: FillOptions = {}): Promise<PreviousReleaseManifest> {
  const tag = options.tag ?? `r1x${randomBytes(3).toString("hex")}`;
  const deadlineMs = options.deadlineMs ?? 10_000;
  const deliveries: ManifestDelivery[] = [];
  const replays: ManifestReplay[] = [];
  const send = (method: PreviousReleaseMethod, request: JsonObject) => callPreviousRelease(client, method, request, { deadlineMs });

  class Scenario {
    readonly steps: ManifestStep[] = [];
    id = "";
    readonly scenario: string;
    readonly idChosenBy: "client" | "server";
    /** request_id of version v: `${requestStem}:v${v}` (non-ASCII in one scenario). */
    readonly requestStem: string;
    constructor(scenario: string, idChosenBy: "client" | "server", requestStem = `${tag}:${scenario}`) {
      this.scenario = scenario;
      this.idChosenBy = idChosenBy;
      this.requestStem = requestStem;
    }

    get version(): number {
      return this.steps.length;
    }

    private async command(method: CommandMethod, body: JsonObject, expectVersion = false): Promise<void> {
      const version = this.version + 1;
      const requestId = `${this.requestStem}:v${version}`;
      const request: JsonObject =
        method === "createDelivery"
          ? { ...body, requestId, ...(this.idChosenBy === "client" ? { deliveryId: `${tag}-${this.scenario}` } : {}) }
          : { deliveryId: this.id, requestId, ...(expectVersion ? { expectedVersion: String(this.version) } : {}), ...body };
      const response = await send(method, request);
      const event = field(response, "event", `${method} of ${this.scenario}`);
      const delivery = field(response, "delivery", `${method} of ${this.scenario}`);
      if (event.version !== String(version) || delivery.version !== String(version)) {
        throw new Error(`previous release: ${method} of ${this.scenario} answered version ${String(event.version)}, expected ${version}`);
      }
      if (event.requestId !== requestId) throw new Error(`previous release: ${method} of ${this.scenario} lost its request_id`);
      if (method === "createDelivery") this.id = String(delivery.id);
      this.steps.push({ version, method, requestId, request, event, delivery });
    }

    create(budget: string, notes = "") {
      return this.command("createDelivery", { budget, notes });
    }
    start(expectVersion = false) {
      return this.command("startDelivery", {}, expectVersion);
    }
    pickup(purchasePrice: string, quantity: string, expectVersion = false) {
      return this.command("pickupProducts", { purchasePrice, quantity }, expectVersion);
    }
    deliver(sellPrice: string, quantity: string, expectVersion = false) {
      return this.command("deliverProducts", { sellPrice, quantity }, expectVersion);
    }
    increase(amount: string, expectVersion = false) {
      return this.command("increaseBudget", { amount }, expectVersion);
    }
    cancel(reason: string, expectVersion = false) {
      return this.command("cancelDelivery", { reason }, expectVersion);
    }

    /** Sends the command of `version` again, same request_id: the old service must answer with what it recorded. */
    async replay(version: number): Promise<void> {
      const original = this.steps[version - 1];
      if (!original) throw new Error(`replay of ${this.scenario}: no version ${version}`);
      const response = await send(original.method, original.request);
      const event = field(response, "event", `replayed ${original.method} of ${this.scenario}`);
      const delivery = field(response, "delivery", `replayed ${original.method} of ${this.scenario}`);
      if (!sameJson(event, original.event) || !sameJson(delivery, original.delivery)) {
        throw new Error(
          `previous release: replaying ${original.method} of ${this.scenario} (request_id ${original.requestId}) ` +
            `answered ${JSON.stringify(response)}, not the recorded ${JSON.stringify({ event: original.event, delivery: original.delivery })}`,
        );
      }
      replays.push({
        deliveryId: this.id,
        version,
        method: original.method,
        requestId: original.requestId,
        request: original.request,
        event,
        delivery,
        atVersion: this.version,
      });
    }

    async done(expected: StatusName): Promise<void> {
      const { delivery: final } = (await send("getDelivery", { deliveryId: this.id })) as { delivery: JsonObject };
      if (final.status !== expected || final.version !== String(this.version)) {
        throw new Error(
          `previous release: ${this.scenario} ended ${String(final.status)} at version ${String(final.version)}, ` +
            `expected ${expected} at ${this.version}`,
        );
      }
      deliveries.push({
        id: this.id,
        scenario: this.scenario,
        idChosenBy: this.idChosenBy,
        status: expected,
        version: this.version,
        requestIds: this.steps.map((s) => s.requestId),
        steps: this.steps,
        final,
      });
    }
  }
  const scenario = (name: string, idChosenBy: "client" | "server", requestStem?: string) => new Scenario(name, idChosenBy, requestStem);

  // READY
  let d = scenario("ready", "client");
  await d.create("1000", NOTES.german);
  await d.done("DELIVERY_STATUS_READY");

  d = scenario("ready-server-id", "server");
  await d.create("2500", NOTES.emoji);
  await d.replay(1); // a retried create without delivery_id finds the first attempt
  await d.done("DELIVERY_STATUS_READY");

  d = scenario("ready-zero-budget-no-notes", "client");
  await d.create("0");
  await d.done("DELIVERY_STATUS_READY");

  d = scenario("ready-budget-increased", "client");
  await d.create("100", NOTES.cjk);
  await d.increase("50");
  await d.increase("1", true);
  await d.done("DELIVERY_STATUS_READY");

  d = scenario("ready-max-budget", "client");
  await d.create(String(Number.MAX_SAFE_INTEGER), NOTES.rtl); // 2^53-1, the largest amount release 1 takes
  await d.done("DELIVERY_STATUS_READY");

  d = scenario("ready-long-notes", "server");
  await d.create("777", NOTES.long);
  await d.done("DELIVERY_STATUS_READY");

  // ACTIVE
  d = scenario("active", "client");
  await d.create("1000", NOTES.mixed);
  await d.start();
  await d.done("DELIVERY_STATUS_ACTIVE");

  d = scenario("active-server-id", "server");
  await d.create("3000");
  await d.start(true);
  await d.increase("700");
  await d.replay(2); // an older command retried after a later one
  await d.done("DELIVERY_STATUS_ACTIVE");

  // Request ids with non-ASCII characters (hash fields in the requests Hash).
  d = scenario("active-unicode-request-ids", "client", `${tag}:bestellung-ü-注文-🚚`);
  await d.create("900", NOTES.german);
  await d.increase("100");
  await d.start();
  await d.done("DELIVERY_STATUS_ACTIVE");

  // COLLECTED
  d = scenario("collected", "client");
  await d.create("5000", NOTES.emoji);
  await d.start();
  await d.pickup("250", "4");
  await d.done("DELIVERY_STATUS_COLLECTED");

  d = scenario("collected-partly-delivered", "client");
  await d.create("5000", NOTES.german);
  await d.start();
  await d.pickup("300", "5", true);
  await d.deliver("450", "2");
  await d.replay(3); // the pickup, retried after a delivery
  await d.done("DELIVERY_STATUS_COLLECTED");

  d = scenario("collected-budget-after-pickup", "server");
  await d.create("1000");
  await d.start();
  await d.pickup("200", "5"); // spends the whole budget
  await d.increase("125");
  await d.deliver("260", "1", true);
  await d.done("DELIVERY_STATUS_COLLECTED");

  d = scenario("collected-free-many", "client");
  await d.create("10", NOTES.cjk);
  await d.start();
  await d.pickup("0", "5000000000"); // a quantity above 2^32 (uint64 in release 1)
  await d.deliver("1", "1");
  await d.done("DELIVERY_STATUS_COLLECTED");

  // COMPLETED
  d = scenario("completed", "client");
  await d.create("2000", NOTES.mixed);
  await d.start();
  await d.pickup("100", "3");
  await d.deliver("150", "3");
  await d.done("DELIVERY_STATUS_COMPLETED");

  d = scenario("completed-in-parts", "client");
  await d.create("6000", NOTES.rtl);
  await d.start();
  await d.pickup("500", "6");
  await d.deliver("700", "1");
  await d.deliver("650", "2");
  await d.deliver("900", "3", true);
  await d.done("DELIVERY_STATUS_COMPLETED");

  d = scenario("completed-server-id", "server");
  await d.create("1500", NOTES.emoji);
  await d.start();
  await d.pickup("1500", "1");
  await d.deliver("0", "1"); // sold at a loss, free
  await d.done("DELIVERY_STATUS_COMPLETED");

  d = scenario("completed-budget-increases", "client");
  await d.create("100", NOTES.german);
  await d.increase("400");
  await d.start();
  await d.increase("500", true);
  await d.pickup("250", "4");
  await d.increase("5");
  await d.deliver("300", "4");
  await d.replay(1);
  await d.done("DELIVERY_STATUS_COMPLETED");

  // CANCELLED
  d = scenario("cancelled-from-ready", "client");
  await d.create("800", NOTES.cjk);
  await d.cancel(REASONS.german);
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-ready-no-reason", "server");
  await d.create("800");
  await d.cancel(REASONS.empty);
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-ready-increased", "client");
  await d.create("10");
  await d.increase("90");
  await d.cancel(REASONS.emoji, true);
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-active", "client");
  await d.create("1200", NOTES.mixed);
  await d.start();
  await d.cancel(REASONS.cjk);
  await d.replay(3); // the cancellation, retried: still the same event
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-active-server-id", "server");
  await d.create("1200", NOTES.rtl);
  await d.start();
  await d.increase("300");
  await d.cancel(REASONS.mixed);
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-collected", "client");
  await d.create("4000", NOTES.german);
  await d.start();
  await d.pickup("400", "5");
  await d.cancel(REASONS.german);
  await d.done("DELIVERY_STATUS_CANCELLED");

  d = scenario("cancelled-from-collected-partly", "server");
  await d.create("4000", NOTES.emoji);
  await d.start();
  await d.pickup("400", "5");
  await d.deliver("600", "3");
  await d.increase("1");
  await d.cancel(REASONS.emoji, true);
  await d.done("DELIVERY_STATUS_CANCELLED");

  // Creation order as ListDeliveries reports it, over several pages.
  const listOrder: string[] = [];
  let pageToken = "";
  for (let page = 0; ; page++) {
    if (page > 10_000) throw new Error("previous release: ListDeliveries does not end");
    const response = await send("listDeliveries", { pageSize: 7, pageToken });
    for (const delivery of (response.deliveries ?? []) as JsonObject[]) listOrder.push(String(delivery.id));
    pageToken = String(response.nextPageToken ?? "");
    if (pageToken === "") break;
  }
  const ours = new Set(deliveries.map((x) => x.id));
  const listedOurs = listOrder.filter((id) => ours.has(id));
  if (!sameJson(listedOurs, deliveries.map((x) => x.id))) {
    throw new Error(`previous release: ListDeliveries order ${JSON.stringify(listedOurs)} is not the creation order`);
  }

  return { tag, deliveries, listOrder, replays };
}
