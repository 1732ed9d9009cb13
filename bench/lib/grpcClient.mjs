/** The load generator's gRPC client: the generated DeliveryServiceClient, one connection per client. */
import grpc from "@grpc/grpc-js";
import { DeliveryServiceClient } from "../../dist/gen/delivery/v1/delivery.js";

export const clientFor = (port) =>
  new DeliveryServiceClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });

export const callUnary = (client, method, request) =>
  new Promise((resolve, reject) => client[method](request, (error, response) => (error ? reject(error) : resolve(response))));
