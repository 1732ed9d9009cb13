/** The process: configuration from the environment, logging, the server, signals. */
import { pino } from "pino";
import { PinoPretty } from "pino-pretty";
import { type Config, ConfigError, loadConfig } from "./config.js";
import { startServer } from "./server.js";

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
  const server = await startServer({ config, logger });

  let signalled = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down");
    server.stop().then(
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
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`delivery service failed to start: ${(error as Error).message}\n`);
  process.exit(1);
});
