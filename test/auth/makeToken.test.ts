/**
 * examples/auth: the token script's output and the example policy work with
 * the service's own checks, as a user trying it with grpcurl would use them.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Authenticator, createAuthenticator, parseAuthConfig } from "../../src/auth/index.js";
import { bearer, request, type TempDir, tempDir } from "./authSupport.js";

const run = promisify(execFile);
const examples = fileURLToPath(new URL("../../examples/auth/", import.meta.url));
const ISS = "https://auth.example.test";
const AUD = "delivery-service";

let files: TempDir;

async function makeToken(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [path.join(examples, "make-token.mjs"), "--dir", files.dir, "--iss", ISS, "--aud", AUD, ...args]);
  return stdout.trim();
}

function authenticator(): Authenticator {
  return createAuthenticator(
    parseAuthConfig({
      AUTH_JWKS_FILE: path.join(files.dir, "keys.json"),
      AUTH_ISSUER: ISS,
      AUTH_AUDIENCE: AUD,
      AUTH_POLICY_FILE: path.join(examples, "policy.json"),
    }),
  );
}

let reader: string;
let writer: string;

beforeAll(async () => {
  files = tempDir();
  reader = await makeToken("--sub", "rita", "--scope", "deliveries.read", "--ttl", "10m");
  // The second run signs with the key pair the first one saved.
  writer = await makeToken("--sub", "walt", "--scope", "deliveries.read deliveries.write");
});

afterAll(() => files.remove());

describe("make-token.mjs with the example policy", () => {
  it.each([
    ["a reader", () => reader, "delivery.v1.DeliveryService/GetDelivery", "allowed"],
    ["a reader", () => reader, "delivery.v1.DeliveryService/WatchDeliveries", "allowed"],
    ["a reader", () => reader, "delivery.v1.DeliveryService/CreateDelivery", "denied"],
    ["a writer", () => writer, "delivery.v1.DeliveryService/CancelDelivery", "allowed"],
    ["no one", () => undefined, "grpc.health.v1.Health/Check", "open"],
  ])("%s calling %s: %s", async (_who, token, method, outcome) => {
    const t = token();
    const check = await authenticator().check(request(method, t === undefined ? undefined : bearer(t)));

    expect(check.outcome).toBe(outcome);
  });

  it("refuses a call without --sub", async () => {
    await expect(makeToken("--scope", "deliveries.read")).rejects.toMatchObject({ code: 2 });
  });
});
