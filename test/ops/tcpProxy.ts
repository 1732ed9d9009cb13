/**
 * A TCP proxy in front of a private Redis, for tests that need Redis traffic
 * to stop at a known point instead of "probably by now":
 *
 * - holdRequests(match): the first client->Redis chunk that matches (and all
 *   later bytes of that connection) is held until release(); `held` resolves
 *   when it arrived. A request is then provably in flight in the service.
 * - dropNextMessage(channel): the next sharded Pub/Sub message on a channel is removed
 *   from the Redis->client stream, the way a subscriber that silently misses
 *   a message would see it.
 *
 * Messages are recognised in RESP2 (`*3` array) and RESP3 (`>3` push, what
 * ioredis 6 negotiates with HELLO 3) framing.
 */
import net from "node:net";

export interface Hold {
  /** Resolves when a matching request reached the proxy (and was held). */
  readonly held: Promise<void>;
  /** Forwards everything held and stops holding. Idempotent. */
  release(): void;
}

export interface TcpProxy {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  holdRequests(match: (chunk: Buffer) => boolean): Hold;
  /** Resolves once the next message published on `channel` has been dropped. */
  dropNextMessage(channel: string): Promise<void>;
  close(): Promise<void>;
}

interface Connection {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** Bytes of a dropped message still to skip in the Redis->client direction. */
  skip: number;
}

export async function startTcpProxy(targetPort: number, targetHost = "127.0.0.1"): Promise<TcpProxy> {
  const connections = new Set<Connection>();
  let hold: { match: (chunk: Buffer) => boolean; on?: Connection; queue: Buffer[]; arrived: () => void } | undefined;
  let drop: { header: Buffer; dropped: () => void } | undefined;

  const toUpstream = (c: Connection, chunk: Buffer) => {
    if (hold && (hold.on === c || (!hold.on && hold.match(chunk)))) {
      if (!hold.on) {
        hold.on = c;
        hold.arrived();
      }
      hold.queue.push(chunk);
      return;
    }
    c.upstream.write(chunk);
  };

  const toClient = (c: Connection, chunk: Buffer) => {
    if (c.skip > 0) {
      const skipped = Math.min(c.skip, chunk.length);
      c.skip -= skipped;
      chunk = chunk.subarray(skipped);
    }
    if (drop && chunk.length > 0) {
      // (*3|>3)\r\n$8\r\nsmessage\r\n$<len>\r\n<channel>\r\n$<len>\r\n<payload>\r\n (sharded Pub/Sub)
      const found = chunk.indexOf(drop.header);
      const start = found - 4;
      const kind = found >= 4 ? chunk.subarray(start, found).toString("latin1") : "";
      if (kind === "*3\r\n" || kind === ">3\r\n") {
        const lengthAt = found + drop.header.length;
        const lineEnd = chunk.indexOf("\r\n", lengthAt);
        if (lineEnd < 0) throw new Error("tcpProxy: message header split across chunks (not supported)");
        const payloadLength = Number(chunk.subarray(lengthAt, lineEnd).toString("latin1"));
        const frameEnd = lineEnd + 2 + payloadLength + 2;
        const kept = Buffer.concat([chunk.subarray(0, start), chunk.subarray(Math.min(frameEnd, chunk.length))]);
        c.skip = Math.max(0, frameEnd - chunk.length);
        const { dropped } = drop;
        drop = undefined;
        dropped();
        chunk = kept;
      }
    }
    if (chunk.length > 0) c.client.write(chunk);
  };

  const server = net.createServer((client) => {
    const upstream = net.connect({ host: targetHost, port: targetPort });
    const c: Connection = { client, upstream, skip: 0 };
    connections.add(c);
    client.on("data", (chunk: Buffer) => toUpstream(c, chunk));
    upstream.on("data", (chunk: Buffer) => toClient(c, chunk));
    const teardown = () => {
      connections.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on("close", teardown);
    upstream.on("close", teardown);
    client.on("error", teardown);
    // Redis down: reset the client's connection, as a refused connect would look, rather than close it cleanly.
    upstream.on("error", () => {
      client.resetAndDestroy();
      teardown();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    holdRequests(match) {
      if (hold) throw new Error("tcpProxy: one hold at a time");
      let arrived!: () => void;
      const held = new Promise<void>((resolve) => (arrived = resolve));
      const current = { match, queue: [] as Buffer[], arrived, on: undefined as Connection | undefined };
      hold = current;
      return {
        held,
        release() {
          if (hold !== current) return;
          hold = undefined;
          if (current.on && !current.on.upstream.destroyed) for (const chunk of current.queue) current.on.upstream.write(chunk);
        },
      };
    },
    dropNextMessage(channel) {
      if (drop) throw new Error("tcpProxy: one drop at a time");
      const name = Buffer.from(channel);
      const header = Buffer.concat([Buffer.from(`$8\r\nsmessage\r\n$${name.length}\r\n`), name, Buffer.from("\r\n$")]);
      return new Promise<void>((resolve) => {
        drop = { header, dropped: resolve };
      });
    },
    async close() {
      for (const c of connections) {
        c.client.destroy();
        c.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
