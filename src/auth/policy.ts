import { isSpiffeId, looksLikeSpiffeId } from "./spiffeId.js";
import type { AuthorizationResult, Principal } from "./principal.js";

/**
 * Who may call what, modelled on gRPC's authorization policy (A43): deny rules
 * are looked at first and any match refuses the call; then any allow rule
 * that matches lets it through; else it is refused. The file:
 *
 *   { "name": "delivery-service",
 *     "deny_rules":  [ { "name": "no-mallory", "principals": ["sub:mallory"], "methods": ["*"] } ],
 *     "allow_rules": [ { "name": "writers", "principals": ["scope:deliveries.write"],
 *                        "methods": ["delivery.v1.DeliveryService/*"] } ] }
 *
 * Principals: "*" (any authenticated caller), "sub:<jwt sub>", "scope:<scope>",
 * "cert:<SPIFFE ID>" or "cert:CN=<common name>". Methods: "*",
 * "<package.Service>/*" or "<package.Service>/<Method>" (a leading "/" is
 * allowed, as in gRPC paths). Health and reflection stay open, credentials or
 * not, unless a rule names their service.
 */

/** Services any caller may use without credentials, unless the policy names them. */
export const OPEN_SERVICES: readonly string[] = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

export type PrincipalMatcher =
  | { readonly kind: "authenticated" }
  | { readonly kind: "sub"; readonly sub: string }
  | { readonly kind: "scope"; readonly scope: string }
  /** A SPIFFE ID or `CN=<cn>`, as a certificate principal's id. */
  | { readonly kind: "certificate"; readonly id: string };

export type MethodMatcher =
  | { readonly kind: "any" }
  | { readonly kind: "service"; readonly service: string }
  | { readonly kind: "method"; readonly method: string };

export interface PolicyRule {
  readonly name: string;
  readonly principals: readonly PrincipalMatcher[];
  readonly methods: readonly MethodMatcher[];
}

export interface Policy {
  readonly name: string;
  readonly denyRules: readonly PolicyRule[];
  readonly allowRules: readonly PolicyRule[];
  /** OPEN_SERVICES less those the rules name. */
  readonly openServices: readonly string[];
}

/** A problem in a policy document; `at` is where, such as `allow_rules[1].methods[0]`. */
export class PolicyError extends Error {
  readonly at: string;
  readonly problem: string;
  constructor(at: string, problem: string) {
    super(at === "" ? `the policy ${problem}` : `${at}: ${problem}`);
    this.at = at;
    this.problem = problem;
  }
}

