/** The process: configuration from the environment, logging, the server, signals. */
import { pino } from "pino";
import { PinoPretty } from "pino-pretty";
import { type Config, ConfigError, loadConfig } from "./config.js";
import { startServer } from "./server.js";
import { StoreLayoutError } from "./store/redis/redisEventStore.js";

function createLogger(config: Config) {
  const options = { level: config.logLevel, base: { service: "delivery-service" } };
  return config.logFormat === "pretty"
    ? pino(options, PinoPretty({ colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,service" }))
    : pino(options);
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(process.env, process.stdout.isTTY === true);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config);

  // Handlers go in before the port opens: a signal during start-up still
  // stops the server gracefully once it exists, and exits 0.
  let stop: (() => Promise<void>) | undefined;
  let signalled: NodeJS.Signals | undefined;
  const shutdown = () => {
    if (!stop) return;
    logger.info({ signal: signalled, graceMs: config.shutdownGraceMs }, "shutting down");
    stop().then(
      () => {
        logger.info({}, "stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = signal;
    shutdown();
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  const server = await startServer({ config, logger });
  stop = () => server.stop();
  if (signalled) shutdown();
}

main().catch((error: unknown) => {
  // Settings that only the server can check together (AUTH_CLIENT_CERTIFICATES without mutual TLS).
  if (error instanceof ConfigError) {
    process.stderr.write(`invalid configuration: ${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof StoreLayoutError) {
    process.stderr.write(`delivery service cannot use this Redis: ${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`delivery service failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
