/**
 * Hand-written protobuf wire encoding and decoding of the hot messages: a
 * change as WatchDeliveryResponse bytes (a command's response, what watchers
 * receive), a delivery as Delivery bytes, and an event as StoredEvent bytes
 * (what Redis keeps). The generated code goes through proto objects, BigInt
 * for every int64 and a Date per timestamp; these write the domain's numbers
 * straight into one growing Buffer, and read them straight back.
 *
 * The bytes are those the generated encoders write for the same values
 * (proto3: zero and empty fields left out, fields in number order), tested
 * against them; the decoder reads any valid encoding (fields in any order,
 * repeated, unknown fields skipped), as the generated one does.
 */
import type { Delivery, DeliveryEvent, DeliveryEventData, DeliveryStatus } from "../domain/index.js";
import { DeliveryStatus as ProtoStatus } from "../gen/delivery/v1/delivery.js";

/** The contract's number of each status (protoMapping.ts maps with it too). */
export const STATUS_TO_PROTO: { readonly [S in DeliveryStatus]: ProtoStatus } = {
  READY: ProtoStatus.DELIVERY_STATUS_READY,
  ACTIVE: ProtoStatus.DELIVERY_STATUS_ACTIVE,
  COLLECTED: ProtoStatus.DELIVERY_STATUS_COLLECTED,
  COMPLETED: ProtoStatus.DELIVERY_STATUS_COMPLETED,
  CANCELLED: ProtoStatus.DELIVERY_STATUS_CANCELLED,
};

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/** A Buffer that grows; `finish()` copies out what was written and starts again. */
class Writer {
  private buf = Buffer.allocUnsafe(1024);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  tag(field: number, wireType: number): void {
    this.uint32((field << 3) | wireType);
  }

