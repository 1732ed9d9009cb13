/**
 * A setting that cannot be used: main.ts prints its message as one line and
 * exits 2. Its own module so that config.ts and the settings it delegates
 * (auth/authConfig.ts) both use it without importing each other in a cycle.
 */
export class ConfigError extends Error {}
