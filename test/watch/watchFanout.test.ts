import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { within } from "../support/async.js";
import { cancelDelivery, createDelivery, increaseBudget } from "../support/deliveries.js";
import { testRedisUrl } from "../support/redis.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { watch, type WatchRecorder } from "../support/watch.js";
import { expectEveryVersion, expectSnapshotThenEveryVersion } from "./watchSupport.js";

const WATCHERS = 1_000;
const WATCH_CHANNELS = 8;
const COMMAND_CLIENTS = 4;
const COMMANDS_PER_CLIENT = 10;

describe("WatchDelivery fanout", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService({ redisUrl: testRedisUrl() });
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("gives each of 1,000 watchers every version once, in order, while commands run concurrently", async () => {
    const watchClients: DeliveryServiceClient[] = Array.from({ length: WATCH_CHANNELS }, () => service.client());
    const commandClients: DeliveryServiceClient[] = Array.from({ length: COMMAND_CLIENTS }, () => service.client());
    const id = await createDelivery(commandClients[0]!);

    // Watchers open while the commands already run: joins race live updates.
    const commands = Promise.all(
      commandClients.map(async (client) => {
        const versions: number[] = [];
        for (let i = 0; i < COMMANDS_PER_CLIENT; i++) versions.push(await increaseBudget(client, id));
        return versions;
      }),
    );
    const snapshotWatchers: WatchRecorder[] = [];
    const replayWatchers: WatchRecorder[] = [];
    for (let i = 0; i < WATCHERS; i++) {
      const client = watchClients[i % WATCH_CHANNELS]!;
      if (i % 2 === 0) snapshotWatchers.push(watch(client, { deliveryId: id }));
      else replayWatchers.push(watch(client, { deliveryId: id, afterVersion: 0 }));
    }

    const accepted = (await within(commands, "the commands", 25_000)).flat().sort((a, b) => a - b);
    expect(accepted).toHaveLength(COMMAND_CLIENTS * COMMANDS_PER_CLIENT);
    expect(new Set(accepted).size).toBe(accepted.length);
    const finalVersion = await cancelDelivery(commandClients[0]!, id);
    expect(finalVersion).toBe(2 + COMMAND_CLIENTS * COMMANDS_PER_CLIENT);

    const all = [...snapshotWatchers, ...replayWatchers];
    const ends = await within(Promise.all(all.map((w) => w.ended)), "every watch to end", 25_000);
    expect(ends.filter((e) => e.code !== status.OK)).toEqual([]);
    for (const w of snapshotWatchers) expectSnapshotThenEveryVersion(w, finalVersion);
    for (const w of replayWatchers) expectEveryVersion(w, 0, finalVersion);
    expect(service.server.hub.watcherCount).toBe(0);
    expect(service.server.hub.watchedDeliveries).toBe(0);
  }, 40_000);
});
