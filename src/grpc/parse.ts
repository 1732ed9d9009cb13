/**
 * Parse at the edge: every request field is checked once here and turned into
 * domain values. After this, types say the values are valid.
 */
import { type DeliveryCommand, type DeliveryStatus, InvalidInput } from "../domain/index.js";
import type { ListQuery } from "../store/eventStore.js";

export const LIMITS = {
  idPattern: /^[A-Za-z0-9_-]{1,64}$/,
  maxNotesChars: 1000,
  maxReasonChars: 1000,
  maxRequestIdChars: 128,
  maxOrderByChars: 64,
  /** A token of 1,024 partitions is about 40 KB; ours (16) about 500 bytes. */
  maxResumeTokenChars: 65_536,
  listDeliveries: { defaultPageSize: 50, maxPageSize: 500 },
  listEvents: { defaultPageSize: 100, maxPageSize: 1000 },
} as const;

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function parseDeliveryId(value: string, field = "delivery_id"): string {
  if (value === "") throw new InvalidInput(`${field} is required`, field);
  if (!LIMITS.idPattern.test(value)) {
    throw new InvalidInput(`${field} must match ${LIMITS.idPattern.source} (1 to 64 letters, digits, '_' or '-')`, field);
  }
  return value;
}

/** An integer field within [min, 2^53-1], as a number. */
export function parseInteger(value: bigint, field: string, min: bigint): number {
  if (value < min) throw new InvalidInput(`${field} must be at least ${min}, got ${value}`, field);
  if (value > MAX_SAFE) throw new InvalidInput(`${field} must be at most ${MAX_SAFE}, got ${value}`, field);
  return Number(value);
}

function parseOptionalVersion(value: bigint | undefined, field: string, min: bigint): number | undefined {
  return value === undefined ? undefined : parseInteger(value, field, min);
}

function parseText(value: string, field: string, maxChars: number): string {
  // Characters, not UTF-16 units: an emoji counts once. No more units than the limit: no more characters.
  if (value.length <= maxChars) return value;
  let chars = 0;
  for (const _ of value) if (++chars > maxChars) throw new InvalidInput(`${field} must be at most ${maxChars} characters`, field);
  return value;
}

export function parseRequestId(value: string): string | undefined {
  return value === "" ? undefined : parseText(value, "request_id", LIMITS.maxRequestIdChars);
}

export function parsePageSize(value: number, limits: { defaultPageSize: number; maxPageSize: number }): number {
  if (value === 0) return limits.defaultPageSize;
  if (value > limits.maxPageSize) throw new InvalidInput(`page_size must be at most ${limits.maxPageSize}, got ${value}`, "page_size");
  return value;
}

/** Page tokens of ListDeliveries: the store's cursor, bound to the query it continues. */
interface PageToken {
  /** Statuses, sorted proto numbers. */
  readonly s: readonly number[];
  /** Order: "a" ascending, "d" descending. */
  readonly o: "a" | "d";
  /** The store's cursor. */
  readonly c: string;
}

const STATUS_NAMES: { readonly [n: number]: DeliveryStatus } = { 1: "READY", 2: "ACTIVE", 3: "COLLECTED", 4: "COMPLETED", 5: "CANCELLED" };
const STATUS_NUMBERS = Object.fromEntries(Object.entries(STATUS_NAMES).map(([n, name]) => [name, Number(n)])) as { readonly [S in DeliveryStatus]: number };

/** A set of statuses (order and repeats do not matter); UNSPECIFIED or unknown values are refused. */
export function parseStatuses(values: readonly number[], field = "statuses"): DeliveryStatus[] {
  const set = new Set<DeliveryStatus>();
  for (const value of values) {
    const name = STATUS_NAMES[value];
    if (!name) throw new InvalidInput(`${field} may hold READY, ACTIVE, COLLECTED, COMPLETED or CANCELLED, got ${value}`, field);
    set.add(name);
  }
  return [...set].sort((a, b) => STATUS_NUMBERS[a] - STATUS_NUMBERS[b]);
}

/** AIP-132 order_by on created_at: "" or "created_at" (oldest first), "created_at desc" (newest first). */
export function parseOrderBy(value: string): "asc" | "desc" {
  parseText(value, "order_by", LIMITS.maxOrderByChars);
  const words = value.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return "asc";
  if (words[0] === "created_at" && words.length <= 2) {
    if (words.length === 1) return "asc";
    if (words[1] === "desc") return "desc";
  }
  throw new InvalidInput(`order_by must be "created_at" or "created_at desc", got "${value}"`, "order_by");
}

function encodeToken(token: PageToken): string {
  return Buffer.from(JSON.stringify(token), "utf8").toString("base64url");
}

