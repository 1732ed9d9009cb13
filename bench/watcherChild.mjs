/**
 * The watchers of the fanout, memory, firehose, cluster and scale sections, in a process of their own so
 * that their CPU is theirs alone and the parent can time command
 * acknowledgements without waiting behind thousands of stream messages.
 * Timestamps are process.hrtime (CLOCK_MONOTONIC), comparable across processes
 * on one host.
 *
 * Four transports, measured the same way (a receipt is timed once the message
 * is decoded into a WatchDeliveryResponse, as grpc-js hands ours over):
 *   grpc       WatchDelivery streams of DeliveryService (the service or the bare baseline)
 *   firehose   WatchDeliveries streams (no filter, no snapshot) of the service: every change of every
 *              delivery; a receipt is keyed "<delivery id>:<version>" (the key a command's ack names),
 *              versions are checked per delivery; the first message (caught_up) is the start
 *   nats-kv    NATS JetStream KV watches of one key (kv.watch({key}): an ordered push consumer each);
 *              the version is the entry's revision, the first entry (the key's last value) the snapshot
 *   nats-core  core NATS subscriptions of one subject; the version is the one encoded in the payload
 *
 * IPC requests ({id, op, ...} -> {id, ...}):
 *   open {transport, count, channels, ...}    opens `count` watches spread over `channels` distinct
 *        grpc: {port, deliveryId}             connections; replies once each has its first message
 *        firehose: {port}
 *        nats-kv: {url, bucket, key}          (the snapshot; core NATS has none: once the server
 *        nats-core: {url, subject}            has every subscription)
 *   stats {acks: [[version, ackNs, sentNs]...]} latencies from each ack (and send) to each receipt
 *   closeAll {closeChannels}                  cancels every watch (and closes the connections)
 *   usage                                     process.cpuUsage(), event loop utilisation
 *   stop                                      cancels everything and exits
 * Unsolicited: {type: "all", version, lastNs} when every open watch has a version (for the
 * firehose, `version` is the key "<delivery id>:<version>").
 */
import grpc from "@grpc/grpc-js";
import { DeliveryServiceClient, WatchDeliveriesResponse, WatchDeliveryResponse } from "../dist/gen/delivery/v1/delivery.js";

const nowNs = () => Number(process.hrtime.bigint());
const FLOW_CONTROL_WINDOW = Number(process.env.BENCH_FLOW_WINDOW ?? 16 * 1024 * 1024);
/** The open connections: gRPC clients or NATS connections, and what they point at. */
let connections = { key: "", list: [] };
/** The open watches: each has cancel() and `last`, the last version it got (0 before any). */
let watches = [];
let open = 0;
/** version -> receipt times (ns) */
let receipts = new Map();
let snapshots = 0;
/** Called on every snapshot while watches are being opened. */
let onSnapshot = () => {};
let errors = 0;
let firstError;
let lastMessageBytes = 0;
let missedVersions = 0;
let repeatedVersions = 0;
let maxMissedPerStream = 0;

async function closeConnections() {
  const list = connections.list;
  connections = { key: "", list: [] };
  await Promise.all(list.map((c) => c.close()));
}

/** `channels` connections for `key`, made by `make(i)`; reused while the key and count stay the same. */
async function connectionsFor(key, channels, make) {
  if (connections.key !== key || connections.list.length !== channels) {
    await closeConnections();
    connections = { key, list: await Promise.all(Array.from({ length: channels }, (_, i) => make(i))) };
  }
  return connections.list;
}

function grpcClient(port) {
  const client = new DeliveryServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_receive_message_length": 16 * 1024 * 1024,
    // HTTP/2 connection window: with grpc-js's default (64 KiB) each connection carries only ~260
    // updates of 250 B per window-update round trip, and at W=5,000 x 10/s the client's flow control,
    // not the server, decides the latency (p99 of 1.2-1.7 s for both servers on 2 cores).
    "grpc-node.flow_control_window": FLOW_CONTROL_WINDOW,
  });
  return { client, close: () => client.close() };
}

/** A watch's first message. */
function snapshotReceived(watch, version) {
  watch.last = version;
  snapshots++;
  onSnapshot();
}

