// Copies the third-party .proto files the contract serves (health, error
// details) from their npm packages into third_party/proto/, so `buf` builds
// them into the one descriptor set that reflection serves. The reflection
// protos are vendored by hand (no npm package ships them); see
// third_party/proto/README.md. Run by `npm run generate`.
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const files = [
  ["node_modules/grpc-health-check/proto/health/v1/health.proto", "grpc/health/v1/health.proto"],
  ["node_modules/google-proto-files/google/rpc/status.proto", "google/rpc/status.proto"],
  ["node_modules/google-proto-files/google/rpc/error_details.proto", "google/rpc/error_details.proto"],
  ["node_modules/google-proto-files/google/rpc/code.proto", "google/rpc/code.proto"],
  ["node_modules/google-proto-files/LICENSE", "LICENSE"],
];
for (const [from, to] of files) {
  const target = path.join(root, "third_party/proto", to);
  mkdirSync(path.dirname(target), { recursive: true });
  copyFileSync(path.join(root, from), target);
}
