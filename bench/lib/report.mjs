/** Targets, table cells and the printed table, shared by the sections. */
import { round } from "./stats.mjs";

/** A target on the ratio of a figure to its baseline; undefined when either is missing. */
export function ratioTarget(name, value, baseline, op, limit) {
  if (value === undefined || baseline === undefined) return undefined;
  const r = value / baseline;
  return { name, value, baseline, ratio: Math.round(r * 1000) / 1000, target: `${op} ${limit} x baseline`, met: op === ">=" ? r >= limit : r <= limit };
}

export const fmt = (v) => {
  if (v === undefined || v === null || Number.isNaN(v)) return "-";
  const r = round(v);
  return Math.abs(r) >= 1000 ? r.toLocaleString("en-US") : String(r);
};
export const ratioText = (a, b) => (Number.isFinite(a / b) ? (a / b).toFixed(3) : "-");
export const trio = (d) => (d ? `${fmt(d.min)} / ${fmt(d.median)} / ${fmt(d.max)}` : "-");
/** min / median / max of a spread(), rounded, for the JSON's detail. */
export const trioOf = (s) => ({ min: round(s.min), median: round(s.median), max: round(s.max) });

/** The target column of a row: "met (ratio target)", "MISSED (...)", or empty. */
export function metText(targets, name) {
  const t = name ? targets.find((x) => x.name === name) : undefined;
  return t ? `${t.met ? "met" : "MISSED"} (${t.ratio !== undefined ? t.ratio.toFixed(3) : fmt(t.value)} ${t.target})` : "";
}

export function printTable(rows) {
  const header = ["figure", "baseline min / median / max", "service min / median / max", "ratio", "target"];
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => String(r[i]).length)));
  const line = (r) => r.map((c, i) => String(c).padEnd(widths[i])).join(" | ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("-|-"));
  for (const r of rows) console.log(line(r));
}
