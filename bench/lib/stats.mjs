/** Small statistics helpers: percentiles of one run, median/min/max across runs. */

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export function sortNumbers(values) {
  return Float64Array.from(values).sort();
}

/** { min, median, max, values } of one figure across runs (NaN and undefined skipped). */
export function spread(values) {
  const ok = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (ok.length === 0) return { min: Number.NaN, median: Number.NaN, max: Number.NaN, values };
  const s = [...ok].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { min: s[0], median, max: s[s.length - 1], values: ok };
}

/** Rounds for display and JSON: 3 significant decimals below 10, fewer above. */
export function round(value) {
  if (!Number.isFinite(value)) return value;
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : 3;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const nowNs = () => Number(process.hrtime.bigint());
