// `buf breaking` of proto/ against the contract as last released
// (contract/released-*.binpb, FILE rules). Fails on any break that
// contract/accepted-breaks.json does not list; prints the accepted ones.
//
// Cutting a release: `npx buf build proto -o contract/released-<version>.binpb`
// (from the release's commit), point accepted-breaks.json's "against" at it
// and empty its "accepted" list.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

const accepted = JSON.parse(readFileSync("contract/accepted-breaks.json", "utf8"));
const against = `contract/${accepted.against}`;
const run = spawnSync("npx", ["buf", "breaking", "proto", "--against", against, "--error-format", "json"], { encoding: "utf8" });
if (run.status !== 0 && run.status !== 100) {
  console.error(run.stderr || run.stdout);
  console.error(`buf breaking could not run (exit ${run.status})`);
  process.exit(1);
}
const found = run.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line));
const key = (b) => `${b.type} ${b.message}`;
const allowed = new Set(accepted.accepted.map(key));
const unexpected = found.filter((b) => !allowed.has(key(b)));
for (const b of found.filter((b) => allowed.has(key(b)))) console.log(`accepted break: ${b.path}:${b.start_line}: ${b.message}`);
if (unexpected.length > 0) {
  for (const b of unexpected) console.error(`${b.path}:${b.start_line}:${b.start_column}: ${b.type}: ${b.message}`);
  console.error(`${unexpected.length} breaking change(s) against ${against}; fix them, or accept one on purpose in contract/accepted-breaks.json`);
  process.exit(1);
}
console.log(`no unaccepted breaking change against ${against}`);
