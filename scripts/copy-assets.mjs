// Copies the non-TypeScript files the service reads at run time into dist/:
// Lua scripts and the descriptor set (which holds every served proto).
import { cpSync } from "node:fs";

const assets = [
  ["src/store/redis/lua", "dist/store/redis/lua"],
  ["src/gen/descriptor_set.binpb", "dist/gen/descriptor_set.binpb"],
];
for (const [from, to] of assets) cpSync(from, to, { recursive: true });
