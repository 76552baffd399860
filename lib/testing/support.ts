/**
 * Helpers for backend tests, published with the contract suite: fresh
 * resource names, misbehaving servers, and checks that errors come out
 * clean.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Backend, BackendOptions } from "../kit/types.ts";

/** A fresh resource name, so tests never share state. */
export function uniqueResource(label = "res"): string {
  return `${label}-${crypto.randomUUID()}`;
}

/** Sleeps, for tests of real expiry. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Registers tests named `PREFIX: name`. Sanitizers are off unless asked
 * for: database clients keep sockets and timers a moment after close.
 */
export function backendTest(
  prefix: string,
  { sanitize = false }: { sanitize?: boolean } = {},
): (name: string, fn: () => Promise<void>) => void {
  return (name, fn) =>
    Deno.test({
      name: `${prefix}: ${name}`,
      sanitizeOps: sanitize,
      sanitizeResources: sanitize,
      fn,
    });
}

// Processes.

/** Everything an error would show, its causes included. */
export function shown(error: unknown): string {
  return Deno.inspect(error, { depth: 10 });
}

/** What {@linkcode rejectsCleanly} also checks. */
export interface CleanRejection {
  /** Text or patterns the message must contain. */
  mentions?: (string | RegExp)[];
  /** Text that must not appear anywhere the error shows, causes included. */
  secrets?: string[];
}

/**
 * Asserts `promise` rejects with a `type` whose message has every one of
 * `mentions` and which shows none of `secrets`.
 *
 * @returns The error, for further checks.
 */
export async function rejectsCleanly<T extends Error>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => T,
  { mentions = [], secrets = [] }: CleanRejection = {},
): Promise<T> {
  const error = await promise.then(
    () => assert.fail(`expected ${type.name}, but it succeeded`),
    (error: unknown) => error,
  );
  assert.ok(error instanceof type, `expected ${type.name}: ${shown(error)}`);
  for (const mention of mentions) {
    if (typeof mention === "string") {
      assert.ok(error.message.includes(mention), error.message);
    } else {
      assert.match(error.message, mention);
    }
  }
  for (const secret of secrets) {
    assert.ok(!shown(error).includes(secret), `a secret leaked: ${secret}`);
  }
  return error;
}

// Servers that are not there, or not right.

/** A loopback port with nothing listening on it. */
export function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** A loopback TCP server for a test; `await using` stops it. */
export interface TestServer extends AsyncDisposable {
  readonly port: number;
  /** How many connections it has accepted so far. */
  readonly accepted: number;
}

function serve(handle: (conn: Deno.Conn) => Promise<void>): TestServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const handling: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      handling.push(handle(conn).catch(() => {}));
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    get accepted() {
      return conns.length;
    },
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await accepting;
      await Promise.all(handling);
    },
  };
}

/** A server that accepts connections and never says a word. */
export function silentServer(): TestServer {
  return serve(() => Promise.resolve());
}

/**
 * A server that answers every connection with `reply` and hangs up, like
 * an HTTP server on the port a client was told to use.
 */
export function replyingServer(reply: string): TestServer {
  const bytes = new TextEncoder().encode(reply);
  return serve(async (conn) => {
    try {
      await conn.write(bytes);
    } finally {
      try {
        conn.close();
      } catch { /* closed when the server stopped */ }
    }
  });
}

/**
 * Opens a new backend instance with its own connection; `extra` options
 * (such as `history = 3`) go into its section.
 */
export type BackendFactory = (
  extra?: BackendOptions,
) => Backend | Promise<Backend>;
