#!/usr/bin/env node
/**
 * Makes a signed JWT to try the service's authentication with, e.g. grpcurl.
 *
 * The first run creates an RSA key pair next to this script (or in --dir):
 *   keys.json        the public key as a JWKS: point AUTH_JWKS_FILE at it
 *   private-key.pem  the private key (mode 600): keep it, later runs sign with it
 * Every run prints one token on stdout; hints go to stderr.
 *
 *   node examples/auth/make-token.mjs --sub alice --scope "deliveries.read deliveries.write" \
 *     --iss https://auth.example.test --aud delivery-service --ttl 1h
 *
 *   AUTH_JWKS_FILE=examples/auth/keys.json AUTH_ISSUER=https://auth.example.test \
 *   AUTH_AUDIENCE=delivery-service AUTH_POLICY_FILE=examples/auth/policy.json npm start
 *
 *   grpcurl -plaintext -H "authorization: Bearer $(node examples/auth/make-token.mjs --sub alice --scope deliveries.read)" \
 *     -d '{"delivery_id": "..."}' 127.0.0.1:50051 delivery.v1.DeliveryService/GetDelivery
 *
 * Delete both files to start over with a new key (a rotation: tokens signed
 * by the old key stop working once the service re-reads keys.json).
 */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { calculateJwkThumbprint, exportJWK, exportPKCS8, generateKeyPair, importPKCS8, SignJWT } from "jose";

const ALG = "RS256";

function usage(problem) {
  process.stderr.write(
    `${problem ? `${problem}\n\n` : ""}usage: make-token.mjs --sub <sub> [--scope "<scope> ..."] [--iss <issuer>] [--aud <audience>] [--ttl <1h|30m|3600s>] [--dir <key directory>]\n`,
  );
  process.exit(problem ? 2 : 0);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      sub: { type: "string" },
      scope: { type: "string", default: "" },
      iss: { type: "string", default: "https://auth.example.test" },
      aud: { type: "string", default: "delivery-service" },
      ttl: { type: "string", default: "1h" },
      dir: { type: "string", default: path.dirname(fileURLToPath(import.meta.url)) },
      help: { type: "boolean", short: "h", default: false },
    },
  }));
} catch (error) {
  usage(error.message);
}
if (values.help) usage();
if (!values.sub) usage("--sub is required");
if (!/^\d+\s?(s|m|h|d)$/.test(values.ttl)) usage(`--ttl must look like 3600s, 30m, 1h or 7d, got "${values.ttl}"`);

const publicFile = path.join(values.dir, "keys.json");
const privateFile = path.join(values.dir, "private-key.pem");

/** The signing key and its kid: the saved pair if there is one, else a new pair saved for next time. */
async function signingKey() {
  if (existsSync(publicFile) && existsSync(privateFile)) {
    const jwks = JSON.parse(await readFile(publicFile, "utf8"));
    const kid = jwks.keys?.[0]?.kid;
    if (typeof kid !== "string") throw new Error(`${publicFile} has no keys[0].kid; delete it and ${privateFile} to start over`);
    return { key: await importPKCS8(await readFile(privateFile, "utf8"), ALG), kid };
  }
  if (existsSync(publicFile) || existsSync(privateFile)) {
    throw new Error(`only one of ${publicFile} and ${privateFile} exists; delete it to start over`);
  }
  const { publicKey, privateKey } = await generateKeyPair(ALG, { modulusLength: 2048, extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  await mkdir(values.dir, { recursive: true });
  await writeFile(privateFile, await exportPKCS8(privateKey), { mode: 0o600 });
  await writeFile(publicFile, `${JSON.stringify({ keys: [{ ...jwk, kid, alg: ALG, use: "sig" }] }, null, 2)}\n`);
  process.stderr.write(`new key pair: ${publicFile} (public, for AUTH_JWKS_FILE) and ${privateFile} (private)\n`);
  return { key: privateKey, kid };
}

const { key, kid } = await signingKey();
const claims = values.scope.trim() === "" ? {} : { scope: values.scope.trim().split(/\s+/).join(" ") };
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: ALG, kid, typ: "JWT" })
  .setSubject(values.sub)
  .setIssuer(values.iss)
  .setAudience(values.aud)
  .setIssuedAt()
  .setExpirationTime(values.ttl.replace(/\s/g, ""))
  .sign(key);

process.stderr.write(`token for sub=${values.sub}${claims.scope ? ` scope="${claims.scope}"` : ""}, valid ${values.ttl}; serve with AUTH_ISSUER=${values.iss} AUTH_AUDIENCE=${values.aud}\n`);
process.stdout.write(`${token}\n`);
