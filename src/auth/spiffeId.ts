/**
 * SPIFFE IDs as the SPIFFE-ID specification defines them: `spiffe://` in lower
 * case, a trust domain of lower-case letters, digits, `.`, `-` and `_`, then
 * zero or more non-empty path segments of letters, digits, `.`, `-` and `_`
 * (never `.` or `..`); no port, user info, query or fragment.
 */

const SPIFFE_ID = /^spiffe:\/\/[a-z0-9._-]{1,255}((?:\/[A-Za-z0-9._-]+)*)$/;
const MAX_LENGTH = 2048;

/** Is this URI meant as a SPIFFE ID (whatever its case or validity)? */
export function looksLikeSpiffeId(uri: string): boolean {
  return uri.slice(0, 7).toLowerCase() === "spiffe:";
}

export function isSpiffeId(uri: string): boolean {
  if (uri.length > MAX_LENGTH) return false;
  const match = SPIFFE_ID.exec(uri);
  if (!match) return false;
  return (match[1] ?? "").split("/").every((segment) => segment !== "." && segment !== "..");
}
