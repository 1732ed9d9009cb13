import { createHash } from "node:crypto";

/** The namespace of delivery ids derived from a create's request_id (fixed forever: changing it breaks retries). */
export const DELIVERY_ID_NAMESPACE = "5b0f3c3e-6d0a-4c47-9a43-8f6a3f3f6d11";

/** RFC 9562 version 5 (SHA-1, name-based) UUID: the same name always gives the same id. */
export function nameBasedUuid(name: string, namespace = DELIVERY_ID_NAMESPACE): string {
  const hash = createHash("sha1")
    .update(Buffer.from(namespace.replaceAll("-", ""), "hex"))
    .update(name, "utf8")
    .digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
