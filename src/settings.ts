/**
 * Reading one setting from the environment: the parsers config.ts and the
 * settings it delegates (auth/authConfig.ts, store/redis/redisTarget.ts)
 * share, each failing with one ConfigError line that names the variable.
 */
import { readFileSync } from "node:fs";
import { ConfigError } from "./configError.js";

export type Env = Readonly<Record<string, string | undefined>>;

/** The value, or undefined when unset or empty. */
export function present(env: Env, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === "" ? undefined : raw;
}

export function integer(env: Env, name: string, fallback: number, min: number, max: number, unit = ""): number {
  const raw = present(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d{1,15}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}${unit}, got "${raw}"`);
  }
  return Number(raw);
}

/** "true" or "false" (unset: false). */
export function flag(env: Env, name: string): boolean {
  const raw = present(env, name);
  if (raw === undefined || raw === "false") return false;
  if (raw === "true") return true;
  throw new ConfigError(`${name} must be true or false, got "${raw}"`);
}

/** A PEM file named by a setting: it must exist, be readable and hold a PEM block, or start-up stops here. */
export function pemFile(name: string, path: string): string;
export function pemFile(name: string, path: string | undefined): string | undefined;
export function pemFile(name: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`${name} cannot be read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message} (${path})`);
  }
  if (!text.includes("-----BEGIN ")) throw new ConfigError(`${name} is not a PEM file (${path})`);
  return path;
}