/**
 * An update: its receipt time, unless the watch had it already; gaps are counted.
 * `key`: what the receipt is filed under (the version, or the firehose's "<id>:<version>").
 */
function updateReceived(watch, version, t, bytes, key = version) {
  if (watch.last !== 0 && version !== watch.last + 1) {
    if (version <= watch.last) {
      repeatedVersions++;
      return;
    }
    const missed = version - watch.last - 1;
    missedVersions += missed;
    maxMissedPerStream = Math.max(maxMissedPerStream, missed);
  }
  watch.last = version;
  let times = receipts.get(key);
  if (!times) receipts.set(key, (times = []));
  times.push(t);
  if (times.length === open) {
    if (!lastMessageBytes) lastMessageBytes = bytes();
    if (process.connected) process.send({ type: "all", version: key, lastNs: t });
  }
}

/** A firehose change: the same checks per delivery (a watch's last version of each delivery it has seen). */
function changeReceived(watch, deliveryId, version, t, bytes) {
  const perDelivery = { last: watch.byDelivery.get(deliveryId) ?? 0 };
  updateReceived(perDelivery, version, t, bytes, `${deliveryId}:${version}`);
  watch.byDelivery.set(deliveryId, perDelivery.last);
}

function failed(text) {
  errors++;
  firstError ??= text;
}

/** Transports: connect(target, i) -> connection; watch(connection, target) -> {cancel(), last}, started. */
const TRANSPORTS = {
  grpc: {
    key: (t) => `grpc:${t.port}`,
    connect: (t) => grpcClient(t.port),
    watch({ client }, { deliveryId }) {
      const call = client.watchDelivery({ deliveryId, afterVersion: undefined });
      const watch = { last: 0, cancel: () => call.cancel() };
      call.on("data", (message) => {
        const t = nowNs();
        const version = Number(message.delivery.version);
        if (!message.event) snapshotReceived(watch, version);
        else updateReceived(watch, version, t, () => WatchDeliveryResponse.encode(message).finish().length);
      });
      call.on("error", (error) => {
        if (error.code === grpc.status.CANCELLED) return;
        failed(`${grpc.status[error.code] ?? error.code}: ${error.details}`);
      });
      return watch;
    },
  },
  firehose: {
    key: (t) => `grpc:${t.port}`,
    connect: (t) => grpcClient(t.port),
    watch({ client }) {
      const call = client.watchDeliveries({ statuses: [], resumeToken: "", includeSnapshot: false });
      const watch = { last: 0, byDelivery: new Map(), cancel: () => call.cancel() };
      call.on("data", (message) => {
        const t = nowNs();
        const kind = message.kind;
        if (kind?.$case === "change") {
          const event = kind.change.event;
          changeReceived(watch, event.deliveryId, Number(event.version), t, () => WatchDeliveriesResponse.encode(message).finish().length);
        } else if (kind?.$case === "caughtUp" && watch.last === 0) snapshotReceived(watch, 1);
      });
      call.on("error", (error) => {
        if (error.code === grpc.status.CANCELLED) return;
        failed(`${grpc.status[error.code] ?? error.code}: ${error.details}`);
      });
      return watch;
    },
  },
  "nats-kv": {
    key: (t) => `nats-kv:${t.url}:${t.bucket}`,
    async connect({ url, bucket }, i) {
      const [{ connect }, { Kvm }] = await Promise.all([import("@nats-io/transport-node"), import("@nats-io/kv")]);
      const nc = await connect({ servers: url, name: `bench watchers ${process.pid}-${i}` });
      const kv = await new Kvm(nc).open(bucket);
      return { nc, kv, close: () => nc.close() };
    },
    watch({ kv }, { key }) {
      const watch = {
        last: 0,
        cancelled: false,
        iterator: undefined,
        cancel() {
          watch.cancelled = true;
          watch.iterator?.stop();
        },
      };
      kv.watch({ key })
        .then(async (iterator) => {
          watch.iterator = iterator;
          if (watch.cancelled) return iterator.stop();
          for await (const entry of iterator) {
            if (entry.operation !== "PUT") continue;
            if (watch.last === 0) {
              snapshotReceived(watch, entry.revision);
              continue;
            }
            const value = entry.value;
            WatchDeliveryResponse.decode(value);
            updateReceived(watch, entry.revision, nowNs(), () => value.length);
          }
        })
        .catch((error) => failed(`kv.watch: ${error?.message ?? error}`));
      return watch;
    },
  },
  "nats-core": {
    key: (t) => `nats-core:${t.url}`,
    async connect({ url }, i) {
      const { connect } = await import("@nats-io/transport-node");
      const nc = await connect({ servers: url, name: `bench watchers ${process.pid}-${i}` });
      return { nc, close: () => nc.close() };
    },
    watch({ nc }, { subject }) {
      const watch = { last: 0, cancel: () => sub.unsubscribe() };
      const sub = nc.subscribe(subject, {
        callback: (error, msg) => {
          if (error) return failed(`subscribe: ${error.message}`);
          const data = msg.data;
          const version = Number(WatchDeliveryResponse.decode(data).delivery.version);
          // No snapshot in core NATS: the first message (watch.last still 0) sets where the watch starts.
          updateReceived(watch, version, nowNs(), () => data.length);
        },
      });
      return watch;
    },
    /** A subscription is live once the server has it: a flush (PING/PONG) after the SUBs. */
    started: (list) => Promise.all(list.map((c) => c.nc.flush())),
  },
};

