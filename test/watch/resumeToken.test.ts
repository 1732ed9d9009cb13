/**
 * WatchDeliveries resume tokens: what is encoded comes back, the token is
 * small (it goes out with every message), and anything this service did not
 * issue, for this filter and this store, is refused.
 */
import { describe, expect, it } from "vitest";
import { InvalidInput, ResumeTokenExpired } from "../../src/domain/index.js";
import { decodeResumeToken, encodeResumeToken, type FeedPosition } from "../../src/feed/resumeToken.js";

const NOW = 1_764_547_200_000;
const DAY = 86_400_000;
const RETENTION = 7 * DAY;

function sixteen(): FeedPosition {
  const positions = Array.from({ length: 16 }, (_, p) => (p === 3 ? "0-0" : `${NOW - p * 1_000}-${p * 7}`));
  return { positions, atEnd: positions.map((_, p) => p % 3 === 0), issuedAtMs: NOW };
}

const reasonOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (error) {
    if (error instanceof InvalidInput) return error.reason;
    if (error instanceof ResumeTokenExpired) return "RESUME_TOKEN_EXPIRED";
    throw error;
  }
  return undefined;
};

describe("resume tokens", () => {
  it("give back the positions, the ends and the time they were issued with", () => {
    const at = sixteen();
    const token = encodeResumeToken(["ACTIVE", "READY"], at);
    expect(decodeResumeToken(token, ["READY", "ACTIVE", "READY"], 16, RETENTION, NOW + 1)).toEqual(at);
  });

  it("keep large sequences and positions after the issue time (another replica's clock)", () => {
    const at: FeedPosition = { positions: [`${NOW + 5_000}-999999999999999`, "0-0"], atEnd: [false, true], issuedAtMs: NOW };
    expect(decodeResumeToken(encodeResumeToken([], at), [], 2, RETENTION, NOW)).toEqual(at);
  });

  it("are small: under 100 characters for 16 partitions, about 2 bytes for an empty one", () => {
    expect(encodeResumeToken([], sixteen()).length).toBeLessThan(100);
    const empty: FeedPosition = { positions: Array.from({ length: 16 }, () => "0-0"), atEnd: Array.from({ length: 16 }, () => true), issuedAtMs: NOW };
    expect(encodeResumeToken([], empty).length).toBeLessThan(60);
    expect(decodeResumeToken(encodeResumeToken([], empty), [], 16, RETENTION, NOW)).toEqual(empty);
  });

  it("are refused when another filter, another partition count, or altered", () => {
    const token = encodeResumeToken(["READY"], sixteen());
    const bytes = Buffer.from(token, "base64url");
    const altered = (change: (b: Buffer) => Buffer) => change(Buffer.from(bytes)).toString("base64url");
    const cases: [string, string, number][] = [
      [token, "RESUME_TOKEN_MISMATCH", 16],
      [token, "RESUME_TOKEN_INVALID", 8],
      [altered((b) => b.subarray(0, b.length - 1)), "RESUME_TOKEN_INVALID", 16],
      [altered((b) => Buffer.concat([b, Buffer.from([0])])), "RESUME_TOKEN_INVALID", 16],
      [altered((b) => ((b[0] = 1), b)), "RESUME_TOKEN_INVALID", 16],
      [altered((b) => ((b[1] = 0xff), b)), "RESUME_TOKEN_INVALID", 16],
      [`${token}=`, "RESUME_TOKEN_INVALID", 16],
      ["", "RESUME_TOKEN_INVALID", 16],
      [Buffer.from(JSON.stringify({ v: 1, p: [] })).toString("base64url"), "RESUME_TOKEN_INVALID", 16],
    ];
    for (const [candidate, reason, partitions] of cases) {
      expect(reasonOf(() => decodeResumeToken(candidate, partitions === 16 && reason === "RESUME_TOKEN_MISMATCH" ? [] : ["READY"], partitions, RETENTION, NOW))).toBe(reason);
    }
  });

  it("expire when a partition's position, and its token where it was at the end, are older than the retention", () => {
    const old: FeedPosition = { positions: [`${NOW - 8 * DAY}-0`, `${NOW}-0`], atEnd: [true, false], issuedAtMs: NOW - 2 * DAY };
    const token = encodeResumeToken([], old);
    // At the end of an idle partition: safe while the token itself is young enough.
    expect(reasonOf(() => decodeResumeToken(token, [], 2, RETENTION, NOW))).toBeUndefined();
    expect(reasonOf(() => decodeResumeToken(token, [], 2, RETENTION, NOW + 6 * DAY))).toBe("RESUME_TOKEN_EXPIRED");
    const behind = encodeResumeToken([], { ...old, atEnd: [false, false] });
    expect(reasonOf(() => decodeResumeToken(behind, [], 2, RETENTION, NOW))).toBe("RESUME_TOKEN_EXPIRED");
  });
});
