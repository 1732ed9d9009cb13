import { type handleUnaryCall, type Server, type ServiceDefinition, status, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { Logger } from "../logger.js";
import { UnknownHealthService } from "./conditions.js";
import { toServiceError } from "./errorStatus.js";

export interface Health {
  setServing(serving: boolean): void;
  /** grpc.health.v1.Health, ready to mount (through the guard, whose registry ends its Watch streams at shutdown). */
  readonly definition: ServiceDefinition;
  readonly implementation: UntypedServiceImplementation;
}

/**
 * The standard grpc.health.v1 service for the given names. grpc-health-check's
 * Watch streams never end on their own, and grpc-js's tryShutdown waits for
 * every open call: the server mounts it through the guard, so the stream
 * registry ends them at shutdown.
 */
export function createHealth(serviceNames: readonly string[], logger: Logger): Health {
  const statuses = (status: ServingStatus) => Object.fromEntries(serviceNames.map((name) => [name, status]));
  const health = new HealthImplementation(statuses("SERVING"));
  let captured: { definition: ServiceDefinition; implementation: UntypedServiceImplementation } | undefined;
  health.addToServer({
    addService: (definition: ServiceDefinition, implementation: UntypedServiceImplementation) => {
      captured = { definition, implementation };
    },
  } as unknown as Server);
  if (!captured) throw new Error("grpc-health-check registered no service");
  // Its NOT_FOUND for an unknown name gets the same details as every other error.
  const check = captured.implementation.check as handleUnaryCall<{ service: string }, unknown>;
  const implementation: UntypedServiceImplementation = {
    ...captured.implementation,
    check: ((call, callback) =>
      check(call, (error, value) => {
        if (error?.code === status.NOT_FOUND) callback(toServiceError(new UnknownHealthService(call.request.service), logger));
        else callback(error, value);
      })) as handleUnaryCall<{ service: string }, unknown>,
  };

  return {
    definition: captured.definition,
    implementation,
    setServing(serving) {
      for (const name of serviceNames) health.setStatus(name, serving ? "SERVING" : "NOT_SERVING");
    },
  };
}
