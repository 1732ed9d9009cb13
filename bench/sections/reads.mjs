/**
 * Reads: GetDelivery of existing deliveries (each with some history) by 1, 16
 * or 64 concurrent workers; same baselines as the commands section.
 */
import { callUnary } from "../lib/grpcClient.mjs";
import { benchId, BUDGET, NOTES } from "../lib/fixtures.mjs";
import { ratioTarget } from "../lib/report.mjs";
import { runUnarySection, unaryRows } from "../lib/unaryLoad.mjs";

const readWorker = (client, ids) => async (w, timed, state) => {
  for (let n = w; !state.stop; n += 7) {
    const deliveryId = ids[n % ids.length];
    await timed(() => callUnary(client, "getDelivery", { deliveryId, atVersion: undefined }));
  }
};

async function createDeliveries(client, n) {
  const ids = Array.from({ length: n }, () => benchId("r"));
  for (let i = 0; i < n; i += 32) {
    await Promise.all(
      ids.slice(i, i + 32).map((deliveryId) => callUnary(client, "createDelivery", { deliveryId, budget: BUDGET, notes: NOTES, requestId: `${deliveryId}-c` })),
    );
  }
  // Two more events each, so reads return a delivery with some history.
  for (const step of ["startDelivery", "increaseBudget"]) {
    await Promise.all(ids.map((deliveryId) => callUnary(client, step, { deliveryId, expectedVersion: undefined, requestId: `${deliveryId}-${step}`, amount: 500n })));
  }
  return ids;
}

export default {
  name: "reads",
  run: (ctx) =>
    runUnarySection(
      ctx,
      "reads",
      (client, _tag, ids) => readWorker(client, ids),
      (realClient) => createDeliveries(realClient, ctx.cfg.readIds),
    ),
  targets: (piece) => [
    ratioTarget("reads c64 RPS", piece.c64?.rps, piece.c64?.baseline_rps, ">=", 0.8),
    ratioTarget("reads c64 server CPU/call", piece.c64?.server_us_per_call, piece.c64?.baseline_server_us_per_call, "<=", 1.4),
  ],
  rows: (piece, targets) => unaryRows("reads", piece, targets),
};
