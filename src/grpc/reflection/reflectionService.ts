/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) served from the
 * FileDescriptorSet that `buf build` writes, so clients such as grpcurl get the
 * real FileDescriptorProtos — real file names and dependency lists — and can
 * link google.protobuf.Timestamp. @grpc/reflection is not used because it
 * serves synthetic descriptors without dependencies.
 *
 * Usage:
 *   addReflection(server, loadDescriptorSet(), [
 *     "delivery.v1.DeliveryService",
 *     "grpc.health.v1.Health",
 *     ...REFLECTION_SERVICE_NAMES,
 *   ]);
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { isMalformed } from "../guard.js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";

export const REFLECTION_SERVICE_NAMES = [
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
] as const;

const NOT_FOUND = grpc.status.NOT_FOUND;

/**
 * The serialized google.protobuf.FileDescriptorSet produced by
 * `npm run generate`. The relative path holds both from src/ and from dist/
 * because the build copies src/gen/descriptor_set.binpb to dist/gen/.
 */
export function loadDescriptorSet(): Uint8Array {
  return readFileSync(new URL("../../gen/descriptor_set.binpb", import.meta.url));
}

/** ServerReflectionRequest as decoded by proto-loader (keepCase, defaults, oneofs). */
export interface ReflectionRequest {
  host: string;
  message_request?:
    | "file_by_filename"
    | "file_containing_symbol"
    | "file_containing_extension"
    | "all_extension_numbers_of_type"
    | "list_services";
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type: string; extension_number: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

/** ServerReflectionResponse in the shape proto-loader serializes; exactly one answer field is set. */
export interface ReflectionResponse {
  valid_host: string;
  original_request: ReflectionRequest;
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

type Answer = Omit<ReflectionResponse, "valid_host" | "original_request">;

/** The two reflection services, ready to mount (through the guard, in the server). */
export function reflectionServices(
  descriptorSet: Uint8Array,
  serviceNames: readonly string[],
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation }[] {
  const answer = createReflectionResponder(descriptorSet, serviceNames);
  // The reflection protos are in the same descriptor set they serve.
  const packageDefinition = protoLoader.loadFileDescriptorSetFromBuffer(Buffer.from(descriptorSet), {
    keepCase: true,
    longs: String,
    defaults: true,
    oneofs: true,
  });
  return REFLECTION_SERVICE_NAMES.map((name) => {
    const definition = packageDefinition[name] as grpc.ServiceDefinition | undefined;
    if (!definition?.ServerReflectionInfo) throw new Error(`reflection: ${name} is not in the descriptor set`);
    return { definition, implementation: { ServerReflectionInfo: reflectionInfoHandler(answer) } };
  });
}

/**
 * Registers grpc.reflection.v1.ServerReflection and
 * grpc.reflection.v1alpha.ServerReflection on `server` directly (no guard).
 *
 * `serviceNames` is exactly what list_services answers. Throws if the set
 * cannot be parsed or a file imports one the set lacks, since serving it
 * would leave clients unable to link.
 */
export function addReflection(server: grpc.Server, descriptorSet: Uint8Array, serviceNames: readonly string[]): void {
  for (const { definition, implementation } of reflectionServices(descriptorSet, serviceNames)) {
    server.addService(definition, implementation);
  }
}

/**
 * The request -> response logic without transport, for callers that want to
 * mount it elsewhere. Never throws for a bad request: every failure becomes an
 * error_response so the client's stream stays usable.
 */
export function createReflectionResponder(
  descriptorSet: Uint8Array,
  serviceNames: readonly string[],
): (request: ReflectionRequest) => ReflectionResponse {
  const index = new DescriptorIndex(descriptorSet);
  const services = serviceNames.map((name) => ({ name }));

  const answer = (request: ReflectionRequest): Answer => {
    switch (request.message_request) {
      case "list_services":
        return { list_services_response: { service: services } };
      case "file_by_filename": {
        const name = request.file_by_filename ?? "";
        return index.hasFile(name)
          ? filesAnswer(index.withDependencies(name))
          : errorAnswer(NOT_FOUND, `file not found: ${name}`);
      }
      case "file_containing_symbol": {
        const symbol = stripDot(request.file_containing_symbol ?? "");
        const file = index.fileOfSymbol(symbol);
        return file !== undefined
          ? filesAnswer(index.withDependencies(file))
          : errorAnswer(NOT_FOUND, `symbol not found: ${symbol}`);
      }
      case "file_containing_extension": {
        const type = stripDot(request.file_containing_extension?.containing_type ?? "");
        const number = request.file_containing_extension?.extension_number ?? 0;
        const file = index.fileOfExtension(type, number);
        return file !== undefined
          ? filesAnswer(index.withDependencies(file))
          : errorAnswer(NOT_FOUND, `extension not found: ${type} field ${number}`);
      }
      case "all_extension_numbers_of_type": {
        const type = stripDot(request.all_extension_numbers_of_type ?? "");
        const numbers = index.extensionNumbersOf(type);
        return numbers !== undefined
          ? { all_extension_numbers_response: { base_type_name: type, extension_number: numbers } }
          : errorAnswer(NOT_FOUND, `message type not found: ${type}`);
      }
      default:
        return errorAnswer(grpc.status.INVALID_ARGUMENT, "no message_request set");
    }
  };

  return (request) => {
    let result: Answer;
    try {
      result = answer(request);
    } catch (error) {
      result = errorAnswer(grpc.status.INTERNAL, `reflection failed: ${String(error)}`);
    }
    return { valid_host: request.host ?? "", original_request: echo(request), ...result };
  };
}

// Only the chosen oneof member is echoed: decoded requests carry defaults for
// the others, and re-encoding those would make the echo ambiguous.
function echo(request: ReflectionRequest): ReflectionRequest {
  const host = request.host ?? "";
  const kind = request.message_request;
  return kind === undefined ? { host } : { host, [kind]: request[kind] };
}

function reflectionInfoHandler(
  answer: (request: ReflectionRequest) => ReflectionResponse,
): grpc.handleBidiStreamingCall<ReflectionRequest, ReflectionResponse> {
  return (call) => {
    call.on("data", (request: ReflectionRequest) => {
      // A client may cancel while a request is in flight; writing then is pointless.
      // A request that did not decode has been answered by the guard.
      if (!call.cancelled && !isMalformed(request)) call.write(answer(request));
    });
    call.on("end", () => call.end());
  };
}

function filesAnswer(files: Uint8Array[]): Answer {
  return { file_descriptor_response: { file_descriptor_proto: files } };
}

function errorAnswer(code: grpc.status, message: string): Answer {
  return { error_response: { error_code: code, error_message: message } };
}

// Type names inside descriptors are written ".pkg.Name"; clients may send either form.
function stripDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}

/** Symbols, files and extensions of a FileDescriptorSet, indexed once. */
class DescriptorIndex {
  private readonly files = new Map<string, { proto: FileDescriptorProto; bytes: Uint8Array }>();
  private readonly symbols = new Map<string, string>();
  private readonly messages = new Set<string>();
  /** extendee full name -> extension number -> file name */
  private readonly extensions = new Map<string, Map<number, string>>();

