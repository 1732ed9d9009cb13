import { isSpiffeId, looksLikeSpiffeId } from "./spiffeId.js";
import { authFailure, type AuthenticationResult } from "./principal.js";

/**
 * The parts of Node's tls.PeerCertificate (what grpc-js's
 * call.getAuthContext().sslPeerCertificate holds) that identify a client.
 * A certificate with several CNs has an array there.
 */
export interface PeerCertificateLike {
  readonly subject?: { readonly CN?: string | readonly string[] } | undefined;
  /** Node's rendering: `URI:spiffe://example.org/ns/x, DNS:foo`; values with a comma and such are JSON-quoted. */
  readonly subjectaltname?: string | undefined;
  /** notAfter as Node renders it: `Dec  2 22:43:58 2026 GMT`. */
  readonly valid_to?: string | undefined;
}

export interface SubjectAltName {
  readonly type: string;
  readonly value: string;
}

/**
 * Splits Node's subjectaltname string into entries. Node quotes a value as a
 * JSON string when it holds a comma, a quote or a backslash (since the
 * CVE-2021-44532 fix), so a comma inside a quoted value does not split.
 * Returns undefined when the string is not in that shape.
 */
export function parseSubjectAltNames(text: string): SubjectAltName[] | undefined {
  const names: SubjectAltName[] = [];
  let at = 0;
  while (at < text.length) {
    const colon = text.indexOf(":", at);
    if (colon < 0) return undefined;
    const type = text.slice(at, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === "\\" ? 2 : 1;
      if (end >= text.length) return undefined;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        return undefined;
      }
    } else {
      const comma = text.indexOf(", ", colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    names.push({ type, value });
    if (end === text.length) break;
    if (!text.startsWith(", ", end)) return undefined;
    at = end + 2;
  }
  return names;
}

function invalid(message: string): AuthenticationResult {
  return authFailure("CERTIFICATE_IDENTITY_INVALID", message);
}

/**
 * The principal a client certificate names: its one SPIFFE ID (a URI SAN), or
 * without one its subject CN as `CN=<cn>`. The certificate was verified by the
 * TLS layer against the client CA; this only reads the identity out of it.
 */
export function certificatePrincipal(certificate: PeerCertificateLike): AuthenticationResult {
  const names = certificate.subjectaltname ? parseSubjectAltNames(certificate.subjectaltname) : [];
  if (names === undefined) return invalid("the client certificate's subject alternative names cannot be read");
  const spiffeUris = names.filter((name) => name.type === "URI" && looksLikeSpiffeId(name.value)).map((name) => name.value);
  if (spiffeUris.length > 1) return invalid(`the client certificate has ${spiffeUris.length} SPIFFE IDs; it must have at most one`);

  let id: string;
  if (spiffeUris.length === 1) {
    id = spiffeUris[0]!;
    if (!isSpiffeId(id)) return invalid("the client certificate's SPIFFE ID is not a valid SPIFFE ID");
  } else {
    const cn = certificate.subject?.CN;
    if (Array.isArray(cn)) return invalid("the client certificate has several subject CNs and no SPIFFE ID");
    if (typeof cn !== "string" || cn === "") return invalid("the client certificate has neither a SPIFFE ID nor a subject CN");
    id = `CN=${cn}`;
  }

  const notAfter = certificate.valid_to === undefined ? Number.NaN : Date.parse(certificate.valid_to);
  return {
    ok: true,
    principal: Number.isFinite(notAfter) ? { kind: "certificate", id, scopes: [], expiresAt: notAfter } : { kind: "certificate", id, scopes: [] },
  };
}

/** grpc-js gives undefined without a certificate; Node's getPeerCertificate() gives {}. */
export function hasCertificate(certificate: PeerCertificateLike | undefined): certificate is PeerCertificateLike {
  return certificate !== undefined && (certificate.subject !== undefined || certificate.subjectaltname !== undefined);
}
