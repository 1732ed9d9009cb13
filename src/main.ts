/** The process: configuration from the environment, the server, signals. */
import { pino } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { startServer } from "./server.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = pino({ level: config.logLevel, base: { service: "delivery-service" } });
  const server = await startServer({ config, logger });

  let signals = 0;
  const shutdown = (signal: NodeJS.Signals) => {
    if (++signals > 1) return;
    logger.info({ signal }, "shutting down");
    server.stop().then(
      () => process.exit(0),
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