  constructor(descriptorSet: Uint8Array) {
    const set = fromBinary(FileDescriptorSetSchema, descriptorSet);
    for (const file of set.file) {
      // Re-serializing each file once keeps request handling allocation-free.
      this.files.set(file.name, { proto: file, bytes: toBinary(FileDescriptorProtoSchema, file) });
    }
    for (const { proto } of this.files.values()) {
      for (const dependency of proto.dependency) {
        if (!this.files.has(dependency)) {
          throw new Error(`reflection: ${proto.name} imports ${dependency}, which the descriptor set lacks`);
        }
      }
      this.indexFile(proto);
    }
  }

  hasFile(name: string): boolean {
    return this.files.has(name);
  }

  fileOfSymbol(symbol: string): string | undefined {
    return this.symbols.get(symbol);
  }

  fileOfExtension(extendee: string, number: number): string | undefined {
    return this.extensions.get(extendee)?.get(number);
  }

  extensionNumbersOf(type: string): number[] | undefined {
    if (!this.messages.has(type)) return undefined;
    return [...(this.extensions.get(type)?.keys() ?? [])];
  }

  /**
   * The file first, then every transitive dependency once. Clients like grpcurl
   * link only what they are sent, so the dependencies must travel along.
   */
  withDependencies(fileName: string): Uint8Array[] {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (name: string): void => {
      if (seen.has(name)) return;
      seen.add(name);
      const file = this.files.get(name);
      if (!file) return; // unreachable: the constructor checked every import
      out.push(file.bytes);
      for (const dependency of file.proto.dependency) visit(dependency);
    };
    visit(fileName);
    return out;
  }

  private indexFile(file: FileDescriptorProto): void {
    const prefix = file.package ? `${file.package}.` : "";
    const add = (name: string): void => {
      if (!this.symbols.has(name)) this.symbols.set(name, file.name);
    };

    for (const service of file.service) {
      const serviceName = prefix + service.name;
      add(serviceName);
      for (const method of service.method) add(`${serviceName}.${method.name}`);
    }
    for (const message of file.messageType) this.indexMessage(message, prefix, add, file.name);
    for (const enumType of file.enumType) indexEnum(enumType, prefix, add);
    for (const extension of file.extension) this.indexExtension(extension, prefix, add, file.name);
  }

  private indexMessage(
    message: DescriptorProto,
    prefix: string,
    add: (name: string) => void,
    fileName: string,
  ): void {
    const name = prefix + message.name;
    add(name);
    this.messages.add(name);
    for (const field of message.field) add(`${name}.${field.name}`);
    for (const oneof of message.oneofDecl) add(`${name}.${oneof.name}`);
    for (const nested of message.nestedType) this.indexMessage(nested, `${name}.`, add, fileName);
    for (const enumType of message.enumType) indexEnum(enumType, `${name}.`, add);
    for (const extension of message.extension) this.indexExtension(extension, `${name}.`, add, fileName);
  }

  private indexExtension(
    extension: FieldDescriptorProto,
    prefix: string,
    add: (name: string) => void,
    fileName: string,
  ): void {
    add(prefix + extension.name);
    const extendee = stripDot(extension.extendee);
    let numbers = this.extensions.get(extendee);
    if (!numbers) this.extensions.set(extendee, (numbers = new Map()));
    if (!numbers.has(extension.number)) numbers.set(extension.number, fileName);
  }
}

function indexEnum(enumType: EnumDescriptorProto, prefix: string, add: (name: string) => void): void {
  const name = prefix + enumType.name;
  add(name);
  for (const value of enumType.value) {
    // protoc scopes enum values as siblings of their enum (C++ rules); the
    // enum-qualified spelling is accepted too because people type it.
    add(prefix + value.name);
    add(`${name}.${value.name}`);
  }
}
