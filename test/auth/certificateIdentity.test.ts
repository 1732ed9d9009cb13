/**
 * The identity in a client certificate: its one SPIFFE ID, else CN=<cn>. The
 * subjectaltname strings are Node's own rendering, checked against
 * certificates made with openssl.
 */
import { execFileSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { certificatePrincipal, parseSubjectAltNames, type PeerCertificateLike } from "../../src/auth/index.js";
import { type TempDir, tempDir } from "./authSupport.js";

function idOf(certificate: PeerCertificateLike): string {
  const result = certificatePrincipal(certificate);
  return result.ok ? result.principal.id : result.reason;
}

describe("parseSubjectAltNames", () => {
  it.each([
    ["", []],
    ["DNS:foo.example", [{ type: "DNS", value: "foo.example" }]],
    [
      "URI:spiffe://example.org/ns/x, DNS:foo, IP Address:10.0.0.1",
      [
        { type: "URI", value: "spiffe://example.org/ns/x" },
        { type: "DNS", value: "foo" },
        { type: "IP Address", value: "10.0.0.1" },
      ],
    ],
    [
      'URI:"http://a.example/p?q=1\\u002c2", DNS:foo',
      [
        { type: "URI", value: "http://a.example/p?q=1,2" },
        { type: "DNS", value: "foo" },
      ],
    ],
  ])("reads %j", (text, names) => {
    expect(parseSubjectAltNames(text)).toEqual(names);
  });

  it.each(["no colon here", 'URI:"unterminated', 'URI:"a"DNS:b'])("gives up on %j", (text) => {
    expect(parseSubjectAltNames(text)).toBeUndefined();
  });
});

describe("certificatePrincipal", () => {
  it.each([
    ["a SPIFFE ID among other SANs", { subject: { CN: "x" }, subjectaltname: "DNS:x.svc, URI:spiffe://example.org/ns/a/sa/x" }, "spiffe://example.org/ns/a/sa/x"],
    ["the CN when no SPIFFE ID", { subject: { CN: "reporting" }, subjectaltname: "DNS:reporting, URI:https://example.org/x" }, "CN=reporting"],
    ["the CN without any SAN", { subject: { CN: "reporting" } }, "CN=reporting"],
    ["two SPIFFE IDs", { subject: { CN: "x" }, subjectaltname: "URI:spiffe://example.org/a, URI:spiffe://example.org/b" }, "CERTIFICATE_IDENTITY_INVALID"],
    ["a malformed SPIFFE ID", { subject: { CN: "x" }, subjectaltname: "URI:spiffe://Example.org/a" }, "CERTIFICATE_IDENTITY_INVALID"],
    ["a SPIFFE ID with a query", { subject: { CN: "x" }, subjectaltname: 'URI:"spiffe://example.org/a?x=1\\u002c2"' }, "CERTIFICATE_IDENTITY_INVALID"],
    ["an upper-case scheme", { subject: { CN: "x" }, subjectaltname: "URI:SPIFFE://example.org/a" }, "CERTIFICATE_IDENTITY_INVALID"],
    ["neither SPIFFE ID nor CN", { subject: {}, subjectaltname: "DNS:x" }, "CERTIFICATE_IDENTITY_INVALID"],
    ["several CNs", { subject: { CN: ["a", "b"] } }, "CERTIFICATE_IDENTITY_INVALID"],
    ["an unreadable SAN string", { subject: { CN: "x" }, subjectaltname: 'URI:"broken' }, "CERTIFICATE_IDENTITY_INVALID"],
  ])("takes %s", (_name, certificate, expected) => {
    expect(idOf(certificate)).toBe(expected);
  });

  it("says how many SPIFFE IDs it found", () => {
    expect(certificatePrincipal({ subjectaltname: "URI:spiffe://example.org/a, URI:spiffe://example.org/b" })).toMatchObject({
      message: "the client certificate has 2 SPIFFE IDs; it must have at most one",
    });
  });

  it("gives the certificate's notAfter as the expiry", () => {
    const result = certificatePrincipal({ subject: { CN: "a" }, valid_to: "Dec  2 22:43:58 2026 GMT" });

    expect(result).toMatchObject({ ok: true, principal: { expiresAt: Date.UTC(2026, 11, 2, 22, 43, 58) } });
  });
});

describe("certificatePrincipal on certificates made by openssl", () => {
  let files: TempDir;

  function certificate(name: string, cn: string, san: string | undefined): PeerCertificateLike {
    const cert = path.join(files.dir, `${name}.crt`);
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-keyout", path.join(files.dir, `${name}.key`), "-out", cert, "-subj", `/CN=${cn}`,
      ...(san ? ["-addext", `subjectAltName=${san}`] : []),
    ], { stdio: "ignore" });
    const x509 = new X509Certificate(readFileSync(cert));
    return { subject: { CN: cn }, subjectaltname: x509.subjectAltName, valid_to: x509.validTo };
  }

  beforeAll(() => {
    files = tempDir();
  });

  afterAll(() => files.remove());

  it("reads the SPIFFE ID next to DNS and IP SANs", () => {
    expect(idOf(certificate("spiffe", "dispatcher", "DNS:dispatcher.svc,URI:spiffe://example.org/ns/ops/sa/dispatcher,IP:10.0.0.7"))).toBe(
      "spiffe://example.org/ns/ops/sa/dispatcher",
    );
  });

  it("refuses two SPIFFE IDs", () => {
    expect(idOf(certificate("two", "dispatcher", "URI:spiffe://example.org/a,URI:spiffe://example.org/b"))).toBe("CERTIFICATE_IDENTITY_INVALID");
  });

  it("falls back to the CN", () => {
    expect(idOf(certificate("cn", "reporting", "DNS:reporting.example.test"))).toBe("CN=reporting");
  });
});
