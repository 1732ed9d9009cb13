/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --cpu-prof`):
 * top functions by self time, by inclusive time, and self time by package.
 *
 *   node bench/profileTop.mjs <file.cpuprofile> [--top 25] [--match text]
 *
 * --match keeps only the inclusive table's frames whose name or file contains text.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: "string", default: "25" }, match: { type: "string" } } });
if (positionals.length === 0) {
  console.error("usage: node bench/profileTop.mjs <file.cpuprofile> [--top N] [--match text]");
  process.exit(2);
}
const TOP = Number(values.top);
const profile = JSON.parse(readFileSync(positionals[0], "utf8"));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const selfUs = new Map();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const IDLE = new Set(["(idle)"]);
let idleUs = 0;
for (const [id, us] of selfUs) if (IDLE.has(byId.get(id).callFrame.functionName)) idleUs += us;
/** Percentages are of busy time (idle excluded). */
const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0) - idleUs;

function shortUrl(url) {
  if (!url) return "";
  const p = url.replace(/^file:\/\//, "");
  const nm = p.lastIndexOf("node_modules/");
  if (nm >= 0) return p.slice(nm + "node_modules/".length);
  const dist = p.indexOf("/dist/");
  if (dist >= 0) return p.slice(dist + 1);
  // A patched copy of dist/ measured with BENCH_SERVICE_DIST=bench/results/<name>
  const copy = /\/bench\/results\/[^/]+\/(.*)$/.exec(p);
  if (copy) return `dist/${copy[1]}`;
  const bench = p.indexOf("/bench/");
  if (bench >= 0) return p.slice(bench + 1);
  return p;
}
function packageOf(url) {
  const u = shortUrl(url);
  if (!u) return "(native / V8 / GC)";
  if (u.startsWith("node:")) return "node: core";
  if (u.startsWith("dist/")) return `service ${path.dirname(u)}`;
  const parts = u.split("/");
  return parts[0].startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0];
}
const key = (n) => {
  const f = n.callFrame;
  return `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}${f.url ? `:${f.lineNumber + 1}` : ""}`;
};

const self = new Map();
const pkg = new Map();
const inclusive = new Map();
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  if (IDLE.has(node.callFrame.functionName)) continue;
  self.set(key(node), (self.get(key(node)) ?? 0) + us);
  pkg.set(packageOf(node.callFrame.url), (pkg.get(packageOf(node.callFrame.url)) ?? 0) + us);
  // Inclusive: every distinct frame on the stack gets the sample once.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const k = key(byId.get(cur));
    if (seen.has(k)) continue;
    seen.add(k);
    inclusive.set(k, (inclusive.get(k) ?? 0) + us);
  }
}

const pct = (us) => `${((100 * us) / totalUs).toFixed(1).padStart(5)}%`;
const ms = (us) => `${(us / 1000).toFixed(0).padStart(6)} ms`;
function print(title, map, filter = () => true) {
  console.log(`\n${title}`);
  [...map]
    .filter(([k]) => filter(k))
    .sort((a, b) => b[1] - a[1])
    .slice(0, TOP)
    .forEach(([k, us]) => console.log(`${pct(us)} ${ms(us)}  ${k}`));
}
console.log(`${positionals[0]}: ${(totalUs / 1e6).toFixed(2)} s busy (+ ${(idleUs / 1e6).toFixed(2)} s idle); percentages of busy time`);
print("self time by package", pkg);
print("self time by function", self);
const skip = /^\((root|program|idle)\)|processTicksAndRejections|runMicrotasks|listOnTimeout|processTimers/;
print("inclusive time by function", inclusive, (k) => !skip.test(k) && (!values.match || k.includes(values.match)));
