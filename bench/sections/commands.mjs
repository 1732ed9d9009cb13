/**
 * Commands: 1, 16 or 64 concurrent workers running deliveries through create,
 * start, increase budget, pick up and deliver (with request_ids), into Redis;
 * against the empty unary RPC (and, at the top level, same-size responses).
 */
import { callUnary } from "../lib/grpcClient.mjs";
import { benchId, lifecycleRequests } from "../lib/fixtures.mjs";
import { ratioTarget } from "../lib/report.mjs";
import { runUnarySection, unaryRows } from "../lib/unaryLoad.mjs";

/** A mix of real commands: each worker runs deliveries through create, start, increase budget, pick up, deliver. */
export const commandWorker = (client, runTag) => async (w, timed, state) => {
  for (let n = 0; !state.stop; n++) {
    const id = benchId(`c${w}`);
    for (const [method, request] of lifecycleRequests(id, `${runTag}-${n}`)) {
      if (state.stop) return;
      if (!(await timed(() => callUnary(client, method, request)))) break;
    }
  }
};

export default {
  name: "commands",
  run: (ctx) => runUnarySection(ctx, "commands", commandWorker),
  targets: (piece) => [
    ratioTarget("commands c64 RPS", piece.c64?.rps, piece.c64?.baseline_rps, ">=", 0.6),
    ratioTarget("commands c64 server CPU/call", piece.c64?.server_us_per_call, piece.c64?.baseline_server_us_per_call, "<=", 2),
  ],
  rows: (piece, targets) => unaryRows("commands", piece, targets),
};