  uint32(n: number): void {
    this.ensure(5);
    while (n > 0x7f) {
      this.buf[this.pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    this.buf[this.pos++] = n;
  }

  /** An int64 / uint64 varint of a safe integer (negative: ten bytes, two's complement). */
  int64(n: number): void {
    if ((n | 0) === n && n >= 0) return this.uint32(n);
    if (!Number.isSafeInteger(n)) throw new RangeError(`${n} is not a safe integer`);
    this.ensure(10);
    let hi = Math.floor(n / 4294967296);
    let lo = (n - hi * 4294967296) >>> 0;
    hi >>>= 0;
    while (hi > 0 || lo > 0x7f) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.pos++] = lo;
  }

  string(s: string): void {
    // At most 3 bytes per UTF-16 unit: a short string's length fits the one byte reserved.
    if (s.length <= 42) {
      this.ensure(1 + s.length * 3);
      const buf = this.buf;
      const start = this.pos;
      // ASCII byte by byte: for strings this short, cheaper than a call into the native writer.
      let i = 0;
      for (; i < s.length; i++) {
        const code = s.charCodeAt(i);
        if (code > 0x7f) break;
        buf[start + 1 + i] = code;
      }
      const written = i === s.length ? i : buf.write(s, start + 1);
      buf[start] = written;
      this.pos = start + 1 + written;
      return;
    }
    const length = Buffer.byteLength(s);
    this.uint32(length);
    this.ensure(length);
    this.pos += this.buf.write(s, this.pos);
  }

  /** Starts a length-delimited field's body; `join(fork())` writes its length. One byte is reserved for it. */
  fork(): number {
    this.ensure(1);
    return this.pos++;
  }

  join(start: number): void {
    const length = this.pos - start - 1;
    if (length <= 0x7f) {
      this.buf[start] = length;
      return;
    }
    const size = varintSize(length);
    this.ensure(size - 1);
    this.buf.copy(this.buf, start + size, start + 1, this.pos);
    this.pos = start;
    this.uint32(length);
    this.pos += length;
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }

  reset(): void {
    this.pos = 0;
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n >>>= 7;
    size++;
  }
  return size;
}

const writer = new Writer();

function finished(write: (w: Writer) => void): Buffer {
  try {
    write(writer);
    return writer.finish();
  } catch (error) {
    writer.reset();
    throw error;
  }
}

// Proto3: a field at its zero value is not written.
function int64Field(w: Writer, field: number, n: number): void {
  if (n === 0) return;
  w.tag(field, VARINT);
  w.int64(n);
}

function stringField(w: Writer, field: number, s: string): void {
  if (s === "") return;
  w.tag(field, LEN);
  w.string(s);
}

/** google.protobuf.Timestamp of a time in ms, always written (as the generated code writes a Date). */
function timestampField(w: Writer, field: number, ms: number): void {
  w.tag(field, LEN);
  const at = w.fork();
  const seconds = Math.trunc(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  int64Field(w, 1, seconds);
  if (nanos !== 0) {
    w.tag(2, VARINT);
    w.int64(nanos); // int32: a negative one is ten bytes too
  }
  w.join(at);
}

const KIND_FIELDS: { readonly [T in DeliveryEventData["type"]]: number } = {
  created: 10,
  started: 11,
  productsPickedUp: 12,
  productsDelivered: 13,
  budgetIncreased: 14,
  cancelled: 15,
};

function kindField(w: Writer, data: DeliveryEventData): void {
  w.tag(KIND_FIELDS[data.type] ?? 0, LEN);
  const at = w.fork();
  switch (data.type) {
    case "created":
      int64Field(w, 1, data.budgetMinor);
      stringField(w, 2, data.notes);
      break;
    case "started":
      break;
    case "productsPickedUp":
      int64Field(w, 1, data.purchasePriceMinor);
      int64Field(w, 2, data.quantity);
      break;
    case "productsDelivered":
      int64Field(w, 1, data.sellPriceMinor);
      int64Field(w, 2, data.quantity);
      break;
    case "budgetIncreased":
      int64Field(w, 1, data.amountMinor);
      break;
    case "cancelled":
      stringField(w, 1, data.reason);
      break;
    default: {
      const unhandled: never = data;
      throw new Error(`unhandled event ${JSON.stringify(unhandled)}`);
    }
  }
  w.join(at);
}

function deliveryBody(w: Writer, d: Delivery): void {
  stringField(w, 1, d.id);
  int64Field(w, 2, STATUS_TO_PROTO[d.status]);
  int64Field(w, 3, d.budgetMinor);
  stringField(w, 4, d.notes);
  int64Field(w, 5, d.purchasePriceMinor);
  int64Field(w, 6, d.sellPriceMinor);
  int64Field(w, 7, d.quantity);
  int64Field(w, 8, d.deliveredQuantity);
  int64Field(w, 9, d.version);
  timestampField(w, 10, d.createdAtMs);
  timestampField(w, 11, d.updatedAtMs);
}

function eventBody(w: Writer, e: DeliveryEvent): void {
  stringField(w, 1, e.deliveryId);
  int64Field(w, 2, e.version);
  timestampField(w, 3, e.occurredAtMs);
  stringField(w, 4, e.requestId);
  stringField(w, 5, e.actor);
  kindField(w, e.data);
}

/** WatchDeliveryResponse { delivery = 1, event = 2 } (also a command's response: same fields). */
export function encodeChange(delivery: Delivery, event: DeliveryEvent): Buffer {
  return finished((w) => {
    w.tag(1, LEN);
    const d = w.fork();
    deliveryBody(w, delivery);
    w.join(d);
    w.tag(2, LEN);
    const e = w.fork();
    eventBody(w, event);
    w.join(e);
  });
}

/** A message whose field `field` is the delivery: GetDeliveryResponse (1), a snapshot, ... */
export function encodeDeliveryIn(field: number, delivery: Delivery): Buffer {
  return finished((w) => {
    w.tag(field, LEN);
    const d = w.fork();
    deliveryBody(w, delivery);
    w.join(d);
  });
}

/** StoredEvent { occurred_at_ms = 1, actor = 2, request_id = 3, kind = 10..15 } (the version and delivery id are the log's). */
export function encodeStoredEvent(event: DeliveryEvent): Buffer {
  return finished((w) => {
    int64Field(w, 1, event.occurredAtMs);
    stringField(w, 2, event.actor);
    stringField(w, 3, event.requestId);
    kindField(w, event.data);
  });
}

/** Reads one message's fields; every read checks the bounds (a truncated or malformed message throws). */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get more(): boolean {
    return this.pos < this.end;
  }

  private byte(): number {
    if (this.pos >= this.end) throw new Error("truncated message");
    return this.buf[this.pos++]!;
  }

  uint32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      const b = this.byte();
      value |= (b & 0x7f) << shift;
      if (b < 0x80) return value >>> 0;
    }
    // A uint32 written as ten bytes (a negative int32): the low 32 bits count.
    for (let i = 0; i < 5; i++) if (this.byte() < 0x80) return value >>> 0;
    throw new Error("malformed varint");
  }

  /** An int64 varint as a number; one that is no safe integer throws. */
  int64(): number {
    let lo = 0;
    let hi = 0;
    let b = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      b = this.byte();
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) return lo;
    }
    b = this.byte();
    lo |= (b & 0x0f) << 28;
    hi = (b & 0x7f) >> 4;
    if (b >= 0x80) {
      for (let shift = 3; shift < 32; shift += 7) {
        b = this.byte();
        hi |= (b & 0x7f) << shift;
        if (b < 0x80) break;
      }
      if (b >= 0x80) throw new Error("malformed varint");
    }
    const value = hi & 0x80000000 ? -((~hi >>> 0) * 4294967296 + (~lo >>> 0) + 1) : (hi >>> 0) * 4294967296 + (lo >>> 0);
    if (!Number.isSafeInteger(value)) throw new Error(`stored value ${value} is not a safe integer`);
    return value;
  }

  /** A length-delimited field's end. */
  length(): number {
    const length = this.uint32();
    const end = this.pos + length;
    if (end > this.end) throw new Error("truncated message");
    return end;
  }

  string(): string {
    const end = this.length();
    const s = this.buf.toString("utf8", this.pos, end);
    this.pos = end;
    return s;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case VARINT:
        while (this.byte() >= 0x80);
        return;
      case I64:
        this.pos += 8;
        break;
      case LEN:
        this.pos = this.length();
        return;
      case I32:
        this.pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error("truncated message");
  }
}

