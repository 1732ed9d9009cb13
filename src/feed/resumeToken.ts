/**
 * WatchDeliveries resume tokens: a position in every partition's change feed,
 * bound to the filter it was issued for. Opaque to clients (base64url JSON).
 *
 * Expiry: a position is safe while nothing after it can have been trimmed.
 * Entries after a partition's position are at least as new as the position
 * itself, and, where the watcher had read the partition to its end when the
 * token was issued, at least as new as the token. So a token is refused
 * (OUT_OF_RANGE) when, for some partition, both its position and (if it was
 * at the end) the token's time are older than the feed's retention.
 */
import { type DeliveryStatus, InvalidInput, ResumeTokenExpired } from "../domain/index.js";

const VERSION = 1;
/** Allowance for clocks of replicas that differ. */
const SKEW_MS = 60_000;

const STATUS_NUMBERS: { readonly [S in DeliveryStatus]: number } = { READY: 1, ACTIVE: 2, COLLECTED: 3, COMPLETED: 4, CANCELLED: 5 };

export interface FeedPosition {
  /** Per partition, the last feed entry delivered ("<ms>-<seq>"). */
  readonly positions: readonly string[];
  /** Per partition, whether the watcher had read it to its end at `issuedAtMs`. */
  readonly atEnd: readonly boolean[];
  readonly issuedAtMs: number;
}

interface Wire {
  readonly v: number;
  readonly f: readonly number[];
  readonly t: number;
  readonly p: readonly string[];
  /** One character per partition: "1" at the end, "0" not. */
  readonly e: string;
}

const POSITION = /^\d{1,15}-\d{1,15}$/;

export function filterNumbers(statuses: readonly DeliveryStatus[]): number[] {
  return statuses.map((s) => STATUS_NUMBERS[s]).sort((a, b) => a - b);
}

export function encodeResumeToken(statuses: readonly DeliveryStatus[], at: FeedPosition): string {
  const wire: Wire = { v: VERSION, f: filterNumbers(statuses), t: at.issuedAtMs, p: at.positions, e: at.atEnd.map((b) => (b ? "1" : "0")).join("") };
  return Buffer.from(JSON.stringify(wire), "utf8").toString("base64url");
}

/** Checks a token against the request's filter, the store's partitions and the feed's retention. */
export function decodeResumeToken(
  token: string,
  statuses: readonly DeliveryStatus[],
  partitions: number,
  retentionMs: number,
  nowMs: number,
): FeedPosition {
  let wire: Wire | undefined;
  try {
    wire = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Wire;
  } catch {
    wire = undefined;
  }
  const valid =
    wire !== undefined &&
    wire !== null &&
    wire.v === VERSION &&
    Array.isArray(wire.f) &&
    Number.isSafeInteger(wire.t) &&
    Array.isArray(wire.p) &&
    wire.p.length === partitions &&
    wire.p.every((p) => typeof p === "string" && POSITION.test(p)) &&
    typeof wire.e === "string" &&
    /^[01]*$/.test(wire.e) &&
    wire.e.length === partitions;
  if (!valid) throw new InvalidInput("resume_token is not one this service issued (for this store)", "resume_token", "RESUME_TOKEN_INVALID");
  if (wire!.f.join(",") !== filterNumbers(statuses).join(",")) {
    throw new InvalidInput("resume_token was issued for another filter (statuses differ)", "resume_token", "RESUME_TOKEN_MISMATCH");
  }
  // The allowance for clocks never eats more than a tenth of the retention.
  const cut = nowMs - retentionMs + Math.min(SKEW_MS, retentionMs / 10);
  for (let i = 0; i < partitions; i++) {
    const positionMs = Number(wire!.p[i]!.split("-")[0]);
    const newestSafe = wire!.e[i] === "1" ? Math.max(positionMs, wire!.t) : positionMs;
    if (newestSafe < cut) throw new ResumeTokenExpired(retentionMs);
  }
  return { positions: wire!.p, atEnd: [...wire!.e].map((c) => c === "1"), issuedAtMs: wire!.t };
}

/** a > b for feed positions "<ms>-<seq>". */
export function isAfter(a: string, b: string): boolean {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am > bm || (am === bm && as > bs);
}
