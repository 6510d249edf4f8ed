/** Starting and stopping extra tfner.serve processes with TFNER_SERVE_COMMAND. */

import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { SERVE_COMMAND } from "./env.js";

const READY = /tfner\.serve ready: grpc_port=(\d+)/;

/** The repository root (relative paths in TFNER_SERVE_COMMAND are resolved from it, as tests/conftest.py does). */
const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));

const running = new Set<ChildProcess>();
const started = new Set<ServeProcess>();
// Never leave a server behind, even when a test throws before its cleanup.
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/** Stops every server this process started (for an `after` hook). */
export async function stopAll(): Promise<void> {
  await Promise.all([...started].map((server) => server.stop()));
}

/** A port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/** A tfner.serve subprocess on a fixed port. */
export class ServeProcess {
  private readonly child: ChildProcess;
  private readonly log: string[] = [];
  private readonly stderr: ReturnType<typeof createInterface>;
  private readonly exited: Promise<number | null>;

  private constructor(readonly port: number) {
    const [command, ...args] = SERVE_COMMAND;
    this.child = spawn(command!, [...args, "--port", String(port)], {
      cwd: REPO_ROOT,
      env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: "2", PYTHONUNBUFFERED: "1" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    running.add(this.child);
    started.add(this);
    // "error" instead of "exit" when the command cannot be started (e.g. a wrong path).
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code) => resolve(code));
      this.child.once("error", (error) => {
        this.log.push(`cannot start ${command}: ${error.message}`);
        resolve(null);
      });
    }).then((code) => {
      running.delete(this.child);
      return code as number | null;
    });
    // Read stderr to the end (a full pipe would stall the server); keep the tail for error messages.
    this.stderr = createInterface({ input: this.child.stderr! });
    this.stderr.on("line", (line) => {
      this.log.push(line);
      if (this.log.length > 40) this.log.shift();
    });
  }

  /** Starts TFNER_SERVE_COMMAND --port `port` and resolves once it logs its ready line. */
  static async start(port: number, timeoutMs = 180_000): Promise<ServeProcess> {
    const server = new ServeProcess(port);
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(server.failure(`not ready after ${timeoutMs} ms`)), timeoutMs);
      server.stderr.on("line", (line) => {
        if (READY.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void server.exited.then((code) => {
        clearTimeout(timer);
        reject(server.failure(`exited with ${code} before it was ready`));
      });
    });
    try {
      await ready;
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** SIGTERM (the server finishes calls in flight), then SIGKILL if it lingers; resolves when it has exited. */
  async stop(graceMs = 30_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private failure(what: string): Error {
    return new Error(`${SERVE_COMMAND.join(" ")} --port ${this.port} ${what}; its stderr ended:\n${this.log.join("\n")}`);
  }
}
