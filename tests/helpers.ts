/**
 * Shared helpers for tests: temporary folders, running the CLI and Deno,
 * servers that misbehave, and checks that errors come out clean.
 */
import assert from "assert";
import { join } from "node:path";

const root = new URL("..", import.meta.url).pathname;

/** Absolute path of a file in the repository. */
export function repoPath(...parts: string[]): string {
  return join(root, ...parts);
}

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

/** Output and status of one process run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode run}: everything but the arguments and pipes. */
export type RunOptions = Omit<
  Deno.CommandOptions,
  "args" | "stdout" | "stderr"
>;

/** Runs `command` to the end and returns its status and decoded output. */
export async function run(
  command: string,
  args: string[],
  options: RunOptions = {},
): Promise<CliResult> {
  const output = await new Deno.Command(command, {
    ...options,
    args,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Runs this Deno with `args`, in the repository unless told, without colour. */
export function runDeno(
  args: string[],
  options: RunOptions = {},
): Promise<CliResult> {
  return run(Deno.execPath(), args, {
    cwd: repoPath(),
    ...options,
    env: { NO_COLOR: "1", ...options.env },
  });
}

/** A temporary HOME in which the CLI runs as a newcomer would. */
export class CliHome {
  readonly home: string;
  readonly cwd: string;
  /** The whole environment of a newcomer's shell, bar PATH. */
  readonly env: Readonly<Record<string, string>>;

  constructor() {
    this.home = Deno.makeTempDirSync({ prefix: "stormlock-home-" });
    this.cwd = join(this.home, "work");
    Deno.mkdirSync(this.cwd);
    this.env = {
      HOME: this.home,
      USER: "tester",
      // The module cache stays shared; only the user's folders are fresh.
      DENO_DIR: Deno.env.get("DENO_DIR") ?? join(
        Deno.env.get("HOME") ?? "/root",
        ".cache",
        "deno",
      ),
      NO_COLOR: "1",
    };
  }

  /** Writes a file under HOME and returns its path. */
  write(relative: string, text: string): string {
    const path = join(this.home, relative);
    Deno.mkdirSync(join(path, ".."), { recursive: true });
    Deno.writeTextFileSync(path, text);
    return path;
  }

  /** Runs `scripts/stormlock` with `args`, as the README does. */
  run(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    return run("sh", [repoPath("scripts", "stormlock"), ...args], {
      cwd: this.cwd,
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        DENO: Deno.execPath(),
        ...this.env,
        ...env,
      },
    });
  }

  /** Runs `deno` with `args` in this HOME, with nothing else in its environment. */
  deno(args: string[]): Promise<CliResult> {
    return runDeno(args, { cwd: this.cwd, clearEnv: true, env: this.env });
  }

  /** Removes the temporary HOME. */
  [Symbol.dispose](): void {
    Deno.removeSync(this.home, { recursive: true });
  }
}

/**
 * Through the CLI in `home`: `acquire` prints a lease id, a second
 * `acquire` exits 2 naming the holder, and `release` with the id succeeds.
 *
 * @returns The three runs, for further checks.
 */
export async function assertCliLockCycle(
  home: CliHome,
  resource: string,
  { args = [], env = {} }: { args?: string[]; env?: Record<string, string> } =
    {},
): Promise<CliResult[]> {
  const first = await home.run([...args, "acquire", resource], env);
  assert.equal(first.stderr, "");
  assert.equal(first.code, 0);
  assert.match(first.stdout, /^[0-9a-f]{32}\n$/);

  const second = await home.run([...args, "acquire", resource], env);
  assert.equal(second.code, 2, second.stderr);
  assert.equal(second.stdout, "");
  assert.ok(
    second.stderr.includes(`"${resource}" is held by tester@`),
    second.stderr,
  );

  const id = first.stdout.trim();
  const release = await home.run([...args, "release", resource, id], env);
  assert.equal(release.code, 0, release.stderr);
  return [first, second, release];
}

/**
 * Asserts a CLI run failed with `code` and one clean line on stderr that
 * matches `pattern`: no stdout, no stack trace and none of `secrets`.
 */
export function assertCleanExit(
  result: CliResult,
  code: number,
  pattern: RegExp,
  secrets: string[] = [],
): void {
  assert.equal(result.code, code, result.stderr);
  assert.equal(result.stdout, "");
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `expected one stderr line:\n${result.stderr}`);
  assert.match(lines[0], /^stormlock: /);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
  assert.doesNotMatch(result.stderr, /\bat .*:\d+:\d+/, "no stack frame");
  for (const secret of secrets) {
    assert.ok(!result.stderr.includes(secret), "a secret leaked");
  }
}

// Errors.

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
