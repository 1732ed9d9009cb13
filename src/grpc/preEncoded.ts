import type { MethodDefinition } from "@grpc/grpc-js";

/** Bytes as a Buffer over the same memory (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A method whose responses may be bytes the service encoded already (an update
 * encoded once for the append, the watchers and the command's answer): they go
 * out as they are; a message object is encoded by the method's own serializer.
 */
export function acceptingEncoded<Req, Res>(method: MethodDefinition<Req, Res>): MethodDefinition<Req, Res | Uint8Array> {
  const encode = method.responseSerialize;
  return { ...method, responseSerialize: (value) => (value instanceof Uint8Array ? asBuffer(value) : encode(value)) };
}