/** Fields 1 and 2 of a kind's message: the int64 ones of most, the notes or reason of others. */
function readKind(r: Reader, field: number): DeliveryEventData {
  const end = r.length();
  const sub = new Reader(r.buf, r.pos, end);
  let one = 0;
  let two = 0;
  let text = "";
  while (sub.more) {
    const tag = sub.uint32();
    const f = tag >>> 3;
    const wireType = tag & 7;
    const isText = (field === 10 && f === 2) || (field === 15 && f === 1);
    if (isText && wireType === LEN) text = sub.string();
    else if (!isText && (f === 1 || f === 2) && field !== 15 && wireType === VARINT) {
      if (f === 1) one = sub.int64();
      else two = sub.int64();
    } else sub.skip(wireType);
  }
  r.pos = end;
  switch (field) {
    case 10:
      return { type: "created", budgetMinor: one, notes: text };
    case 11:
      return { type: "started" };
    case 12:
      return { type: "productsPickedUp", purchasePriceMinor: one, quantity: two };
    case 13:
      return { type: "productsDelivered", sellPriceMinor: one, quantity: two };
    case 14:
      return { type: "budgetIncreased", amountMinor: one };
    default:
      return { type: "cancelled", reason: text };
  }
}

/** A StoredEvent (see encodeStoredEvent), with the log's delivery id and version. */
export function decodeStoredEvent(bytes: Uint8Array, deliveryId: string, version: number): DeliveryEvent {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const r = new Reader(buf, 0, buf.length);
  let occurredAtMs = 0;
  let actor = "";
  let requestId = "";
  let data: DeliveryEventData | undefined;
  while (r.more) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === 1 && wireType === VARINT) occurredAtMs = r.int64();
    else if (field === 2 && wireType === LEN) actor = r.string();
    else if (field === 3 && wireType === LEN) requestId = r.string();
    else if (field >= 10 && field <= 15 && wireType === LEN) data = readKind(r, field);
    else r.skip(wireType);
  }
  if (data === undefined) throw new Error("stored event has no kind");
  return { deliveryId, version, occurredAtMs, requestId, actor, data };
}
