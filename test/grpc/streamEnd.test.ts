/**
 * One set of listeners per server stream, however many layers want its end:
 * each layer's callback runs once, with the outcome, in the order added.
 */
import { EventEmitter } from "node:events";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { closeHandle, whenStreamEnds } from "../../src/grpc/streamEnd.js";

function tracked(layers = 3) {
  const call = new EventEmitter();
  const seen: string[] = [];
  for (let i = 0; i < layers; i++) whenStreamEnds(call, (code, details) => seen.push(`${i}:${status[code]}:${details ?? ""}`));
  return { call, seen };
}

describe("whenStreamEnds", () => {
  it("gives each listener the subject it was added with (a shared function, no closure per call)", () => {
    const call = new EventEmitter();
    const seen: string[] = [];
    const note = (code: status, _details: string | undefined, subject: { name: string }) => seen.push(`${subject.name}:${status[code]}`);
    const handle = { closed: 0, close() { this.closed++; } };
    whenStreamEnds(call, note, { name: "a" });
    whenStreamEnds(call, closeHandle, handle);
    whenStreamEnds(call, note, { name: "b" });
    call.emit("cancelled");
    call.emit("close");
    expect(seen).toEqual(["a:CANCELLED", "b:CANCELLED"]);
    expect(handle.closed).toBe(1);
    // Added after the end: called at once, with its subject.
    whenStreamEnds(call, note, { name: "late" });
    expect(seen.at(-1)).toBe("late:CANCELLED");
  });

  it("adds one listener per event to the call, whatever the number of layers", () => {
    const { call } = tracked(5);
    for (const event of ["error", "finish", "cancelled", "close"]) expect(call.listenerCount(event)).toBe(1);
  });

  it("reports an emitted error's status once, in the order the layers came, and not the finish after it", () => {
    const { call, seen } = tracked();
    call.emit("error", { code: status.UNAVAILABLE, details: "shutting down" });
    call.emit("finish");
    call.emit("close");
    expect(seen).toEqual(["0:UNAVAILABLE:shutting down", "1:UNAVAILABLE:shutting down", "2:UNAVAILABLE:shutting down"]);
  });

  it.each([
    ["finish", "OK"],
    ["cancelled", "CANCELLED"],
    ["close", "CANCELLED"],
  ])("ends on %s with %s", (event, code) => {
    const { call, seen } = tracked(1);
    call.emit(event);
    call.emit("cancelled");
    expect(seen).toEqual([`0:${code}:`]);
  });

  it("calls a layer that comes after the end at once, and one on a call already cancelled", () => {
    const { call, seen } = tracked(1);
    call.emit("finish");
    whenStreamEnds(call, (code) => seen.push(`late:${status[code]}`));
    expect(seen).toEqual(["0:OK:", "late:OK"]);

    const cancelled = Object.assign(new EventEmitter(), { cancelled: true });
    const codes: status[] = [];
    whenStreamEnds(cancelled, (code) => codes.push(code));
    expect(codes).toEqual([status.CANCELLED]);
  });
});
