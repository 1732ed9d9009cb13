/**
 * A recorder around a real WatchDelivery client stream: every message it
 * receives, the first one as a promise, and how the stream ended.
 *
 *   const w = watch(client, { deliveryId, afterVersion: 0 });
 *   await w.first;                          // open and registered server side
 *   const end = await within(w.ended, "the end of the watch");
 */
import { type ClientReadableStream, type Metadata, status, type StatusObject } from "@grpc/grpc-js";
import { type DeliveryServiceClient, WatchDeliveryRequest, type WatchDeliveryResponse } from "../../src/gen/delivery/v1/delivery.js";

/** The final status of a watch. */
export interface WatchEnd {
  readonly code: status;
  readonly details: string;
  /** The trailers (grpc-status-details-bin: see statusDetails.ts). */
  readonly metadata: Metadata;
}

/** What a watch has received so far, and how it ended. */
export interface WatchRecorder {
  readonly stream: ClientReadableStream<WatchDeliveryResponse>;
  readonly messages: WatchDeliveryResponse[];
  /** Resolves with the first message (the stream is open and registered server side); rejects if the watch ends without one. */
  readonly first: Promise<WatchDeliveryResponse>;
  /** The version of each message: the event's, or the delivery's for a snapshot. */
  versions(): number[];
  /** The version of the last message, 0 before any. */
  lastVersion(): number;
  /** The final status, once every message before it has been read. */
  readonly ended: Promise<WatchEnd>;
  /** The final status once `ended` has resolved, undefined before. */
  readonly endedWith: WatchEnd | undefined;
  cancel(): void;
}

/** Opens a watch and records everything it receives; `paused` leaves the stream unread until `stream.resume()`. */
export function watch(
  client: DeliveryServiceClient,
  request: { deliveryId: string; afterVersion?: bigint | number },
  options: { paused?: boolean } = {},
): WatchRecorder {
  const stream = client.watchDelivery(
    WatchDeliveryRequest.fromPartial({
      deliveryId: request.deliveryId,
      afterVersion: request.afterVersion === undefined ? undefined : BigInt(request.afterVersion),
    }),
  );
  const messages: WatchDeliveryResponse[] = [];
  let resolveFirst!: (message: WatchDeliveryResponse) => void;
  let rejectFirst!: (error: Error) => void;
  const first = new Promise<WatchDeliveryResponse>((resolve, reject) => {
    resolveFirst = resolve;
    rejectFirst = reject;
  });
  // Callers that only look at `ended` must not see an unhandled rejection here.
  first.catch(() => {});
  let endedWith: WatchEnd | undefined;
  let statusSeen: StatusObject | undefined;
  let streamEnded = false;
  const ended = new Promise<WatchEnd>((resolve) => {
    // OK: 'status' can come before the last 'data' is read; wait for 'end' too.
    const settle = () => {
      if (!statusSeen || endedWith) return;
      if (statusSeen.code === status.OK && !streamEnded) return;
      endedWith = { code: statusSeen.code, details: statusSeen.details, metadata: statusSeen.metadata };
      if (messages.length === 0) rejectFirst(Object.assign(new Error(`watch ended: ${status[endedWith.code]} ${endedWith.details}`), endedWith));
      resolve(endedWith);
    };
    stream.on("status", (s: StatusObject) => {
      statusSeen = s;
      settle();
    });
    stream.on("end", () => {
      streamEnded = true;
      settle();
    });
    stream.on("error", () => {
      // Reported through 'status'.
    });
  });
  stream.on("data", (message: WatchDeliveryResponse) => {
    messages.push(message);
    if (messages.length === 1) resolveFirst(message);
  });
  if (options.paused) stream.pause();
  const versionOf = (m: WatchDeliveryResponse) => Number(m.event?.version ?? m.delivery?.version ?? -1n);
  return {
    stream,
    messages,
    first,
    versions: () => messages.map(versionOf),
    lastVersion: () => {
      const last = messages.at(-1);
      return last ? versionOf(last) : 0;
    },
    ended,
    get endedWith() {
      return endedWith;
    },
    cancel: () => stream.cancel(),
  };
}
