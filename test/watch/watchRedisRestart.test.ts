import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { waitUntil, within } from "../support/async.js";
import { createDelivery } from "../support/deliveries.js";
import { type RedisServerHandle, startRedisServer } from "../support/redisServer.js";
import { call, startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion, retryWhileUnavailable } from "./watchSupport.js";

const COMMANDS = 60;
const WATCHERS = 10;

describe("WatchDelivery across a Redis restart", () => {
  let redisServer: RedisServerHandle;
  let service: TestService;

  beforeAll(async () => {
    // A private Redis with an append-only file: its data outlives the restart.
    redisServer = await startRedisServer({ appendonly: true });
    service = await startTestService({ redisUrl: redisServer.url, safetyNetIntervalMs: 600_000 });
  });

  afterAll(async () => {
    await service?.stop();
    await redisServer?.kill();
  });

  it("keeps watches open and gives them every accepted version once, in order, afterwards", async () => {
    const commandClient = service.client();
    const watchClient = service.client();
    const id = await createDelivery(commandClient);
    const snapshot: WatchRecorder[] = [];
    const replay: WatchRecorder[] = [];
    for (let i = 0; i < WATCHERS; i++) {
      if (i % 2 === 0) snapshot.push(watch(watchClient, { deliveryId: id }));
      else replay.push(watch(watchClient, { deliveryId: id, afterVersion: 0 }));
    }
    await waitUntil(() => [...snapshot, ...replay].every((w) => w.messages.length >= 1), "every watch to start");

    let unavailable = 0;
    const acceptedVersions: number[] = [];
    // Each command keeps its request_id across retries: a retry of an append
    // that did happen returns the original outcome instead of a second event.
    const send = async (command: (client: DeliveryServiceClient, requestId: string) => Promise<{ event?: { version: bigint } | undefined }>) => {
      const requestId = randomUUID();
      const { event } = await retryWhileUnavailable(() => command(commandClient, requestId), () => unavailable++);
      acceptedVersions.push(Number(event?.version));
    };
    const increase = (client: DeliveryServiceClient, requestId: string) =>
      call(client, "increaseBudget", { deliveryId: id, amount: 1n, requestId }, { deadlineMs: 3_000 });

    // Commands keep coming until the outage has been seen and Redis is back,
    // however fast the first ones go through.
    let restarted = false;
    const commands = (async () => {
      while (acceptedVersions.length < COMMANDS || !restarted) await send(increase);
    })();
    await waitUntil(() => acceptedVersions.length >= 10, "some commands before the outage");
    await redisServer.stop();
    await waitUntil(() => unavailable >= 1, "a command refused during the outage");
    await redisServer.restart();
    restarted = true;
    await within(commands, "the commands to go through", 25_000);
    await send((client, requestId) => call(client, "cancelDelivery", { deliveryId: id, reason: "restart test", requestId }));

    expect(unavailable).toBeGreaterThanOrEqual(1);
    const last = acceptedVersions.length + 1;
    expect(acceptedVersions.length).toBeGreaterThanOrEqual(COMMANDS + 1);
    expect(acceptedVersions).toEqual(Array.from({ length: last - 1 }, (_, i) => i + 2));
    const ends = await within(Promise.all([...snapshot, ...replay].map((w) => w.ended)), "every watch to end", 15_000);
    expect(ends.filter((e) => e.code !== status.OK)).toEqual([]);
    for (const w of snapshot) expectSnapshotThenEveryVersion(w, last);
    for (const w of replay) expectEveryVersion(w, 0, last);
  }, 40_000);
});
