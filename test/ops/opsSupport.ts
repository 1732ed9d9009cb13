/**
 * Helpers of the operations tests (test/ops/): gRPC status names for
 * assertions and a Prometheus text-format reader. Waiting, health and
 * delivery calls are shared: see ../support/async.ts, ../support/health.ts,
 * ../support/deliveries.ts and ../support/watch.ts.
 */
import { status } from "@grpc/grpc-js";

/** The status name of a gRPC error (readable in assertion diffs). */
export function codeName(error: { code?: number } | undefined): string {
  return error?.code === undefined ? "no code" : (status[error.code] ?? String(error.code));
}

// ---------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------

/** One scrape of /metrics, parsed. */
export interface Scrape {
  readonly text: string;
  /** `# TYPE` of each metric family. */
  readonly types: ReadonlyMap<string, string>;
  /** The value of one sample, e.g. value('delivery_rpcs_total', { method: 'GetDelivery', code: 'OK' }); 0 when absent. */
  value(name: string, labels?: Readonly<Record<string, string>>): number;
  /** Every sample of a name, with its labels. */
  samples(name: string): { labels: Record<string, string>; value: number }[];
}

function parseLabels(raw: string | undefined): Record<string, string> {
  const labels: Record<string, string> = {};
  if (!raw) return labels;
  for (const match of raw.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[match[1]!] = match[2]!.replace(/\\(.)/g, "$1");
  return labels;
}

/** Parses the Prometheus text exposition format (samples and `# TYPE` lines). */
export function parsePrometheus(text: string): Scrape {
  const types = new Map<string, string>();
  const all: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (sample) all.push({ name: sample[1]!, labels: parseLabels(sample[2]), value: Number(sample[3]) });
  }
  const samples = (name: string) => all.filter((s) => s.name === name).map(({ labels, value }) => ({ labels, value }));
  return {
    text,
    types,
    samples,
    value(name, labels = {}) {
      const found = samples(name).find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      return found?.value ?? 0;
    },
  };
}

/** GET /metrics on `metricsPort`, parsed; fails unless it answers 200. */
export async function scrape(metricsPort: number): Promise<Scrape> {
  const response = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
  return parsePrometheus(await response.text());
}
