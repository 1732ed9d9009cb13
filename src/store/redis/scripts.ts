import { readdirSync, readFileSync } from "node:fs";
import { type Cluster, Command, type Redis } from "ioredis";

/**
 * One file per atomic operation, named <name>-<number of keys>.lua (the key
 * count is stated once, in the name); read at start and registered with
 * defineCommand (EVALSHA, EVAL on NOSCRIPT).
 */
export const SCRIPT_NAMES = ["appendEvent", "deleteDelivery", "importDelivery"] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

type Arg = string | Buffer;
export type ScriptCaller = (name: ScriptName, keys: readonly string[], args: readonly Arg[]) => Promise<unknown>;

const LUA_DIR = new URL("./lua/", import.meta.url);

function scriptFiles(): Map<string, { file: string; numberOfKeys: number }> {
  const found = new Map<string, { file: string; numberOfKeys: number }>();
  for (const file of readdirSync(LUA_DIR)) {
    const match = /^([A-Za-z]+)-(\d+)\.lua$/.exec(file);
    if (match) found.set(match[1]!, { file, numberOfKeys: Number(match[2]) });
  }
  return found;
}

/** Decimal digits of a non-negative integer. */
const digits = (n: number): number => (n < 10 ? 1 : n < 100 ? 2 : n < 1_000 ? 3 : n < 10_000 ? 4 : String(n).length);

/**
 * A command in the Redis protocol (an array of bulk strings), written into
 * one Buffer sized up front: each argument measured once, copied once.
 */
export function respCommand(name: string, args: readonly (string | Buffer)[]): Buffer {
  const lengths = new Array<number>(args.length);
  const nameLength = Buffer.byteLength(name);
  let size = 1 + digits(args.length + 1) + 2 + 1 + digits(nameLength) + 2 + nameLength + 2;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const length = typeof arg === "string" ? Buffer.byteLength(arg) : arg.length;
    lengths[i] = length;
    size += 1 + digits(length) + 2 + length + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let at = out.write(`*${args.length + 1}\r\n$${nameLength}\r\n`, 0, "latin1");
  at += out.write(name, at);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    at += out.write(`\r\n$${lengths[i]}\r\n`, at, "latin1");
    at += typeof arg === "string" ? out.write(arg, at) : arg.copy(out, at);
  }
  out[at++] = 13;
  out[at] = 10;
  return out;
}

/** What ioredis keeps of a script defined with defineCommand: its command class, used for every call. */
interface DefinedScript {
  Command: typeof Command;
  readonly lua: string;
  readonly sha: string;
}

/**
 * ioredis writes a script's call through its generic Command.toWritable,
 * whose buffer mode measures and concatenates every argument twice; for the
 * append (a packed field and two Buffers among ten arguments) that was about
 * a tenth of the service's own CPU per command (bench/appPath.mjs: 18.6 ->
 * 16.5 µs with this class). This class keeps ioredis' behaviour (EVAL
 * with the source the first time on a socket and again after NOSCRIPT, EVALSHA
 * otherwise; the keys stay in `args` for Cluster routing) and writes the
 * bytes with respCommand(). Installed only where ioredis has the script where
 * this expects it; otherwise ioredis' own class stays (a test checks it is installed).
 */
function installFastCommand(redis: Redis | Cluster, name: ScriptName): void {
  const script = (redis as unknown as { scriptsSet?: Record<string, DefinedScript> }).scriptsSet?.[name];
  if (!script || typeof script.Command !== "function" || !(script.Command.prototype instanceof Command)) return;
  const { lua, sha } = script;
  const loadedOn = new WeakSet<object>();
  script.Command = class ScriptCommand extends Command {
    override toWritable(socket: object): Buffer {
      const reject = this.reject;
      this.reject = (error: Error) => {
        if (error.message.includes("NOSCRIPT")) loadedOn.delete(socket);
        reject.call(this, error);
      };
      if (!loadedOn.has(socket)) {
        loadedOn.add(socket);
        this.name = "eval";
        this.args[0] = lua;
      } else if (this.name === "eval") {
        this.name = "evalsha";
        this.args[0] = sha;
      }
      return respCommand(this.name, this.args as (string | Buffer)[]);
    }
  };
}

export function registerScripts(redis: Redis | Cluster): ScriptCaller {
  const files = scriptFiles();
  const keyCounts = new Map<ScriptName, number>();
  for (const name of SCRIPT_NAMES) {
    const script = files.get(name);
    if (!script) throw new Error(`no lua/${name}-<keys>.lua`);
    redis.defineCommand(name, { numberOfKeys: script.numberOfKeys, lua: readFileSync(new URL(script.file, LUA_DIR), "utf8") });
    installFastCommand(redis, name);
    keyCounts.set(name, script.numberOfKeys);
  }
  return (name, keys, args) => {
    if (keys.length !== keyCounts.get(name)) throw new Error(`${name} takes ${keyCounts.get(name)} keys, given ${keys.length}`);
    return (redis as unknown as Record<ScriptName, (...a: Arg[]) => Promise<unknown>>)[name](...keys, ...args);
  };
}