/**
 * Opens the watches `batch` at a time (each batch once every watch in it has
 * its snapshot), as clients arriving over a short while would, rather than in
 * one burst whose transient allocations would stay in the server's RSS.
 */
async function openWatches(target) {
  const { count, channels, batch = 250 } = target;
  const transport = TRANSPORTS[target.transport];
  if (!transport) throw new Error(`unknown transport ${target.transport}`);
  const chosen = await connectionsFor(transport.key(target), channels, (i) => transport.connect(target, i));
  const started = nowNs();
  snapshots = 0;
  open = count;
  receipts = new Map();
  missedVersions = 0;
  repeatedVersions = 0;
  maxMissedPerStream = 0;
  let requested = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`only ${snapshots}/${count} watches started in 60 s (${errors} failed, first: ${firstError})`)),
      60_000,
    );
    const finish = () => {
      clearTimeout(timer);
      onSnapshot = () => {};
      resolve({ opened: count, ms: (nowNs() - started) / 1e6 });
    };
    const openBatch = () => {
      const until = Math.min(count, requested + batch);
      const from = requested;
      for (; requested < until; requested++) watches.push(transport.watch(chosen[requested % chosen.length], target));
      if (transport.started) {
        // No snapshot to wait for: the batch is open once the server has its subscriptions.
        transport.started(chosen).then(() => {
          snapshots += requested - from;
          check();
        }, reject);
      }
    };
    const check = () => {
      if (snapshots < requested) return;
      if (requested < count) return openBatch();
      finish();
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
    missedVersions,
    repeatedVersions,
    maxMissedPerStream,
    errors,
    firstError,
  };
}

function closeAll() {
  for (const watch of watches) watch.cancel();
  watches = [];
  open = 0;
  receipts = new Map();
}

process.on("disconnect", () => process.exit(0));
process.on("message", async (message) => {
  const reply = (body) => process.connected && process.send({ id: message.id, ...body });
  try {
    switch (message.op) {
      case "open":
        reply(await openWatches(message));
        break;
      case "stats":
        reply(stats(message.acks));
        break;
      case "closeAll":
        closeAll();
        // Cancelling thousands of streams at once reads as a reset flood to the server's HTTP/2
        // session (it then fails the session); new channels for the next watches avoid it.
        if (message.closeChannels) await closeConnections();
        reply({});
        break;
      case "usage":
        reply({ cpu: process.cpuUsage(), elu: performance.eventLoopUtilization(), mem: process.memoryUsage() });
        break;
      case "stop":
        closeAll();
        await Promise.race([closeConnections(), new Promise((resolve) => setTimeout(resolve, 2_000))]);
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
