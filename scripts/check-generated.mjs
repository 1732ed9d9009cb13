// Regenerates src/gen/ and fails when the result differs from what is committed.
import { execSync } from "node:child_process";

execSync("npm run generate", { stdio: "inherit" });
const changed = execSync("git status --porcelain -- src/gen", { encoding: "utf8" }).trim();
if (changed) {
  console.error(`src/gen/ is stale; run \`npm run generate\` and commit the result:\n${changed}`);
  process.exit(1);
}
console.log("src/gen/ is up to date");
