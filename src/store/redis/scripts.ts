import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

/** One file per atomic operation; read at start and registered with defineCommand (EVALSHA, EVAL on NOSCRIPT). */
const SCRIPTS = {
  appendEvent: { file: "appendEvent.lua", numberOfKeys: 4 },
} as const;

export type ScriptName = keyof typeof SCRIPTS;

export type ScriptCaller = (name: ScriptName, keys: readonly string[], args: readonly string[]) => Promise<unknown>;

export function registerScripts(redis: Redis): ScriptCaller {
  for (const [name, { file, numberOfKeys }] of Object.entries(SCRIPTS)) {
    const lua = readFileSync(new URL(`./lua/${file}`, import.meta.url), "utf8");
    redis.defineCommand(name, { numberOfKeys, lua });
  }
  return (name, keys, args) => (redis as unknown as Record<ScriptName, (...a: string[]) => Promise<unknown>>)[name](...keys, ...args);
}
