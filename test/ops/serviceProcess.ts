/**
 * The real service process (`node main.js`), for tests of what only a process
 * has: signals, exit codes, configuration errors on stderr.
 *
 * buildService() compiles src/ with tsconfig.build.json into a private temp
 * directory (not dist/, which other people and tools build concurrently), adds
 * the run-time assets that scripts/copy-assets.mjs copies, a package.json
 * (ESM) and a node_modules symlink to the project's. spawnService() starts it
 * and reads its JSON log lines.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export interface Build {
  /** The compiled entry point. */
  readonly main: string;
  remove(): void;
}

/** Compiles the service into a fresh temp dir (~5 s). */
export async function buildService(): Promise<Build> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "delivery-ops-build-"));
  const out = path.join(dir, "dist");
  const tsc = path.join(ROOT, "node_modules", ".bin", "tsc");
  try {
    await promisify(execFile)(tsc, ["-p", path.join(ROOT, "tsconfig.build.json"), "--outDir", out], { cwd: ROOT });
  } catch (error) {
    // tsc emits despite type errors; a half-edited file elsewhere in src/ should
    // not hide what these tests check, as long as the entry point was emitted.
    if (!existsSync(path.join(out, "main.js"))) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    const { stdout } = error as { stdout?: string };
    console.warn(`[ops build] tsc reported errors, running what it emitted:\n${stdout ?? ""}`);
  }
  // The same assets as scripts/copy-assets.mjs (which writes to dist/ only).
  for (const [from, to] of [
    ["src/store/redis/lua", "store/redis/lua"],
    ["src/gen/descriptor_set.binpb", "gen/descriptor_set.binpb"],
  ] as const) {
    cpSync(path.join(ROOT, from), path.join(out, to), { recursive: true });
  }
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module" }));
  symlinkSync(path.join(ROOT, "node_modules"), path.join(dir, "node_modules"), "dir");
  return { main: path.join(out, "main.js"), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Date.now() when the process exited. */
  readonly at: number;
}

export interface ServiceProcess {
  readonly child: ChildProcess;
  /** JSON log lines from stdout, in order. */
  readonly logs: LogLine[];
  /** Everything written to stderr. */
  stderr(): string;
  /** Resolves with the first log line (seen or future) that matches. */
  waitForLog(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  readonly exited: Promise<Exit>;
  /** SIGKILL if still running, and wait for the exit. */
  kill(): Promise<void>;
}

/** Starts `node <main>` with exactly `env` (plus PATH), stdout parsed as JSON lines. */
export function spawnService(main: string, env: Record<string, string>): ServiceProcess {
  const child = spawn(process.execPath, [main], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  const waiters: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }[] = [];
  let stdoutRest = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (text: string) => {
    const lines = (stdoutRest + text).split("\n");
    stdoutRest = lines.pop() ?? "";
    for (const raw of lines) {
      if (raw.trim() === "") continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { level: 0, msg: `<not JSON> ${raw}` };
      }
      logs.push(line);
      for (const waiter of waiters.filter((w) => w.match(line))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  });
  child.stderr!.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<Exit>((resolve) =>
    // 'close', not 'exit': every log line has been read by then.
    child.once("close", (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return {
    child,
    logs,
    stderr: () => stderr,
    waitForLog(match, timeoutMs = 10_000) {
      const seen = logs.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const summary = logs.map((l) => l.msg).join(" | ");
          reject(new Error(`no matching log line within ${timeoutMs} ms; logs: ${summary}; stderr: ${stderr}`));
        }, timeoutMs);
        const waiter = { match, resolve: (line: LogLine) => (clearTimeout(timer), resolve(line)) };
        waiters.push(waiter);
        void exited.then(() => {
          if (!waiters.includes(waiter)) return;
          clearTimeout(timer);
          reject(new Error(`the process exited before a matching log line; stderr: ${stderr}`));
        });
      });
    },
    exited,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Waits for "delivery service listening" and returns the port it logged. */
export async function listeningPort(service: ServiceProcess): Promise<number> {
  const line = await service.waitForLog((l) => l.msg === "delivery service listening");
  if (typeof line.port !== "number") throw new Error(`listening line without a port: ${JSON.stringify(line)}`);
  return line.port;
}
