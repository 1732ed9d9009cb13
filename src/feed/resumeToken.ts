/**
 * WatchDeliveries resume tokens: a position in every partition's change feed,
 * bound to the filter it was issued for. Opaque to clients (compact bytes,
 * base64url; the format is below).
 *
 * Expiry: a position is safe while nothing after it can have been trimmed.
 * Entries after a partition's position are at least as new as the position
 * itself, and, where the watcher had read the partition to its end when the
 * token was issued, at least as new as the token. So a token is refused
 * (OUT_OF_RANGE) when, for some partition, both its position and (if it was
 * at the end) the token's time are older than the feed's retention.
 */
import { type DeliveryStatus, InvalidInput, ResumeTokenExpired } from "../domain/index.js";

const VERSION = 2;
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

const POSITION = /^(0|[1-9]\d{0,14})-(0|[1-9]\d{0,14})$/;
const MAX_PARTITIONS = 1024;

/** The filter as a bit per status number: order and repeats do not matter. */
function filterBits(statuses: readonly DeliveryStatus[]): number {
  let bits = 0;
  for (const s of statuses) bits |= 1 << STATUS_NUMBERS[s];
  return bits;
}

/*
 * The bytes (base64url): the format version (2); the filter (filterBits);
 * the issue time; the partition count; per partition its position's time
 * (0 for an empty partition's "0-0", else 1 + the zigzag of its difference
 * to the issue time) and sequence; then a bit per partition, set where it was
 * at the end. Numbers are unsigned LEB128 varints below 2^53. 40 to 75 bytes
 * for 16 partitions, instead of a JSON list of positions: it goes out with
 * every message.
 */

function putVarint(out: number[], value: number): void {
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

const zigzag = (n: number) => (n >= 0 ? n * 2 : -n * 2 - 1);
const unzigzag = (n: number) => (n % 2 === 0 ? n / 2 : -(n + 1) / 2);

export function encodeResumeToken(statuses: readonly DeliveryStatus[], at: FeedPosition): string {
  const out: number[] = [VERSION, filterBits(statuses)];
  putVarint(out, at.issuedAtMs);
  putVarint(out, at.positions.length);
  for (const position of at.positions) {
    const dash = position.indexOf("-");
    const ms = Number(position.slice(0, dash));
    // 0 for an empty partition's "0-0"; else 1 + how far from the issue time.
    putVarint(out, ms === 0 ? 0 : zigzag(ms - at.issuedAtMs) + 1);
    putVarint(out, Number(position.slice(dash + 1)));
  }
  const ends = new Array<number>(Math.ceil(at.atEnd.length / 8)).fill(0);
  at.atEnd.forEach((end, i) => {
    if (end) ends[i >> 3]! |= 1 << (i & 7);
  });
  out.push(...ends);
  return Buffer.from(out).toString("base64url");
}

class Reader {
  private at = 0;
  constructor(private readonly bytes: Buffer) {}
  get done(): boolean {
    return this.at === this.bytes.length;
  }
  byte(): number {
    if (this.at >= this.bytes.length) throw new RangeError("short");
    return this.bytes[this.at++]!;
  }
  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 49) throw new RangeError("long");
    }
    if (!Number.isSafeInteger(value)) throw new RangeError("large");
    return value;
  }
}

function parseToken(token: string, partitions: number): { filter: number; position: FeedPosition } | undefined {
  const bytes = Buffer.from(token, "base64url");
  // base64url decoding skips what it does not know: only a canonical token is one this service issued.
  if (bytes.toString("base64url") !== token) return undefined;
  try {
    const r = new Reader(bytes);
    if (r.byte() !== VERSION) return undefined;
    const filter = r.byte();
    if ((filter & ~0b111110) !== 0) return undefined;
    const issuedAtMs = r.varint();
    const count = r.varint();
    if (count !== partitions || count > MAX_PARTITIONS) return undefined;
    const positions: string[] = [];
    for (let i = 0; i < count; i++) {
      const code = r.varint();
      const ms = code === 0 ? 0 : issuedAtMs + unzigzag(code - 1);
      const seq = r.varint();
      const position = `${ms}-${seq}`;
      if (!POSITION.test(position)) return undefined;
      positions.push(position);
    }
    const atEnd: boolean[] = [];
    for (let i = 0; i < Math.ceil(count / 8); i++) {
      const bits = r.byte();
      for (let j = 0; j < 8; j++) {
        const index = i * 8 + j;
        if (index < count) atEnd.push((bits & (1 << j)) !== 0);
        else if ((bits & (1 << j)) !== 0) return undefined;
      }
    }
    if (!r.done) return undefined;
    return { filter, position: { positions, atEnd, issuedAtMs } };
  } catch {
    return undefined;
  }
}

/** Checks a token against the request's filter, the store's partitions and the feed's retention. */
export function decodeResumeToken(
  token: string,
  statuses: readonly DeliveryStatus[],
  partitions: number,
  retentionMs: number,
  nowMs: number,
): FeedPosition {
  const parsed = parseToken(token, partitions);
  if (!parsed) throw new InvalidInput("resume_token is not one this service issued (for this store)", "resume_token", "RESUME_TOKEN_INVALID");
  if (parsed.filter !== filterBits(statuses)) {
    throw new InvalidInput("resume_token was issued for another filter (statuses differ)", "resume_token", "RESUME_TOKEN_MISMATCH");
  }
  const { positions, atEnd, issuedAtMs } = parsed.position;
  // The allowance for clocks never eats more than a tenth of the retention.
  const cut = nowMs - retentionMs + Math.min(SKEW_MS, retentionMs / 10);
  for (let i = 0; i < partitions; i++) {
    const positionMs = Number(positions[i]!.split("-")[0]);
    const newestSafe = atEnd[i] ? Math.max(positionMs, issuedAtMs) : positionMs;
    if (newestSafe < cut) throw new ResumeTokenExpired(retentionMs);
  }
  return parsed.position;
}

/** a > b for feed positions "<ms>-<seq>". */
export function isAfter(a: string, b: string): boolean {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am > bm || (am === bm && as > bs);
}
