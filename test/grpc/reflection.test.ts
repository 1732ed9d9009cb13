import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { create, createFileRegistry, fromBinary, toBinary, type FileRegistry } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import {
  addReflection,
  loadDescriptorSet,
  REFLECTION_SERVICE_NAMES,
  type ReflectionRequest,
} from "../../src/grpc/reflection/reflectionService.js";

const DELIVERY_SERVICE = "delivery.v1.DeliveryService";
const HEALTH_SERVICE = "grpc.health.v1.Health";
const ERROR_DETAIL_TYPES = [
  "google.rpc.Status",
  "google.rpc.ErrorInfo",
  "google.rpc.BadRequest",
  "google.rpc.PreconditionFailure",
  "google.rpc.ResourceInfo",
  "google.rpc.RetryInfo",
];
const DELIVERY_METHODS = [
  "CreateDelivery",
  "StartDelivery",
  "PickupProducts",
  "DeliverProducts",
  "IncreaseBudget",
  "CancelDelivery",
  "GetDelivery",
  "ListDeliveries",
  "ListDeliveryEvents",
  "WatchDelivery",
  "WatchDeliveries",
];

interface ReflectionReply {
  valid_host: string;
  message_response: string;
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

/** One ServerReflectionInfo stream; answers arrive in request order. */
class ReflectionStream {
  private readonly waiting: Array<{ resolve: (r: ReflectionReply) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  constructor(private readonly call: grpc.ClientDuplexStream<Partial<ReflectionRequest>, ReflectionReply>) {
    call.on("data", (reply: ReflectionReply) => this.waiting.shift()?.resolve(reply));
    call.on("error", (error: Error) => this.fail(error));
    call.on("end", () => this.fail(new Error("reflection stream ended")));
  }

  ask(request: Partial<ReflectionRequest>): Promise<ReflectionReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.call.write(request);
    });
  }

  close(): void {
    this.call.end();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const pending of this.waiting.splice(0)) pending.reject(error);
  }
}

// The client stub comes from the vendored protos, the files the server's descriptor set is built from.
const reflectionPackage = protoLoader.loadSync(
  ["grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"],
  {
    includeDirs: [fileURLToPath(new URL("../../third_party/proto/", import.meta.url))],
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  },
);

const descriptorSet = fromBinary(FileDescriptorSetSchema, loadDescriptorSet());
const deliveryFile = descriptorSet.file.find((f) => f.name === "delivery/v1/delivery.proto")!;
const deliveryTypeNames = [
  ...deliveryFile.messageType.flatMap((m) => messageNames(m, "delivery.v1.")),
  ...deliveryFile.enumType.map((e) => `delivery.v1.${e.name}`),
];

function messageNames(message: DescriptorProto, prefix: string): string[] {
  const name = prefix + message.name;
  return [
    name,
    ...message.nestedType.flatMap((nested) => messageNames(nested, `${name}.`)),
    ...message.enumType.map((e) => `${name}.${e.name}`),
  ];
}

/**
 * Links the served files the way a strict client does: nothing but what
 * reflection sent. createFileRegistry throws on any unresolvable import or
 * type reference; it wants imports before importers, while reflection sends
 * the requested file first, so the files are ordered here.
 */
