// Copies the non-TypeScript files the service reads at run time into dist/:
// Lua scripts, the descriptor set and the vendored reflection protos.
import { cpSync } from "node:fs";

const assets = [
  ["src/store/redis/lua", "dist/store/redis/lua"],
  ["src/gen/descriptor_set.binpb", "dist/gen/descriptor_set.binpb"],
  ["src/grpc/reflection/proto", "dist/grpc/reflection/proto"],
];
for (const [from, to] of assets) cpSync(from, to, { recursive: true });
