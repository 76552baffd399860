/**
 * Shared helpers for tests: temporary folders, running the CLI and Deno,
 * servers that misbehave, and checks that errors come out clean.
 */
import assert from "assert";
import { join } from "node:path";
export {
  backendTest,
  type CleanRejection,
  closedPort,
  rejectsCleanly,
  replyingServer,
  shown,
  silentServer,
  sleep,
  type TestServer,
  uniqueResource,
} from "../lib/testing/support.ts";

const root = new URL("..", import.meta.url).pathname;

/** Absolute path of a file in the repository. */
export function repoPath(...parts: string[]): string {
  return join(root, ...parts);
}

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

  /**
   * Starts `scripts/stormlock` with `args` and reads its output as it
   * comes, for commands that keep running (serve, watch).
   */
  spawn(args: string[], env: Record<string, string> = {}): SpawnedCli {
    return new SpawnedCli(
      new Deno.Command("sh", {
        args: [repoPath("scripts", "stormlock"), ...args],
        cwd: this.cwd,
        clearEnv: true,
        env: {
          PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
          DENO: Deno.execPath(),
          ...this.env,
          ...env,
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn(),
    );
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

/** A long-running CLI process whose output is read as it comes. */
export class SpawnedCli implements AsyncDisposable {
  /** Everything it has printed so far. */
  readonly output = { stdout: "", stderr: "" };
  #child: Deno.ChildProcess;
  #reading: Promise<unknown>;
  #ended = false;
  #wake: () => void = () => {};

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
    const read = async (
      stream: ReadableStream<Uint8Array>,
      key: "stdout" | "stderr",
    ) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this.output[key] += decoder.decode(chunk, { stream: true });
        this.#wake();
      }
    };
    this.#reading = Promise.all([
      read(child.stdout, "stdout"),
      read(child.stderr, "stderr"),
    ]).finally(() => {
      this.#ended = true;
      this.#wake();
    });
  }

  /**
   * Waits until stderr matches `pattern` and returns the match, or
   * `undefined` once the process ends without it.
   */
  async stderrMatch(pattern: RegExp): Promise<RegExpExecArray | undefined> {
    for (;;) {
      const changed = new Promise<void>((resolve) => this.#wake = resolve);
      const match = pattern.exec(this.output.stderr);
      if (match) return match;
      if (this.#ended) return undefined;
      await changed;
    }
  }

  /** Sends `signal` (unless it has ended) and waits for the end. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<CliResult> {
    try {
      this.#child.kill(signal);
    } catch { /* already ended */ }
    const { code } = await this.#child.status;
    await this.#reading;
    return { code, ...this.output };
  }

  /** Stops it with SIGTERM. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
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