function linkStrictly(served: Uint8Array[]): FileRegistry {
  const byName = new Map<string, FileDescriptorProto>();
  for (const bytes of served) {
    const file = fromBinary(FileDescriptorProtoSchema, bytes);
    byName.set(file.name, file);
  }
  const ordered: FileDescriptorProto[] = [];
  const placed = new Set<string>();
  const place = (file: FileDescriptorProto): void => {
    if (placed.has(file.name)) return;
    placed.add(file.name);
    for (const dependency of file.dependency) {
      const imported = byName.get(dependency);
      if (imported) place(imported);
    }
    ordered.push(file);
  };
  byName.forEach(place);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

function servedFiles(reply: ReflectionReply): Buffer[] {
  expect(reply.error_response).toBeUndefined();
  return reply.file_descriptor_response?.file_descriptor_proto ?? [];
}

let server: grpc.Server;
const clients: grpc.Client[] = [];
const streams: ReflectionStream[] = [];
let address: string;

function openStream(version: "v1" | "v1alpha"): ReflectionStream {
  const definition = reflectionPackage[`grpc.reflection.${version}.ServerReflection`] as grpc.ServiceDefinition;
  const Client = grpc.makeGenericClientConstructor(definition, "ServerReflection");
  const client = new Client(address, grpc.credentials.createInsecure());
  clients.push(client);
  const call = (client.ServerReflectionInfo as () => grpc.ClientDuplexStream<Partial<ReflectionRequest>, ReflectionReply>)();
  const stream = new ReflectionStream(call);
  streams.push(stream);
  return stream;
}

beforeAll(async () => {
  server = new grpc.Server();
  addReflection(server, loadDescriptorSet(), [DELIVERY_SERVICE, HEALTH_SERVICE, ...REFLECTION_SERVICE_NAMES]);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  address = `127.0.0.1:${port}`;
});

afterAll(async () => {
  for (const stream of streams) stream.close();
  for (const client of clients) client.close();
  await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
});

describe.each(["v1", "v1alpha"] as const)("reflection %s", (version) => {
  let reflection: ReflectionStream;
  beforeAll(() => {
    reflection = openStream(version);
  });

  it("lists the delivery, health and reflection services", async () => {
    const reply = await reflection.ask({ list_services: "" });

    const names = reply.list_services_response?.service.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining([DELIVERY_SERVICE, HEALTH_SERVICE, ...REFLECTION_SERVICE_NAMES]));
  });

  it("serves the delivery service's file with dependencies a strict client can link", async () => {
    const reply = await reflection.ask({ file_containing_symbol: DELIVERY_SERVICE });

    const registry = linkStrictly(servedFiles(reply));
    const service = registry.getService(DELIVERY_SERVICE);
    expect(service?.methods.map((m) => m.name)).toEqual(DELIVERY_METHODS);
    for (const method of service!.methods) {
      expect(registry.getMessage(method.input.typeName)).toBe(method.input);
      expect(registry.getMessage(method.output.typeName)).toBe(method.output);
    }
  });

  it("sends google.protobuf.Timestamp along with the delivery service", async () => {
    const reply = await reflection.ask({ file_containing_symbol: DELIVERY_SERVICE });

    const registry = linkStrictly(servedFiles(reply));
    expect(registry.getMessage("google.protobuf.Timestamp")?.file.proto.name).toBe("google/protobuf/timestamp.proto");
  });

  it("sends the requested file first, then its dependencies", async () => {
    const reply = await reflection.ask({ file_containing_symbol: DELIVERY_SERVICE });

    const names = servedFiles(reply).map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
    expect(names).toEqual(["delivery/v1/delivery.proto", "google/protobuf/timestamp.proto"]);
  });

  it.each(deliveryTypeNames)("serves linkable files for the type %s", async (typeName) => {
    const reply = await reflection.ask({ file_containing_symbol: typeName });

    const registry = linkStrictly(servedFiles(reply));
    expect(registry.get(typeName)?.typeName).toBe(typeName);
  });

  it.each([
    "delivery.v1.DeliveryService.WatchDelivery",
    "delivery.v1.Delivery.created_at",
    "delivery.v1.DeliveryEvent.kind",
    "delivery.v1.DELIVERY_STATUS_READY",
    "google.protobuf.Timestamp.seconds",
  ])("finds the file declaring the member %s", async (symbol) => {
    const reply = await reflection.ask({ file_containing_symbol: symbol });

    expect(servedFiles(reply).length).toBeGreaterThan(0);
  });

  it.each([
    ["delivery/v1/delivery.proto", "delivery.v1.Delivery"],
    ["google/protobuf/timestamp.proto", "google.protobuf.Timestamp"],
  ])("serves %s by file name, linkable on its own", async (fileName, typeName) => {
    const reply = await reflection.ask({ file_by_filename: fileName });

    const registry = linkStrictly(servedFiles(reply));
    expect(registry.getFile(fileName)?.proto.name).toBe(fileName);
    expect(registry.getMessage(typeName)?.typeName).toBe(typeName);
  });

  it("gives a client built like grpcurl's, from served bytes only, every delivery method", async () => {
    const reply = await reflection.ask({ file_containing_symbol: DELIVERY_SERVICE });

    const set = create(FileDescriptorSetSchema, {
      file: servedFiles(reply).map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes)),
    });
    const definition = protoLoader.loadFileDescriptorSetFromBuffer(
      Buffer.from(toBinary(FileDescriptorSetSchema, set)),
    );
    const service = definition[DELIVERY_SERVICE] as protoLoader.ServiceDefinition;
    expect(Object.keys(service)).toEqual(DELIVERY_METHODS);
    expect(service.WatchDelivery?.responseStream).toBe(true);
    const DeliveryClient = grpc.makeGenericClientConstructor(service, "DeliveryService");
    for (const method of DELIVERY_METHODS) expect(DeliveryClient.prototype[method]).toBeTypeOf("function");
  });

  it("answers an unknown symbol with NOT_FOUND and keeps the stream usable", async () => {
    const missing = await reflection.ask({ file_containing_symbol: "delivery.v1.NoSuchThing" });
    const next = await reflection.ask({ list_services: "" });

    expect(missing.error_response?.error_code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error_response?.error_message).toContain("delivery.v1.NoSuchThing");
    expect(next.list_services_response?.service.length).toBeGreaterThan(0);
  });

  it("answers an unknown file name with NOT_FOUND", async () => {
    const reply = await reflection.ask({ file_by_filename: "nope/v1/nope.proto" });

    expect(reply.error_response?.error_code).toBe(grpc.status.NOT_FOUND);
  });

  it.each([DELIVERY_SERVICE, HEALTH_SERVICE, ...REFLECTION_SERVICE_NAMES])(
    "serves %s so that a strict client can describe it: every method and message resolves",
    async (serviceName) => {
      const listed = (await reflection.ask({ list_services: "" })).list_services_response?.service.map((s) => s.name);
      expect(listed).toContain(serviceName);

      const reply = await reflection.ask({ file_containing_symbol: serviceName });

      const registry = linkStrictly(servedFiles(reply));
      const service = registry.getService(serviceName);
      expect(service?.typeName).toBe(serviceName);
      expect(service!.methods.length).toBeGreaterThan(0);
      for (const method of service!.methods) {
        expect(registry.getMessage(method.input.typeName)).toBe(method.input);
        expect(registry.getMessage(method.output.typeName)).toBe(method.output);
      }
    },
  );

  it.each(ERROR_DETAIL_TYPES)("serves the error detail type %s, linkable, with an (empty) extension list", async (typeName) => {
    const reply = await reflection.ask({ file_containing_symbol: typeName });
    const extensions = await reflection.ask({ all_extension_numbers_of_type: typeName });

    const registry = linkStrictly(servedFiles(reply));
    expect(registry.getMessage(typeName)?.typeName).toBe(typeName);
    expect(extensions.error_response).toBeUndefined();
    expect((extensions as { all_extension_numbers_response?: { extension_number: number[] } }).all_extension_numbers_response?.extension_number).toEqual([]);
  });

  it("serves the health proto under its real file name", async () => {
    const reply = await reflection.ask({ file_containing_symbol: HEALTH_SERVICE });

    const names = servedFiles(reply).map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
    expect(names).toEqual(["grpc/health/v1/health.proto"]);
  });
});
