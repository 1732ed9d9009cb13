import { hash, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import {
  decide,
  type Delivery,
  type DeliveryCommand,
  DeliveryNotFound,
  DomainError,
  evolve,
  initialState,
  isTerminal,
  type RecordedEvent,
  RequestIdReused,
  VersionConflict,
  VersionNotFound,
} from "../domain/index.js";
import type { DeliveryPage, EventStore, FeedChange, ListQuery, PriorRequest } from "../store/eventStore.js";
import { nameBasedUuid } from "./nameBasedUuid.js";

export interface CommandOptions {
  /** When set, the command applies only at this version (else VersionConflict). */
  readonly expectedVersion?: number;
  /** The caller's idempotency key. */
  readonly requestId?: string;
  /** The authenticated principal recording the command ("" or absent: authentication is off). */
  readonly actor?: string;
}

export interface DeliveryAppDeps {
  readonly store: EventStore;
  readonly now?: () => number;
  /** How long optimistic retries may go on under contention before VersionConflict. */
  readonly contentionBudgetMs?: number;
  /** Called once per newly appended event (not for replayed retries), with the feed entry it added. */
  readonly onAppended?: (record: RecordedEvent, change: FeedChange) => void;
  /** How many states of deliveries this process last changed it keeps to decide on (0: none). */
  readonly recentStates?: number;
}

/**
 * The states this process last appended, newest last (a Map keeps insertion
 * order): a command on one of them is decided without reading the store
 * first. Never trusted for an answer: an append on a state that another
 * replica has moved past meets a conflict (the store checks the version), and
 * a refusal decided on it is decided again on the stored state. Only
 * unfinished deliveries: retention may delete a finished one.
 */
class RecentStates {
  private readonly states = new Map<string, Delivery>();
  constructor(private readonly capacity: number) {}
  get(id: string): Delivery | undefined {
    return this.states.get(id);
  }
  remember(delivery: Delivery): void {
    this.states.delete(delivery.id);
    if (this.capacity === 0 || isTerminal(delivery.status)) return;
    this.states.set(delivery.id, delivery);
    if (this.states.size > this.capacity) this.states.delete(this.states.keys().next().value!);
  }
  forget(id: string): void {
    this.states.delete(id);
  }
}

export interface DeliveryApp {
  /** The id a create without a client-chosen id gets: name-based on request_id, else random. */
  newDeliveryId(requestId: string | undefined): string;
  execute(deliveryId: string, command: DeliveryCommand, options?: CommandOptions): Promise<RecordedEvent>;
  get(deliveryId: string, atVersion?: number): Promise<Delivery>;
  list(query: ListQuery): Promise<DeliveryPage>;
  events(deliveryId: string, afterVersion: number, limit: number): Promise<readonly RecordedEvent[]>;
}

/**
 * What a retry must repeat to be one: the command and, when authentication is
 * on, who sends it (a principal reusing another's request_id is refused).
 * Without an actor the hash is the one release 1 stored.
 */
function fingerprintOf(command: DeliveryCommand, actor: string): string {
  const scope = actor === "" ? JSON.stringify(command) : JSON.stringify({ command, actor });
  // One-shot hash (no Hash object): the same digest, about half the time for input this small.
  return hash("sha256", scope, "base64url").slice(0, 22);
}

/**
 * The application service: load, decide, evolve, append, with optimistic
 * concurrency and request idempotency. Any number of replicas: what one
 * remembers of its own appends (RecentStates) only spares it a read.
 */
export function createDeliveryApp({ store, now = Date.now, contentionBudgetMs = 5_000, onAppended, recentStates = 10_000 }: DeliveryAppDeps): DeliveryApp {
  const recent = new RecentStates(recentStates);
  async function replay(deliveryId: string, requestId: string, prior: PriorRequest, fingerprint: string) {
    if (prior.fingerprint !== fingerprint) throw new RequestIdReused(deliveryId, requestId);
    const record = await store.readAt(deliveryId, prior.version);
    if (!record) throw new Error(`request ${requestId} points at missing version ${prior.version} of ${deliveryId}`);
    return record;
  }

  return {
    newDeliveryId: (requestId) => (requestId ? nameBasedUuid(requestId) : randomUUID()),

    async execute(deliveryId, command, { expectedVersion, requestId, actor = "" } = {}) {
      const fingerprint = fingerprintOf(command, actor);
      // The deadline runs on a monotonic clock, independent of the (injectable) event clock.
      const deadline = performance.now() + contentionBudgetMs;
      for (let attempt = 0; ; attempt++) {
        // A client's expected version is checked against the stored state, never a remembered one. A
        // create on an id this process does not know is decided on none: the append finds an existing
        // delivery (a conflict) or a recorded request_id (a duplicate) as a read would, one round trip less.
        const remembered =
          attempt === 0 && expectedVersion === undefined
            ? (recent.get(deliveryId) ?? (command.type === "CreateDelivery" ? initialState : undefined))
            : undefined;
        const { state, prior } = remembered ? { state: remembered, prior: undefined } : await store.load(deliveryId, requestId || undefined);
        if (prior) return replay(deliveryId, requestId!, prior, fingerprint);
        // An unknown delivery is NOT_FOUND whatever version the caller expected.
        if (state.status === "NONE" && command.type !== "CreateDelivery") throw new DeliveryNotFound(deliveryId);
        if (expectedVersion !== undefined && expectedVersion !== state.version) {
          throw new VersionConflict(deliveryId, state.version, expectedVersion);
        }
        const decided = decide(deliveryId, command, state);
        if (decided instanceof DomainError) {
          // Refused on a remembered state: decided again on the stored one (and its request ids).
          if (remembered) continue;
          throw decided;
        }
        const version = state.version + 1;
        const event = { deliveryId, version, occurredAtMs: now(), requestId: requestId ?? "", actor, data: decided };
        const record = { event, delivery: evolve(state, event) };
        // Without a client request_id the store still dedupes a resent append (lost reply) with a private key.
        const result = await store.append({ record, expectedVersion: state.version, previousStatus: state.status, fingerprint });
        if (result.outcome === "appended") {
          recent.remember(record.delivery);
          onAppended?.(record, result.change);
          return record;
        }
        if (result.outcome === "duplicate") return replay(deliveryId, requestId ?? "", result.prior, fingerprint);
        recent.forget(deliveryId);
        // A remembered state another replica moved past: not contention, read the stored one at once.
        if (remembered) continue;
        if (expectedVersion !== undefined || performance.now() >= deadline) {
          throw new VersionConflict(deliveryId, result.currentVersion, expectedVersion);
        }
        // Jittered backoff spreads contenders so one of them wins each round.
        await delay(Math.random() * Math.min(2 ** attempt, 20));
      }
    },

    async get(deliveryId, atVersion) {
      if (atVersion === undefined) {
        const { state } = await store.load(deliveryId);
        if (state.status === "NONE") throw new DeliveryNotFound(deliveryId);
        return state;
      }
      const record = await store.readAt(deliveryId, atVersion);
      if (record) return record.delivery;
      const { state } = await store.load(deliveryId);
      if (state.status === "NONE") throw new DeliveryNotFound(deliveryId);
      throw new VersionNotFound(deliveryId, atVersion, state.version);
    },

    list: (query) => store.list(query),

    async events(deliveryId, afterVersion, limit) {
      const records = await store.readAfter(deliveryId, afterVersion, limit);
      if (records.length === 0) {
        const { state } = await store.load(deliveryId);
        if (state.status === "NONE") throw new DeliveryNotFound(deliveryId);
      }
      return records;
    },
  };
}
