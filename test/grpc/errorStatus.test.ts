/**
 * The error table itself: every kind has a code and a stable reason, and
 * anything unknown is a generic INTERNAL that tells nothing of its cause.
 * (End-to-end checks of each status: e2e.errorDetails.test.ts.)
 */
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  AmountOutOfRange,
  DeliveryAlreadyExists,
  DeliveryNotFound,
  InsufficientBudget,
  InsufficientQuantity,
  InvalidInput,
  InvalidTransition,
  RequestIdReused,
  StoreUnavailable,
  VersionConflict,
  VersionNotFound,
} from "../../src/domain/index.js";
import { MalformedRequest, ShuttingDown, TooManyWatchers, UnknownHealthService } from "../../src/grpc/conditions.js";
import { toServiceError } from "../../src/grpc/errorStatus.js";
import { silentLogger } from "../../src/logger.js";
import { statusDetailsOf } from "../support/statusDetails.js";

const at = { deliveryId: "d1", status: "ACTIVE", version: 2 } as const;

const CASES: [error: Error, code: status, reason: string][] = [
  [new InvalidInput("notes too long", "notes"), status.INVALID_ARGUMENT, "INVALID_FIELD"],
  [new InvalidInput("bad token", "page_token", "PAGE_TOKEN_INVALID"), status.INVALID_ARGUMENT, "PAGE_TOKEN_INVALID"],
  [new AmountOutOfRange("IncreaseBudget", "the increased budget"), status.INVALID_ARGUMENT, "AMOUNT_OUT_OF_RANGE"],
  [new RequestIdReused("d1", "r1"), status.INVALID_ARGUMENT, "REQUEST_ID_REUSED"],
  [new DeliveryNotFound("d1"), status.NOT_FOUND, "DELIVERY_NOT_FOUND"],
  [new VersionNotFound("d1", 9, 2), status.NOT_FOUND, "VERSION_NOT_FOUND"],
  [new DeliveryAlreadyExists("d1"), status.ALREADY_EXISTS, "DELIVERY_EXISTS"],
  [new InvalidTransition("StartDelivery", "start", at, ["READY"]), status.FAILED_PRECONDITION, "INVALID_TRANSITION"],
  [new InsufficientBudget(at, 1, 2), status.FAILED_PRECONDITION, "INSUFFICIENT_BUDGET"],
  [new InsufficientQuantity({ ...at, status: "COLLECTED" }, 1, 2), status.FAILED_PRECONDITION, "INSUFFICIENT_QUANTITY"],
  [new VersionConflict("d1", 3, 2), status.ABORTED, "VERSION_MISMATCH"],
  [new VersionConflict("d1", 3), status.ABORTED, "CONTENTION"],
  [new StoreUnavailable(new Error("ECONNREFUSED 10.0.0.1:6379")), status.UNAVAILABLE, "STORE_UNAVAILABLE"],
  [new TooManyWatchers(10), status.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHERS"],
  [new ShuttingDown(), status.UNAVAILABLE, "SHUTTING_DOWN"],
  [new MalformedRequest("/delivery.v1.DeliveryService/GetDelivery"), status.INVALID_ARGUMENT, "MALFORMED_REQUEST"],
  [new UnknownHealthService("nope.v1.Nope"), status.NOT_FOUND, "SERVICE_NOT_FOUND"],
];

describe("the error table", () => {
  it.each(CASES)("%s -> its code and reason, with the message in the Status", (error, code, reason) => {
    const serviceError = toServiceError(error, silentLogger);

    expect(serviceError.code).toBe(code);
    expect(serviceError.details).toBe(error.message);
    const details = statusDetailsOf(serviceError as never);
    expect(details).toMatchObject({ code, message: error.message, errorInfo: { domain: "delivery.v1", reason } });
  });

  it("advises a short retry on contention, not on a version the caller chose", () => {
    expect(statusDetailsOf(toServiceError(new VersionConflict("d1", 3), silentLogger) as never)?.retryDelayMs).toBe(50);
    expect(statusDetailsOf(toServiceError(new VersionConflict("d1", 3, 2), silentLogger) as never)?.retryInfo).toBeUndefined();
  });

  it("keeps the cause of an unavailable store out of the message", () => {
    const serviceError = toServiceError(new StoreUnavailable(new Error("ECONNREFUSED 10.0.0.1:6379")), silentLogger);

    expect(serviceError.details).not.toMatch(/ECONNREFUSED|10\.0\.0\.1/);
  });

  it.each([new Error("secret path /etc/x at foo.ts:12"), new TypeError("x is undefined"), "a string", undefined])(
    "turns %s into a generic INTERNAL with reason INTERNAL only",
    (thrown) => {
      const serviceError = toServiceError(thrown, silentLogger);

      expect(serviceError).toMatchObject({ code: status.INTERNAL, details: "internal error" });
      const details = statusDetailsOf(serviceError as never);
      expect(details?.typeUrls).toEqual(["type.googleapis.com/google.rpc.ErrorInfo"]);
      expect(details?.errorInfo).toEqual({ domain: "delivery.v1", reason: "INTERNAL", metadata: {} });
    },
  );
});
