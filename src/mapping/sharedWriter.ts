import { BinaryWriter } from "@bufbuild/protobuf/wire";

/**
 * One protobuf writer for the process's hot encodings (updates, snapshots,
 * feed messages, stored events): a writer per message starts at 128 bytes and
 * grows (a copy) for most of ours; this one keeps its grown buffer. finish()
 * copies the bytes out and resets it, so callers never share memory (the copy
 * is handed out as a Buffer over itself: gRPC and ioredis send it as it is).
 * Encoding is synchronous: no two encodings interleave.
 */
const writer = new BinaryWriter();

/** The bytes `encode` writes, e.g. `encoded((w) => Message.encode(value, w))`. */
export function encoded(encode: (writer: BinaryWriter) => BinaryWriter): Buffer {
  try {
    const bytes = encode(writer).finish();
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  } catch (error) {
    // A failed encoding leaves nothing behind for the next one.
    writer.finish();
    throw error;
  }
}
