/**
 * Parse at the edge: every request field is checked once here and turned into
 * domain values. After this, types say the values are valid.
 */
import { type DeliveryCommand, InvalidInput } from "../domain/index.js";

export const LIMITS = {
  idPattern: /^[A-Za-z0-9_-]{1,64}$/,
  maxNotesChars: 1000,
  maxReasonChars: 1000,
  maxRequestIdChars: 128,
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
  // Characters, not UTF-16 units: an emoji counts once.
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

export function parsePageToken(value: string): string | undefined {
  if (value === "") return undefined;
  const cursor = Buffer.from(value, "base64url").toString("utf8");
  if (cursor === "" || Buffer.from(cursor, "utf8").toString("base64url") !== value) {
    throw new InvalidInput("page_token is not one this service issued", "page_token", "PAGE_TOKEN_INVALID");
  }
  return cursor;
}

export function formatPageToken(cursor: string | undefined): string {
  return cursor === undefined ? "" : Buffer.from(cursor, "utf8").toString("base64url");
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
