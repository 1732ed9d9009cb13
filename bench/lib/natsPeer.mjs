/**
 * NATS as a peer of the service in the fanout and memory sections: the same
 * shape as bench/lib/watchSetup.mjs (server, watchers, whenAll, command,
 * open, close), around a fresh nats-server per trial.
 *
 * Peers (their key is the JSON prefix):
 *   nats       JetStream KV bucket, memory storage: W kv.watch({key}) of one key, kv.put() as the command
 *   nats_file  the same with file storage (the default), in the server's temporary -sd directory
 *   nats_core  core NATS: W subscriptions of one subject, publish + flush (PING/PONG) as the command
 *
 * What is the same as our side: the watcher processes and connections (one
 * NATS connection per channel), the payload (an encoded WatchDeliveryResponse
 * update of the bare server's, so the same byte size as ours, decoded by each
 * watcher), the cadence and the latency definitions (from the put's
 * acknowledgement, and from its send, to each watcher's receipt).
 *
 * Read "from send" to compare with ours: nats-server acknowledges a put on
 * other threads while it fans out (3 ms at W=5,000), whereas our service's
 * acknowledgement waits behind the fan-out on its one event loop (40 ms at
 * W=5,000), so "from ack" starts NATS's clock earlier.
 *
 * History: a KV watch is an ordered push consumer reading the bucket's stream.
 * It gets every revision only while it is less than `history` revisions
 * behind: the stream keeps `history` messages per key, and a revision
 * discarded before the consumer reached it is skipped without any signal (the
 * consumer's delivery sequence has no gap). With 2,000 pipelined puts, 200
 * live watchers skipped most of them with history 1 and with history 64 alike.
 * Here a watcher is at most a few revisions behind (10 puts/s, or one put at a
 * time in the closed loop), so history 64 (the KV maximum) suffices; every
 * watcher counts skipped and repeated revisions to show it.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { benchId, encodeUpdate } from "./fixtures.mjs";
import { natsServerVersion, startNats } from "./natsServer.mjs";
import { startTogether } from "./watchSetup.mjs";
import { nowNs } from "./stats.mjs";

export const NATS_PEERS = {
  nats: { label: "NATS KV (memory)", transport: "nats-kv", storage: "memory" },
  nats_file: { label: "NATS KV (file)", transport: "nats-kv", storage: "file" },
  nats_core: { label: "core NATS", transport: "nats-core" },
};
/** The most a KV bucket keeps per key. */
export const NATS_KV_HISTORY = 64;
const BUCKET = "bench";
const KEY = "delivery";
const SUBJECT = "bench.delivery";

/**
 * The context's NATS part: which peers run (`wanted`, a list of NATS_PEERS
 * keys), the nats-server version, or why none run.
 */
export function natsContext(wanted) {
  const version = natsServerVersion();
  const peers = wanted.filter((p) => NATS_PEERS[p]);
  const status = peers.length === 0 ? "not run (--nats none)" : version ? "ok" : "nats-server not found";
  return {
    version,
    status,
    /** The peers that run (none without nats-server). */
    peers: status === "ok" ? peers : [],
    history: NATS_KV_HISTORY,
    start: () => startNats(),
  };
}

/** A nats-server as a measured server: usage() like a server child's (CPU in µs; no event loop). */
function measuredNats(nats) {
  return {
    ...nats,
    usage: async () => ({ cpu: { user: nats.cpuMicros(), system: 0 }, elu: undefined }),
  };
}

export async function natsWatchSetup(ctx, peer, W, run) {
  const { transport, storage } = NATS_PEERS[peer];
  const { connect } = await import("@nats-io/transport-node");
  ctx.debug(`${peer} W=${W}: starting processes`);
  const [nats, watchers] = await startTogether([ctx.nats.start(), ctx.startWatcherPool()]);
  const server = measuredNats(nats);
  let nc;
  const close = async () => {
    await nc?.close().catch(() => {});
    await watchers.stop();
    await nats.stop();
    ctx.debug("stopped");
  };
  try {
    nc = await connect({ servers: nats.url, name: `bench commands (${peer}, run ${run + 1})` });
    const id = benchId("n");
    let version = 0;
    let command;
    let target;
    let watchCount;
    if (transport === "nats-kv") {
      const { Kvm } = await import("@nats-io/kv");
      const kv = await new Kvm(nc).create(BUCKET, { storage, history: NATS_KV_HISTORY });
      // The key's first value: what a new watch gets first (its snapshot).
      version = await kv.put(KEY, encodeUpdate(id, 1));
      command = async () => {
        const sentNs = nowNs();
        // Revisions follow the call order (one connection), so the next one is known for the payload.
        const revision = await kv.put(KEY, encodeUpdate(id, ++version));
        const ackNs = nowNs();
        return { version: revision, ackNs, sentNs };
      };
      target = { transport, url: nats.url, bucket: BUCKET, key: KEY };
      // Every kv.watch is a consumer of the bucket's stream (closed ones linger, inactive, for 5 min).
      watchCount = async () => (await kv.status()).streamInfo.state.consumer_count;
    } else {
      command = async () => {
        const sentNs = nowNs();
        const n = ++version;
        nc.publish(SUBJECT, encodeUpdate(id, n));
        // Core NATS has no acknowledgement: the PONG of a flush means the server has taken the publish.
        await nc.flush();
        const ackNs = nowNs();
        return { version: n, ackNs, sentNs };
      };
      target = { transport, url: nats.url, subject: SUBJECT };
      watchCount = async () => (await nats.varz()).subscriptions;
    }
    const open = async (count) => {
      const before = await watchCount();
      const opened = await watchers.open(target, count);
      const after = await watchCount();
      if (after - before !== count) throw new Error(`${peer}: nats-server has ${after - before} new watches, expected ${count}`);
      return opened;
    };

    // Warm-up, as for our servers: a watch, a push and a cancel, then idle.
    await open(Math.min(W, 50));
    await watchers.whenAll((await command()).version);
    await watchers.closeAll();
    await sleep(200);
    ctx.debug("started and warmed up");
    return { kind: peer, server, watchers, whenAll: watchers.whenAll, command, open, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** The rows comparing ours with each NATS peer (or why there are none). */
export function natsPeerRows(piece, perPeer) {
  if (piece.nats_status !== undefined && piece.nats_status !== "ok") return [[`  vs NATS`, piece.nats_status, "", "", ""]];
  const rows = [];
  for (const [peer, { label }] of Object.entries(NATS_PEERS)) {
    if (piece[`${peer}_error`] !== undefined) rows.push([`  vs ${label}`, `failed: ${piece[`${peer}_error`]}`.slice(0, 100), "", "", ""]);
    rows.push(...perPeer(peer, label));
  }
  return rows;
}
