/**
 * TLS and mutual TLS on the gRPC port (TLS_CERT_FILE, TLS_KEY_FILE,
 * TLS_CLIENT_CA_FILE), with certificates made by openssl for this run. A
 * GetDelivery of an unknown id answering NOT_FOUND proves the call went
 * through the handshake to the service.
 */
import { type ChannelCredentials, credentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeliveryServiceClient } from "../../src/gen/delivery/v1/delivery.js";
import { testRedisUrl } from "../support/redis.js";
import { startTestService, type TestService } from "../support/testServer.js";
import { rejectionOf } from "../support/async.js";
import { getDelivery } from "../support/deliveries.js";
import { createTestPki, type TestPki } from "./certificates.js";
import { codeName } from "./opsSupport.js";

let pki: TestPki;
const clients: DeliveryServiceClient[] = [];

beforeAll(async () => {
  pki = await createTestPki();
});

afterAll(async () => {
  for (const client of clients) client.close();
  await pki?.remove();
});

function clientFor(service: TestService, creds: ChannelCredentials): DeliveryServiceClient {
  const client = new DeliveryServiceClient(service.address, creds, { "grpc.use_local_subchannel_pool": 1 });
  clients.push(client);
  return client;
}

/** The status a GetDelivery of an unknown id ends with ("OK" would be a bug of its own). */
async function outcome(client: DeliveryServiceClient): Promise<string> {
  return codeName(await rejectionOf(getDelivery(client, "tls-probe-unknown", 5_000)));
}

describe("TLS", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService({
      redisUrl: testRedisUrl(),
      config: { tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: undefined } },
    });
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("serves a client that trusts the CA", async () => {
    expect(await outcome(clientFor(service, credentials.createSsl(pki.ca.cert)))).toBe("NOT_FOUND");
  });

  it("serves a client that trusts the CA and sends a certificate it does not ask for", async () => {
    const creds = credentials.createSsl(pki.ca.cert, pki.client.key, pki.client.cert);
    expect(await outcome(clientFor(service, creds))).toBe("NOT_FOUND");
  });

  it("refuses a plaintext client", async () => {
    expect(await outcome(clientFor(service, credentials.createInsecure()))).toBe("UNAVAILABLE");
  });

  it("is refused by a client that does not trust the CA", async () => {
    expect(await outcome(clientFor(service, credentials.createSsl(pki.strangerClient.cert)))).toBe("UNAVAILABLE");
  });
});

describe("mutual TLS (TLS_CLIENT_CA_FILE)", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService({
      redisUrl: testRedisUrl(),
      config: { tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile } },
    });
  });

  afterAll(async () => {
    await service?.stop();
  });

  it("serves a client with a certificate signed by the client CA", async () => {
    const creds = credentials.createSsl(pki.ca.cert, pki.client.key, pki.client.cert);
    expect(await outcome(clientFor(service, creds))).toBe("NOT_FOUND");
  });

  it("refuses a client without a certificate", async () => {
    expect(await outcome(clientFor(service, credentials.createSsl(pki.ca.cert)))).toBe("UNAVAILABLE");
  });

  it("refuses a client whose certificate comes from another CA", async () => {
    const creds = credentials.createSsl(pki.ca.cert, pki.strangerClient.key, pki.strangerClient.cert);
    expect(await outcome(clientFor(service, creds))).toBe("UNAVAILABLE");
  });

  it("refuses a plaintext client", async () => {
    expect(await outcome(clientFor(service, credentials.createInsecure()))).toBe("UNAVAILABLE");
  });
});
