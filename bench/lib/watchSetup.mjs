/**
 * A server child (the service or the bare baseline) with a watched delivery,
 * a watcher pool and a command client, warmed up (a watch, a push and a
 * cancel): what a fanout or memory trial runs on. bench/lib/natsPeer.mjs
 * builds the same shape around a nats-server.
 *
 * Returns { kind, server, watchers, whenAll, command, open, close, retried }:
 *   command() -> {version, ackNs, sentNs}  one IncreaseBudget on the watched delivery
 *   open(count) -> {opened, ms}             opens `count` watches, checks the server has them
 *   retried() -> {ABORTED, UNAVAILABLE}     commands sent again (with `retry` only)
 */
import grpc from "@grpc/grpc-js";
import { setTimeout as sleep } from "node:timers/promises";
import { benchId, BUDGET, NOTES } from "./fixtures.mjs";
import { callUnary, clientFor } from "./grpcClient.mjs";
import { nowNs } from "./stats.mjs";

/** Starts processes together; if one fails, stops the others. */
export async function startTogether(starts) {
  const settled = await Promise.allSettled(starts);
  const failed = settled.find((x) => x.status === "rejected");
  if (!failed) return settled.map((x) => x.value);
  await Promise.all(settled.filter((x) => x.status === "fulfilled").map((x) => x.value.stop()));
  throw failed.reason;
}

/**
 * Options: `execArgv` adds V8 flags to the server child, `env` to its environment
 * (BENCH_MAX_WATCHERS); `pool` ({processes, channels}) overrides the watcher pool's settings;
 * `retry`: a command the service answers with ABORTED (contention outlasted its budget) or
 * UNAVAILABLE (a Redis reply missed its deadline) is sent again with the same request_id, as
 * the status asks (the service answers a repeat idempotently), up to 5 times, and counted; its
 * ack is the one that succeeds, its send the first. Without it such a command fails the trial.
 */
export async function watchSetup(ctx, kind, W, run, { execArgv = [], env, pool, retry = false } = {}) {
  ctx.debug(`${kind} W=${W}: starting processes`);
  const [server, watchers] = await startTogether([ctx.servers.startServer(kind, execArgv, env), ctx.startWatcherPool(pool)]);
  const client = clientFor(server.port);
  const close = async () => {
    client.close();
    await watchers.stop();
    await server.stop();
    ctx.debug("stopped");
  };
  try {
    const whenAll = watchers.whenAll;
    const deliveryId = kind === "real" ? benchId("f") : "bare";
    if (kind === "real") {
      await callUnary(client, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` });
      await callUnary(client, "startDelivery", { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-s` });
    }
    let commandCount = 0;
    let version = kind === "real" ? 2 : 1;
    const retries = { ABORTED: 0, UNAVAILABLE: 0 };
    const send = async (n) => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await callUnary(client, "increaseBudget", { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-${run}-${n}`, amount: 1n });
        } catch (error) {
          const code = grpc.status[error?.code];
          if (!retry || !(code in retries) || attempt > 5) throw error;
          retries[code]++;
        }
      }
    };
    const command = async () => {
      const n = ++commandCount;
      const sentNs = nowNs();
      const response = await send(n);
      const ackNs = nowNs();
      // The bare server's answer is fixed; its pushes are numbered in call order.
      return { version: kind === "real" ? Number(response.event.version) : ++version, ackNs, sentNs };
    };
    const open = async (count) => {
      const opened = await watchers.open({ transport: "grpc", port: server.port, deliveryId }, count);
      const usage = await server.usage();
      if (usage.watchers !== count) throw new Error(`${kind} server has ${usage.watchers} watchers, expected ${count}`);
      return opened;
    };

    // Warm-up: the code paths of a watch, a push and a cancel, then idle.
    await open(Math.min(W, 50));
    await whenAll((await command()).version);
    await watchers.closeAll();
    await sleep(200);
    ctx.debug("started and warmed up");
    return { kind, server, watchers, whenAll, command, open, close, retried: () => ({ ...retries }) };
  } catch (error) {
    await close();
    throw error;
  }
}
