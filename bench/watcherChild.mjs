/**
 * The watchers of the fanout section, in a process of their own so that their
 * CPU is theirs alone and the parent can time command acknowledgements without
 * waiting behind thousands of stream messages. Timestamps are
 * process.hrtime (CLOCK_MONOTONIC), comparable across processes on one host.
 *
 * IPC requests ({id, op, ...} -> {id, ...}):
 *   open {port, deliveryId, count, channels}  opens `count` WatchDelivery streams spread over
 *                                             `channels` distinct connections; replies once each
 *                                             has its first message (the snapshot)
 *   stats {acks: [[version, ackNs, sentNs]...]} latencies from each ack (and send) to each receipt
 *   closeAll {closeChannels}                  cancels every stream (and closes the connections)
 *   usage                                     process.cpuUsage(), event loop utilisation
 *   stop                                      cancels everything and exits
 * Unsolicited: {type: "all", version, lastNs} when every open stream has a version.
 */
import grpc from "@grpc/grpc-js";
import { DeliveryServiceClient, WatchDeliveryResponse } from "../dist/gen/delivery/v1/delivery.js";

const nowNs = () => Number(process.hrtime.bigint());
const FLOW_CONTROL_WINDOW = Number(process.env.BENCH_FLOW_WINDOW ?? 16 * 1024 * 1024);
let clients = [];
let calls = [];
let open = 0;
/** version -> receipt times (ns) */
let receipts = new Map();
let snapshots = 0;
/** Called on every snapshot while streams are being opened. */
let onSnapshot = () => {};
let errors = 0;
let firstError;
let lastMessageBytes = 0;

function clientsFor(port, channels) {
  if (clients.length !== channels || clients[0]?.port !== port) {
    for (const c of clients) c.client.close();
    clients = Array.from({ length: channels }, () => ({
      port,
      client: new DeliveryServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.max_receive_message_length": 16 * 1024 * 1024,
        // HTTP/2 connection window: with grpc-js's default (64 KiB) each connection carries only ~260
        // updates of 250 B per window-update round trip, and at W=5,000 x 10/s the client's flow control,
        // not the server, decides the latency (p99 of 1.2-1.7 s for both servers on 2 cores).
        "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
      }),
    }));
  }
  return clients.map((c) => c.client);
}

function onData(message) {
  const t = nowNs();
  if (!message.event) {
    snapshots++;
    onSnapshot();
    return;
  }
  const version = Number(message.delivery.version);
  let times = receipts.get(version);
  if (!times) receipts.set(version, (times = []));
  times.push(t);
  if (times.length === open) {
    if (!lastMessageBytes) lastMessageBytes = WatchDeliveryResponse.encode(message).finish().length;
    process.send({ type: "all", version, lastNs: t });
  }
}

/**
 * Opens the streams `batch` at a time (each batch once every stream in it has
 * its snapshot), as clients arriving over a short while would, rather than in
 * one burst whose transient allocations would stay in the server's RSS.
 */
function openStreams({ port, deliveryId, count, channels, batch = 250 }) {
  const chosen = clientsFor(port, channels);
  const started = nowNs();
  snapshots = 0;
  open = count;
  receipts = new Map();
  let requested = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`only ${snapshots}/${count} watches started in 60 s (${errors} failed, first: ${firstError})`)),
      60_000,
    );
    const openBatch = () => {
      const until = Math.min(count, requested + batch);
      for (; requested < until; requested++) {
        const call = chosen[requested % chosen.length].watchDelivery({ deliveryId, afterVersion: undefined });
        call.on("data", onData);
        call.on("error", (error) => {
          if (error.code === grpc.status.CANCELLED) return;
          errors++;
          firstError ??= `${grpc.status[error.code] ?? error.code}: ${error.details}`;
        });
        calls.push(call);
      }
    };
    const check = () => {
      if (snapshots < requested) return;
      if (requested < count) return openBatch();
      clearTimeout(timer);
      onSnapshot = () => {};
      resolve({ opened: count, ms: (nowNs() - started) / 1e6 });
    };
    onSnapshot = check;
    openBatch();
  });
}

/**
 * acks: [version, ackNs, sentNs] per command. Latencies from the command's
 * acknowledgement (can be negative: the push may overtake the ack) and from
 * the moment it was sent.
 */
function stats(acks) {
  const fromAck = [];
  const fromSend = [];
  let expected = 0;
  const perVersion = [];
  for (const [version, ackNs, sentNs] of acks) {
    expected += open;
    const times = receipts.get(version) ?? [];
    if (times.length) perVersion.push([version, Math.round((Math.min(...times) - ackNs) / 1e5) / 10, Math.round((Math.max(...times) - ackNs) / 1e5) / 10]);
    for (const t of times) {
      fromAck.push(Math.round((t - ackNs) / 1e3) / 1e3);
      fromSend.push(Math.round((t - sentNs) / 1e3) / 1e3);
    }
  }
  receipts = new Map();
  return {
    received: fromAck.length,
    expected,
    // All of them (ms), for the parent to merge with the other watcher processes.
    fromAck,
    fromSend,
    messageBytes: lastMessageBytes,
    /** [version, first receipt ms, last receipt ms] after its ack */
    perVersion,
    errors,
    firstError,
  };
}

function closeAll() {
  for (const call of calls) call.cancel();
  calls = [];
  open = 0;
  receipts = new Map();
}

process.on("disconnect", () => process.exit(0));
process.on("message", async (message) => {
  const reply = (body) => process.connected && process.send({ id: message.id, ...body });
  try {
    switch (message.op) {
      case "open":
        reply(await openStreams(message));
        break;
      case "stats":
        reply(stats(message.acks));
        break;
      case "closeAll":
        closeAll();
        // Cancelling thousands of streams at once reads as a reset flood to the server's HTTP/2
        // session (it then fails the session); new channels for the next watches avoid it.
        if (message.closeChannels) {
          for (const c of clients) c.client.close();
          clients = [];
        }
        reply({});
        break;
      case "usage":
        reply({ cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), mem: process.memoryUsage() });
        break;
      case "stop":
        closeAll();
        for (const c of clients) c.client.close();
        process.send({ id: message.id }, () => process.exit(0));
        break;
      default:
        reply({ error: `unknown op ${message.op}` });
    }
  } catch (error) {
    reply({ error: String(error?.stack ?? error) });
  }
});
process.send({ type: "ready", pid: process.pid });
