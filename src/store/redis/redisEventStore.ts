import type { Redis } from "ioredis";
import { type Delivery, type DeliveryState, initialState, InvalidInput, type RecordedEvent } from "../../domain/index.js";
import { decodeDeliveryJson, decodeEventJson, encodeDeliveryJson, encodeEventJson } from "../../mapping/protoMapping.js";
import type { AppendInput, AppendResult, DeliveryPage, EventStore, LoadedDelivery, PriorRequest } from "../eventStore.js";
import { createRedisKeys } from "./keys.js";
import { callRedis } from "./redisErrors.js";
import { registerScripts } from "./scripts.js";

export interface RedisEventStoreDeps {
  /** A command connection; the store never closes a connection it was given. */
  readonly redis: Redis;
  /** Namespaces every key and channel (tests use a random one). */
  readonly keyPrefix?: string;
}

const STREAM_ID = /^(\d{1,20})-(\d{1,20})$/;
const U64_MAX = 2n ** 64n - 1n;

/** A stream ID Redis accepts after "(": both parts within 64 bits and not the very last ID. */
function isCursor(cursor: string): boolean {
  const match = STREAM_ID.exec(cursor);
  if (!match) return false;
  const ms = BigInt(match[1]!);
  const seq = BigInt(match[2]!);
  return ms <= U64_MAX && seq <= U64_MAX && !(ms === U64_MAX && seq === U64_MAX);
}

function parsePrior(value: string): PriorRequest {
  const colon = value.indexOf(":");
  return { version: Number(value.slice(0, colon)), fingerprint: value.slice(colon + 1) };
}

type StreamEntry = [id: string, fields: string[]];

function recordFromEntry([, fields]: StreamEntry): RecordedEvent {
  let event: string | undefined;
  let delivery: string | undefined;
  for (let i = 0; i < fields.length; i += 2) {
    if (fields[i] === "event") event = fields[i + 1];
    else if (fields[i] === "delivery") delivery = fields[i + 1];
  }
  if (event === undefined || delivery === undefined) throw new Error("log entry lacks event or delivery");
  return { event: decodeEventJson(event), delivery: decodeDeliveryJson(delivery) };
}

export function createRedisEventStore({ redis, keyPrefix = "" }: RedisEventStoreDeps): EventStore {
  const keys = createRedisKeys(keyPrefix);
  const runScript = registerScripts(redis);

  /** Several HGETs sent together (auto-pipelined on the service's connection): one round trip. */
  function hgetMany(fields: readonly (readonly [key: string, field: string])[]): Promise<(string | null)[]> {
    return callRedis(() => Promise.all(fields.map(([key, field]) => redis.hget(key, field))));
  }

  return {
    async load(deliveryId, requestKey): Promise<LoadedDelivery> {
      const k = keys.delivery(deliveryId);
      const [stateJson, prior] = await hgetMany(
        requestKey === undefined ? [[k.state, "delivery"]] : [[k.state, "delivery"], [k.requests, requestKey]],
      );
      const state: DeliveryState = stateJson ? decodeDeliveryJson(stateJson) : initialState;
      return prior ? { state, prior: parsePrior(prior) } : { state };
    },

    async append({ record, expectedVersion, requestKey, fingerprint }): Promise<AppendResult> {
      const id = record.event.deliveryId;
      const k = keys.delivery(id);
      const args = JSON.stringify({
        id,
        expectedVersion: String(expectedVersion),
        version: String(record.event.version),
        requestKey,
        fingerprint,
        event: encodeEventJson(record.event),
        delivery: encodeDeliveryJson(record.delivery),
        channel: keys.channel(id),
      });
      const [outcome, value] = (await callRedis(() =>
        runScript("appendEvent", [k.events, k.state, k.requests, keys.index], [args]),
      )) as [string, string];
      switch (outcome) {
        case "appended":
          return { outcome };
        case "conflict":
          return { outcome, currentVersion: Number(value) };
        case "duplicate":
          return { outcome, prior: parsePrior(value) };
        default:
          throw new Error(`appendEvent replied ${outcome}`);
      }
    },

    async readAt(deliveryId, version) {
      const entries = (await callRedis(() =>
        redis.xrange(keys.delivery(deliveryId).events, `${version}-0`, `${version}-0`),
      )) as StreamEntry[];
      return entries[0] ? recordFromEntry(entries[0]) : undefined;
    },

    async readAfter(deliveryId, afterVersion, limit) {
      const entries = (await callRedis(() =>
        redis.xrange(keys.delivery(deliveryId).events, `(${afterVersion}-0`, "+", "COUNT", limit),
      )) as StreamEntry[] | null;
      // COUNT 0 replies nil.
      return (entries ?? []).map(recordFromEntry);
    },

    async list(cursor, limit): Promise<DeliveryPage> {
      if (cursor !== undefined && !isCursor(cursor)) throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
      const start = cursor === undefined ? "-" : `(${cursor}`;
      // One more than asked tells whether a next page exists.
      const entries = (await callRedis(() => redis.xrange(keys.index, start, "+", "COUNT", limit + 1))) as StreamEntry[];
      const page = entries.slice(0, limit);
      const ids = page.map(([, fields]) => fields[1] ?? "");
      const states = await hgetMany(ids.map((id) => [keys.delivery(id).state, "delivery"] as const));
      const deliveries: Delivery[] = [];
      for (const json of states) if (json) deliveries.push(decodeDeliveryJson(json));
      const last = page.at(-1);
      return entries.length > limit && last ? { deliveries, nextCursor: last[0] } : { deliveries };
    },

    async currentVersions(deliveryIds) {
      if (deliveryIds.length === 0) return [];
      const versions = await hgetMany(deliveryIds.map((id) => [keys.delivery(id).state, "version"] as const));
      return versions.map((v) => (v ? Number(v) : 0));
    },

    async close() {
      // The connection belongs to the caller.
    },
  };
}
