/**
 * The policy document: what it accepts, the error (and where) for what it
 * does not, and how deny rules, allow rules and open services decide.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { evaluatePolicy, isOpenMethod, parsePolicy, PolicyError, type Principal, validatePolicy } from "../../src/auth/index.js";
import { METHODS, TEST_POLICY } from "./authSupport.js";

function jwt(sub: string, ...scopes: string[]): Principal {
  return { kind: "jwt", id: sub, sub, scopes };
}

function certificate(id: string): Principal {
  return { kind: "certificate", id, scopes: [] };
}

function errorOf(document: unknown): PolicyError {
  try {
    validatePolicy(document);
  } catch (error) {
    if (error instanceof PolicyError) return error;
    throw error;
  }
  throw new Error("the policy was accepted");
}

const rule = (overrides: Record<string, unknown> = {}) => ({ name: "r", principals: ["*"], methods: ["*"], ...overrides });
const policyWith = (...allow: unknown[]) => ({ name: "p", allow_rules: allow });

describe("policy validation", () => {
  it.each([
    ["a JSON array", [], ""],
    ["no name", { allow_rules: [] }, "name"],
    ["a name with spaces at the ends", { name: " p ", allow_rules: [] }, "name"],
    ["no allow_rules", { name: "p" }, "allow_rules"],
    ["a misspelt field", { name: "p", allow_rules: [], deny_rule: [] }, "deny_rule"],
    ["allow_rules that is an object", { name: "p", allow_rules: {} }, "allow_rules"],
    ["a rule that is a string", policyWith("writers"), "allow_rules[0]"],
    ["a rule without a name", policyWith(rule({ name: undefined })), "allow_rules[0].name"],
    ["a rule with an unknown field", policyWith(rule({ method: ["*"] })), "allow_rules[0].method"],
    ["a rule without principals", policyWith(rule({ principals: undefined })), "allow_rules[0].principals"],
    ["a rule with no principals", policyWith(rule({ principals: [] })), "allow_rules[0].principals"],
    ["a rule with no methods", policyWith(rule({ methods: [] })), "allow_rules[0].methods"],
    ["an unknown principal prefix", policyWith(rule({ principals: ["*", "scop:deliveries.read"] })), "allow_rules[0].principals[1]"],
    ["a principal that is a number", policyWith(rule({ principals: [7] })), "allow_rules[0].principals[0]"],
    ["an empty sub", policyWith(rule({ principals: ["sub:"] })), "allow_rules[0].principals[0]"],
    ["a scope with a space", policyWith(rule({ principals: ["scope:deliveries.read deliveries.write"] })), "allow_rules[0].principals[0]"],
    ["an invalid SPIFFE ID", policyWith(rule({ principals: ["cert:spiffe://Example.org/x"] })), "allow_rules[0].principals[0]"],
    ["a SPIFFE ID with a dot segment", policyWith(rule({ principals: ["cert:spiffe://example.org/ns/../x"] })), "allow_rules[0].principals[0]"],
    ["a certificate without SPIFFE ID or CN=", policyWith(rule({ principals: ["cert:dispatcher"] })), "allow_rules[0].principals[0]"],
    ["a method without service", policyWith(rule({ methods: ["GetDelivery"] })), "allow_rules[0].methods[0]"],
    ["a method with a wildcard in the service", policyWith(rule({ methods: ["delivery.*/GetDelivery"] })), "allow_rules[0].methods[0]"],
    ["a method with two slashes", policyWith(rule({ methods: ["delivery.v1.DeliveryService/Get/Delivery"] })), "allow_rules[0].methods[0]"],
    ["a prefix wildcard in the method", policyWith(rule({ methods: ["delivery.v1.DeliveryService/Get*"] })), "allow_rules[0].methods[0]"],
    ["a bad deny rule", { name: "p", deny_rules: [rule({ methods: [""] })], allow_rules: [] }, "deny_rules[0].methods[0]"],
    ["a name used twice", { name: "p", deny_rules: [rule({ name: "a" })], allow_rules: [rule({ name: "b" }), rule({ name: "a" })] }, "allow_rules[1].name"],
  ])("refuses %s, at %j", (_name, document, at) => {
    const error = errorOf(document);

    expect(error.at).toBe(at);
    expect(error.message.startsWith(at === "" ? "the policy " : `${at}: `)).toBe(true);
  });

  it("says which rule already has a name", () => {
    const error = errorOf({ name: "p", deny_rules: [rule({ name: "a" })], allow_rules: [rule({ name: "a" })] });

    expect(error.message).toBe('allow_rules[0].name: "a" is already the name of deny_rules[0]');
  });

  it("lists the principal forms when one is unknown", () => {
    const error = errorOf(policyWith(rule({ principals: ["scop:x"] })));

    expect(error.message).toBe(
      'allow_rules[0].principals[0]: "scop:x" is not a principal: expected "*", "sub:<sub>", "scope:<scope>", "cert:<SPIFFE ID>" or "cert:CN=<common name>"',
    );
  });

  it("refuses text that is not JSON, at the top", () => {
    expect(() => parsePolicy("{ name: ")).toThrow(PolicyError);
  });

  it.each([
    ["the example policy", readFileSync(new URL("../../examples/auth/policy.json", import.meta.url), "utf8")],
    ["the test policy", JSON.stringify(TEST_POLICY)],
    ["an empty allow list", JSON.stringify({ name: "p", allow_rules: [] })],
    ["gRPC paths with a leading slash", JSON.stringify(policyWith(rule({ methods: ["/delivery.v1.DeliveryService/GetDelivery"] })))],
    ["descriptions", JSON.stringify({ name: "p", description: "d", allow_rules: [rule({ description: "d" })] })],
    ["a SPIFFE ID without path and a CN", JSON.stringify(policyWith(rule({ principals: ["cert:spiffe://example.org", "cert:CN=a b"] })))],
  ])("accepts %s", (_name, text) => {
    expect(() => parsePolicy(text)).not.toThrow();
  });
});

