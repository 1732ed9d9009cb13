import type { Server, ServerWritableStream, ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";

export interface Health {
  setServing(serving: boolean): void;
  /** Ends every open Health/Watch stream (OK), so a graceful shutdown need not wait for them. */
  endWatches(): void;
}

/**
 * The standard grpc.health.v1 service for the given names. grpc-health-check's
 * Watch streams never end on their own, and grpc-js's tryShutdown waits for
 * every open call: the Watch calls are tracked here so shutdown can end them.
 */
export function addHealth(server: Server, serviceNames: readonly string[]): Health {
  const statuses = (status: ServingStatus) => Object.fromEntries(serviceNames.map((name) => [name, status]));
  const health = new HealthImplementation(statuses("SERVING"));
  let captured: { definition: ServiceDefinition; implementation: UntypedServiceImplementation } | undefined;
  health.addToServer({
    addService: (definition: ServiceDefinition, implementation: UntypedServiceImplementation) => {
      captured = { definition, implementation };
    },
  } as unknown as Server);
  if (!captured) throw new Error("grpc-health-check registered no service");

  const watches = new Set<ServerWritableStream<unknown, unknown>>();
  const watch = captured.implementation.watch as (call: ServerWritableStream<unknown, unknown>) => void;
  server.addService(captured.definition, {
    ...captured.implementation,
    watch: (call: ServerWritableStream<unknown, unknown>) => {
      watches.add(call);
      const forget = () => watches.delete(call);
      call.on("cancelled", forget);
      call.on("finish", forget);
      watch(call);
    },
  });

  return {
    setServing(serving) {
      for (const name of serviceNames) health.setStatus(name, serving ? "SERVING" : "NOT_SERVING");
    },
    endWatches() {
      for (const call of watches) call.end();
      watches.clear();
    },
  };
}
