/**
 * The baseline: a minimal grpc-js server for the same service definition whose
 * RPCs do no work. Unary calls answer with a fixed, pre-built response: empty
 * (`responses: "empty"`, the empty unary RPC the targets compare with) or of
 * the real one's shape and size (`"sized"`, which separates what the payload
 * costs from what the service does). WatchDelivery registers the stream, sends
 * a pre-encoded snapshot, and IncreaseBudget pushes one update of the real
 * one's size (encoded once) to every open stream after answering — the same
 * "ack, then fan out" shape as the service.
 */
import grpc from "@grpc/grpc-js";
import * as pb from "../dist/gen/delivery/v1/delivery.js";
import { benchId, encodeSnapshot, encodeUpdate, sampleCommandResponse, sampleDelivery } from "./lib/fixtures.mjs";

export async function startBareServer({ responses = "empty" } = {}) {
  const id = benchId("bare");
  const sized = responses === "sized";
  const commandResponse = sized ? sampleCommandResponse(id, 3) : { delivery: undefined, event: undefined };
  const getResponse = { delivery: sized ? sampleDelivery(id, 3) : undefined };
  const streams = new Set();
  let version = 1;
  /** Pre-encoded log for catch-up runs (see prepareCatchUp). */
  let log = [];

  const answer = (_call, callback) => callback(null, commandResponse);
  // Same trick as the real server: pre-encoded bytes go out as they are.
  const passthrough = (value) => (Buffer.isBuffer(value) ? value : Buffer.from(pb.WatchDeliveryResponse.encode(value).finish()));

  function writeLog(call, after) {
    let next = after + 1;
    const pump = () => {
      while (next <= log.length && !call.cancelled) {
        const ok = call.write(log[next - 1]);
        next++;
        if (!ok) return call.once("drain", pump);
      }
    };
    pump();
  }

  const server = new grpc.Server();
  server.addService(
    { ...pb.DeliveryServiceService, watchDelivery: { ...pb.DeliveryServiceService.watchDelivery, responseSerialize: passthrough } },
    {
      createDelivery: answer,
      startDelivery: answer,
      pickupProducts: answer,
      deliverProducts: answer,
      cancelDelivery: answer,
      increaseBudget(call, callback) {
        callback(null, commandResponse);
        if (streams.size === 0) return;
        version++;
        const bytes = encodeUpdate(id, version);
        for (const stream of streams) stream.write(bytes);
      },
      getDelivery: (_call, callback) => callback(null, getResponse),
      listDeliveries: (_call, callback) => callback(null, { deliveries: [], nextPageToken: "" }),
      listDeliveryEvents: (_call, callback) => callback(null, { events: [] }),
      watchDelivery(call) {
        const after = call.request.afterVersion;
        if (after !== undefined) {
          writeLog(call, Number(after));
          return;
        }
        call.write(encodeSnapshot(id, version));
        streams.add(call);
        call.on("cancelled", () => streams.delete(call));
      },
    },
  );
  const port = await new Promise((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return {
    port,
    get watcherCount() {
      return streams.size;
    },
    /** Pre-encodes n updates, served to a watch with after_version. */
    prepareCatchUp(n) {
      log = Array.from({ length: n }, (_, i) => encodeUpdate(id, i + 1));
    },
    async stop() {
      for (const stream of streams) stream.end();
      streams.clear();
      server.forceShutdown();
    },
  };
}
