import { readdirSync, readFileSync } from "node:fs";
import type { Cluster, Redis } from "ioredis";

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

export function registerScripts(redis: Redis | Cluster): ScriptCaller {
  const files = scriptFiles();
  const keyCounts = new Map<ScriptName, number>();
  for (const name of SCRIPT_NAMES) {
    const script = files.get(name);
    if (!script) throw new Error(`no lua/${name}-<keys>.lua`);
    redis.defineCommand(name, { numberOfKeys: script.numberOfKeys, lua: readFileSync(new URL(script.file, LUA_DIR), "utf8") });
    keyCounts.set(name, script.numberOfKeys);
  }
  return (name, keys, args) => {
    if (keys.length !== keyCounts.get(name)) throw new Error(`${name} takes ${keyCounts.get(name)} keys, given ${keys.length}`);
    return (redis as unknown as Record<ScriptName, (...a: Arg[]) => Promise<unknown>>)[name](...keys, ...args);
  };
}