const IDENT = "[A-Za-z_][A-Za-z0-9_]*";
const SERVICE = new RegExp(`^${IDENT}(?:\\.${IDENT})*$`);
const METHOD = new RegExp(`^${IDENT}$`);
/** Printable ASCII without spaces at the ends: a rule's name travels in metadata. */
const NAME = /^[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?$/;
const PRINCIPAL_FORMS = '"*", "sub:<sub>", "scope:<scope>", "cert:<SPIFFE ID>" or "cert:CN=<common name>"';
const METHOD_FORMS = '"*", "<package.Service>/*" or "<package.Service>/<Method>"';

/** `/pkg.Service/Method` (a gRPC path) and `pkg.Service/Method` name the same method. */
export function normalizeMethod(method: string): string {
  return method.startsWith("/") ? method.slice(1) : method;
}

function serviceOf(method: string): string {
  const slash = method.lastIndexOf("/");
  return slash < 0 ? method : method.slice(0, slash);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function onlyKeys(value: Record<string, unknown>, at: string, allowed: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new PolicyError(at === "" ? key : `${at}.${key}`, `is not a known field (known: ${allowed.join(", ")})`);
  }
}

function nameAt(value: unknown, at: string): string {
  if (typeof value !== "string" || !NAME.test(value)) {
    throw new PolicyError(at, `must be 1 to 128 printable ASCII characters, without spaces at the ends, got ${JSON.stringify(value)}`);
  }
  return value;
}

function nonEmptyArray(value: unknown, at: string): unknown[] {
  if (!Array.isArray(value) || value.length === 0) throw new PolicyError(at, "must be a non-empty array");
  return value;
}

function principalMatcher(value: unknown, at: string): PrincipalMatcher {
  const bad = (why: string) => new PolicyError(at, `${JSON.stringify(value)} ${why}`);
  if (typeof value !== "string") throw bad(`is not a principal: expected ${PRINCIPAL_FORMS}`);
  if (value === "*") return { kind: "authenticated" };
  const colon = value.indexOf(":");
  const prefix = colon < 0 ? "" : value.slice(0, colon);
  const rest = colon < 0 ? "" : value.slice(colon + 1);
  switch (prefix) {
    case "sub":
      if (rest === "" || rest.trim() !== rest) throw bad("needs a sub after \"sub:\", without spaces at the ends");
      return { kind: "sub", sub: rest };
    case "scope":
      if (rest === "" || /\s/.test(rest)) throw bad("needs one scope after \"scope:\", without spaces");
      return { kind: "scope", scope: rest };
    case "cert":
      if (looksLikeSpiffeId(rest)) {
        if (!isSpiffeId(rest)) throw bad("is not a valid SPIFFE ID (spiffe://<trust domain>/<path>, lower-case trust domain)");
        return { kind: "certificate", id: rest };
      }
      if (rest.startsWith("CN=") && rest.length > 3) return { kind: "certificate", id: rest };
      throw bad('needs a SPIFFE ID or "CN=<common name>" after "cert:"');
    default:
      throw bad(`is not a principal: expected ${PRINCIPAL_FORMS}`);
  }
}

function methodMatcher(value: unknown, at: string): MethodMatcher {
  const bad = () => new PolicyError(at, `${JSON.stringify(value)} is not a method: expected ${METHOD_FORMS}`);
  if (typeof value !== "string") throw bad();
  if (value === "*") return { kind: "any" };
  const method = normalizeMethod(value);
  const slash = method.indexOf("/");
  if (slash < 0) throw bad();
  const service = method.slice(0, slash);
  const name = method.slice(slash + 1);
  if (!SERVICE.test(service)) throw bad();
  if (name === "*") return { kind: "service", service };
  if (!METHOD.test(name)) throw bad();
  return { kind: "method", method };
}

function rule(value: unknown, at: string): PolicyRule {
  if (!isObject(value)) throw new PolicyError(at, "must be an object with name, principals and methods");
  onlyKeys(value, at, ["name", "description", "principals", "methods"]);
  if (value.description !== undefined && typeof value.description !== "string") throw new PolicyError(`${at}.description`, "must be a string");
  return {
    name: nameAt(value.name, `${at}.name`),
    principals: nonEmptyArray(value.principals, `${at}.principals`).map((p, index) => principalMatcher(p, `${at}.principals[${index}]`)),
    methods: nonEmptyArray(value.methods, `${at}.methods`).map((m, index) => methodMatcher(m, `${at}.methods[${index}]`)),
  };
}

function rules(value: unknown, at: string): PolicyRule[] {
  if (!Array.isArray(value)) throw new PolicyError(at, "must be an array of rules");
  return value.map((r, index) => rule(r, `${at}[${index}]`));
}

function servicesNamed(rule: PolicyRule): string[] {
  return rule.methods.flatMap((m) => (m.kind === "service" ? [m.service] : m.kind === "method" ? [serviceOf(m.method)] : []));
}

/** Checks a parsed policy document; a PolicyError names the bad part. */
export function validatePolicy(value: unknown): Policy {
  if (!isObject(value)) throw new PolicyError("", "must be a JSON object with name and allow_rules");
  onlyKeys(value, "", ["name", "description", "deny_rules", "allow_rules"]);
  const name = nameAt(value.name, "name");
  if (value.description !== undefined && typeof value.description !== "string") throw new PolicyError("description", "must be a string");
  const denyRules = value.deny_rules === undefined ? [] : rules(value.deny_rules, "deny_rules");
  if (value.allow_rules === undefined) throw new PolicyError("allow_rules", "is missing (an empty array allows nothing)");
  const allowRules = rules(value.allow_rules, "allow_rules");

  const firstUse = new Map<string, string>();
  for (const [list, listName] of [[denyRules, "deny_rules"], [allowRules, "allow_rules"]] as const) {
    list.forEach((r, index) => {
      const at = `${listName}[${index}]`;
      const earlier = firstUse.get(r.name);
      if (earlier !== undefined) throw new PolicyError(`${at}.name`, `"${r.name}" is already the name of ${earlier}`);
      firstUse.set(r.name, at);
    });
  }

  const named = new Set([...denyRules, ...allowRules].flatMap(servicesNamed));
  return { name, denyRules, allowRules, openServices: OPEN_SERVICES.filter((service) => !named.has(service)) };
}

/** Parses and checks a policy file's text. */
export function parsePolicy(text: string): Policy {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PolicyError("", `is not valid JSON: ${oneLine((error as Error).message)}`);
  }
  return validatePolicy(value);
}