describe("policy decisions", () => {
  const policy = validatePolicy({
    name: "p",
    deny_rules: [{ name: "no-cancel-for-bots", principals: ["cert:CN=bot"], methods: ["delivery.v1.DeliveryService/CancelDelivery"] }],
    allow_rules: [
      { name: "everyone-reads", principals: ["*"], methods: ["delivery.v1.DeliveryService/GetDelivery"] },
      { name: "bot", principals: ["cert:CN=bot"], methods: ["delivery.v1.DeliveryService/*"] },
      { name: "alice", principals: ["sub:alice"], methods: ["delivery.v1.DeliveryService/CreateDelivery"] },
    ],
  });

  it.each([
    ["any authenticated caller on a method * may call", jwt("zed"), METHODS.read, "allow everyone-reads"],
    ["a sub on its method", jwt("alice"), METHODS.command, "allow alice"],
    ["a sub on another method", jwt("alice"), METHODS.watch, "deny METHOD_NOT_ALLOWED"],
    ["a certificate CN on its service", certificate("CN=bot"), METHODS.watch, "allow bot"],
    ["a deny rule before an allow rule", certificate("CN=bot"), "delivery.v1.DeliveryService/CancelDelivery", "deny DENIED_BY_RULE"],
    ["a JWT whose sub looks like a CN", jwt("CN=bot"), METHODS.watch, "deny METHOD_NOT_ALLOWED"],
    ["a certificate whose id equals a sub", certificate("alice"), METHODS.command, "deny METHOD_NOT_ALLOWED"],
    ["no principal", undefined, METHODS.read, "deny METHOD_NOT_ALLOWED"],
    ["no principal on health", undefined, METHODS.health, "allow (open)"],
  ])("%s", (_name, principal, method, expected) => {
    const decision = evaluatePolicy(policy, principal, method);

    expect(decision.ok ? `allow ${decision.rule ?? "(open)"}` : `deny ${decision.reason}`).toBe(expected);
  });

  it("keeps health and both reflection versions open when no rule names them", () => {
    const open = ["grpc.health.v1.Health/Check", "grpc.health.v1.Health/Watch", "grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"];

    expect(open.map((method) => isOpenMethod(policy, method))).toEqual([true, true, true, true]);
  });

  it("does not open a method outside those services", () => {
    expect(isOpenMethod(policy, "grpc.health.v1.HealthX/Check")).toBe(false);
  });

  it("closes a whole service once a rule names one of its methods", () => {
    const closed = validatePolicy(policyWith(rule({ principals: ["scope:ops"], methods: ["grpc.health.v1.Health/Check"] })));

    expect([isOpenMethod(closed, "grpc.health.v1.Health/Check"), isOpenMethod(closed, "grpc.health.v1.Health/Watch")]).toEqual([false, false]);
    expect(isOpenMethod(closed, METHODS.reflection)).toBe(true);
    expect(evaluatePolicy(closed, jwt("zed", "ops"), "grpc.health.v1.Health/Check")).toEqual({ ok: true, rule: "r" });
    expect(evaluatePolicy(closed, jwt("zed"), "grpc.health.v1.Health/Watch")).toMatchObject({ ok: false, reason: "METHOD_NOT_ALLOWED" });
  });

  it("closes a service named by a deny rule, too", () => {
    const closed = validatePolicy({ name: "p", deny_rules: [rule({ principals: ["sub:mallory"], methods: ["grpc.reflection.v1.ServerReflection/*"] })], allow_rules: [] });

    expect(isOpenMethod(closed, METHODS.reflection)).toBe(false);
  });

  it("does not count * as naming health or reflection", () => {
    const wide = validatePolicy({ name: "p", deny_rules: [rule({ principals: ["sub:mallory"], methods: ["*"] })], allow_rules: [] });

    expect(isOpenMethod(wide, METHODS.health)).toBe(true);
  });
});