function decodeToken(value: string): PageToken | undefined {
  try {
    const token = JSON.parse(Buffer.from(value, "base64url").toString("utf8")) as PageToken;
    const valid =
      encodeToken(token) === value &&
      Array.isArray(token.s) &&
      token.s.every((n) => Number.isInteger(n)) &&
      (token.o === "a" || token.o === "d") &&
      typeof token.c === "string" &&
      token.c !== "";
    return valid ? token : undefined;
  } catch {
    return undefined;
  }
}

/** The query of a ListDeliveries request (without its page size); the token must come from the same query. */
export function parseListQuery(r: { statuses: readonly number[]; orderBy: string; pageToken: string }): Omit<ListQuery, "limit"> {
  const { statuses, order } = parseFields({ statuses: () => parseStatuses(r.statuses), order: () => parseOrderBy(r.orderBy) });
  if (r.pageToken === "") return { statuses, order };
  const token = decodeToken(r.pageToken);
  if (!token) throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
  const numbers = statuses.map((s) => STATUS_NUMBERS[s]);
  if (token.o !== (order === "asc" ? "a" : "d") || token.s.join(",") !== numbers.join(",")) {
    throw new InvalidInput("page_token belongs to another query (statuses or order_by differ)", "page_token", "PAGE_TOKEN_MISMATCH");
  }
  return { statuses, order, cursor: token.c };
}

export function formatPageToken(query: Omit<ListQuery, "limit">, cursor: string | undefined): string {
  if (cursor === undefined) return "";
  return encodeToken({ s: query.statuses.map((s) => STATUS_NUMBERS[s]), o: query.order === "asc" ? "a" : "d", c: cursor });
}

interface CommandRequest {
  deliveryId: string;
  expectedVersion?: bigint | undefined;
  requestId: string;
}

export interface ParsedCommand {
  readonly deliveryId: string;
  readonly command: DeliveryCommand;
  readonly expectedVersion?: number;
  readonly requestId?: string;
}

/**
 * Runs every field's parser and reports every bad field at once (one
 * BadRequest violation each), not just the first.
 */
export function parseFields<T extends object>(parsers: { readonly [K in keyof T]: () => T[K] }): T {
  const parsed: Partial<T> = {};
  const errors: InvalidInput[] = [];
  for (const key of Object.keys(parsers) as (keyof T)[]) {
    try {
      parsed[key] = parsers[key]();
    } catch (error) {
      if (!(error instanceof InvalidInput)) throw error;
      errors.push(error);
    }
  }
  if (errors.length > 0) throw InvalidInput.combine(errors);
  return parsed as T;
}

/** The parts every command but create shares, and the command itself. */
export function parseCommandEnvelope(request: CommandRequest, command: () => DeliveryCommand): ParsedCommand {
  return parseFields<ParsedCommand>({
    deliveryId: () => parseDeliveryId(request.deliveryId),
    command,
    expectedVersion: () => parseOptionalVersion(request.expectedVersion, "expected_version", 0n),
    requestId: () => parseRequestId(request.requestId),
  });
}

export const parseCommand = {
  create(r: { budget: bigint; notes: string }): DeliveryCommand {
    return parseFields({
      type: () => "CreateDelivery" as const,
      budgetMinor: () => parseInteger(r.budget, "budget", 0n),
      notes: () => parseText(r.notes, "notes", LIMITS.maxNotesChars),
    });
  },
  start(): DeliveryCommand {
    return { type: "StartDelivery" };
  },
  pickup(r: { purchasePrice: bigint; quantity: bigint }): DeliveryCommand {
    return parseFields({
      type: () => "PickupProducts" as const,
      purchasePriceMinor: () => parseInteger(r.purchasePrice, "purchase_price", 0n),
      quantity: () => parseInteger(r.quantity, "quantity", 1n),
    });
  },
  deliver(r: { sellPrice: bigint; quantity: bigint }): DeliveryCommand {
    return parseFields({
      type: () => "DeliverProducts" as const,
      sellPriceMinor: () => parseInteger(r.sellPrice, "sell_price", 0n),
      quantity: () => parseInteger(r.quantity, "quantity", 1n),
    });
  },
  increaseBudget(r: { amount: bigint }): DeliveryCommand {
    return { type: "IncreaseBudget", amountMinor: parseInteger(r.amount, "amount", 1n) };
  },
  cancel(r: { reason: string }): DeliveryCommand {
    return { type: "CancelDelivery", reason: parseText(r.reason, "reason", LIMITS.maxReasonChars) };
  },
};

export function parseAtVersion(value: bigint | undefined): number | undefined {
  return parseOptionalVersion(value, "at_version", 1n);
}

export function parseAfterVersion(value: bigint, field = "after_version"): number {
  return parseInteger(value, field, 0n);
}

export function parseResumeToken(value: string): string | undefined {
  return value === "" ? undefined : parseText(value, "resume_token", LIMITS.maxResumeTokenChars);
}
