/** Forked helper processes with a request/reply IPC protocol ({id, op, ...} -> {id, ...}). */
import { fork } from "node:child_process";

const live = new Set();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/**
 * Forks `script` and resolves once it sends {type:"ready"}; the returned handle
 * has request(op, body) and stop(). `env` adds to (or overrides) this process's environment.
 */
export function startChild(script, args, { execArgv = [], env, readyTimeoutMs = 20_000, name = script } = {}) {
  const child = fork(script, args, { execArgv, env: env ? { ...process.env, ...env } : process.env, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  live.add(child);
  const pending = new Map();
  const listeners = new Set();
  let nextId = 1;
  let exited = false;
  const exitedPromise = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      exited = true;
      live.delete(child);
      for (const { reject } of pending.values()) reject(new Error(`${name} exited (${code ?? signal})`));
      pending.clear();
      resolve();
    }),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not report ready within ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before ready (${code})`));
    });
    child.on("message", (message) => {
      if (message?.type === "ready") {
        clearTimeout(timer);
        resolve(handle(message));
        return;
      }
      if (message?.id !== undefined && pending.has(message.id)) {
        const { resolve: done, reject: fail } = pending.get(message.id);
        pending.delete(message.id);
        if (message.error) fail(new Error(`${name}: ${message.error}`));
        else done(message);
        return;
      }
      for (const listener of listeners) listener(message);
    });
  });

  function handle(ready) {
    return {
      ...ready,
      pid: child.pid,
      request(op, body = {}, timeoutMs = 60_000) {
        if (exited) return Promise.reject(new Error(`${name} has exited`));
        const id = nextId++;
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            pending.delete(id);
            reject(new Error(`${name}: ${op} timed out after ${timeoutMs} ms`));
          }, timeoutMs);
          pending.set(id, {
            resolve: (v) => (clearTimeout(timer), resolve(v)),
            reject: (e) => (clearTimeout(timer), reject(e)),
          });
          child.send({ id, op, ...body });
        });
      },
      /** Unsolicited messages ({type: ...}) from the child. */
      onMessage(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
      async stop(timeoutMs = 8_000) {
        if (exited) return;
        await Promise.race([this.request("stop", {}, timeoutMs).catch(() => {}), exitedPromise]);
        await Promise.race([exitedPromise, new Promise((r) => setTimeout(r, 2_000))]);
        if (!exited) child.kill("SIGKILL");
        await exitedPromise;
      },
    };
  }
}
