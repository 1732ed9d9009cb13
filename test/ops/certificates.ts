/**
 * A throwaway PKI made with the openssl binary (execFile, no shell): a CA, a
 * server certificate for 127.0.0.1/localhost, a client certificate from the
 * same CA, and a client certificate from an unrelated CA. EC P-256 keys, valid
 * for one day.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Pem {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface TestPki {
  readonly dir: string;
  readonly ca: Pem;
  readonly server: Pem;
  readonly client: Pem;
  /** Signed by another CA the service does not trust. */
  readonly strangerClient: Pem;
  remove(): Promise<void>;
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"];

async function pem(dir: string, name: string): Promise<Pem> {
  const certFile = path.join(dir, `${name}.crt`);
  const keyFile = path.join(dir, `${name}.key`);
  return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
}

async function makeCa(dir: string, name: string): Promise<Pem> {
  await run("openssl", [
    "req", "-x509", ...KEY,
    "-keyout", path.join(dir, `${name}.key`), "-out", path.join(dir, `${name}.crt`),
    "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return pem(dir, name);
}

async function makeLeaf(dir: string, name: string, ca: Pem, extensions: string[]): Promise<Pem> {
  await run("openssl", [
    "req", "-x509", ...KEY,
    "-CA", ca.certFile, "-CAkey", ca.keyFile,
    "-keyout", path.join(dir, `${name}.key`), "-out", path.join(dir, `${name}.crt`),
    "-subj", `/CN=${name}`,
    "-addext", "basicConstraints=critical,CA:FALSE",
    ...extensions.flatMap((extension) => ["-addext", extension]),
  ]);
  return pem(dir, name);
}

export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "delivery-ops-pki-"));
  try {
    const [ca, stranger] = await Promise.all([makeCa(dir, "test-ca"), makeCa(dir, "stranger-ca")]);
    const [server, client, strangerClient] = await Promise.all([
      makeLeaf(dir, "server", ca, ["subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"]),
      makeLeaf(dir, "client", ca, ["extendedKeyUsage=clientAuth"]),
      makeLeaf(dir, "stranger-client", stranger, ["extendedKeyUsage=clientAuth"]),
    ]);
    return { dir, ca, server, client, strangerClient, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}
