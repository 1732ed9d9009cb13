export * from "./delivery.js";
export * from "./errors.js";
export { decide } from "./decide.js";
export { evolve } from "./evolve.js";