/** Open: no credentials needed. Takes `pkg.Service/Method` or the gRPC path `/pkg.Service/Method`. */
export function isOpenMethod(policy: Policy, method: string): boolean {
  return policy.openServices.includes(serviceOf(normalizeMethod(method)));
}

function principalMatches(matcher: PrincipalMatcher, principal: Principal): boolean {
  switch (matcher.kind) {
    case "authenticated":
      return true;
    case "sub":
      return principal.kind === "jwt" && principal.sub === matcher.sub;
    case "scope":
      return principal.scopes.includes(matcher.scope);
    case "certificate":
      return principal.kind === "certificate" && principal.id === matcher.id;
    default: {
      const unreachable: never = matcher;
      return unreachable;
    }
  }
}

function methodMatches(matcher: MethodMatcher, method: string): boolean {
  switch (matcher.kind) {
    case "any":
      return true;
    case "service":
      return serviceOf(method) === matcher.service;
    case "method":
      return method === matcher.method;
    default: {
      const unreachable: never = matcher;
      return unreachable;
    }
  }
}

function ruleMatches(rule: PolicyRule, principal: Principal, method: string): boolean {
  return rule.principals.some((m) => principalMatches(m, principal)) && rule.methods.some((m) => methodMatches(m, method));
}

/**
 * May this principal call this method? Open methods: yes, with or without a
 * principal. Else deny rules first, then allow rules; no principal matches no rule.
 */
export function evaluatePolicy(policy: Policy, principal: Principal | undefined, rawMethod: string): AuthorizationResult {
  const method = normalizeMethod(rawMethod);
  if (isOpenMethod(policy, method)) return { ok: true, rule: undefined };
  if (principal === undefined) {
    return { ok: false, code: "PERMISSION_DENIED", reason: "METHOD_NOT_ALLOWED", message: `${method} needs an authenticated caller`, metadata: { method } };
  }
  const deny = policy.denyRules.find((r) => ruleMatches(r, principal, method));
  if (deny) {
    return { ok: false, code: "PERMISSION_DENIED", reason: "DENIED_BY_RULE", message: `${method} is denied to this caller by rule "${deny.name}"`, metadata: { method, rule: deny.name } };
  }
  const allow = policy.allowRules.find((r) => ruleMatches(r, principal, method));
  if (allow) return { ok: true, rule: allow.name };
  return { ok: false, code: "PERMISSION_DENIED", reason: "METHOD_NOT_ALLOWED", message: `no rule allows this caller to call ${method}`, metadata: { method } };
}
