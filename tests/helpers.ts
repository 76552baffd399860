/** Shared helpers for tests: temporary folders and running the CLI. */
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

/** Output and status of one CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A temporary HOME in which the CLI runs as a newcomer would. */
export class CliHome {
  readonly home: string;
  readonly cwd: string;

  constructor() {
    this.home = Deno.makeTempDirSync({ prefix: "stormlock-home-" });
    this.cwd = join(this.home, "work");
    Deno.mkdirSync(this.cwd);
  }

  /** Writes a file under HOME and returns its path. */
  write(relative: string, text: string): string {
    const path = join(this.home, relative);
    Deno.mkdirSync(join(path, ".."), { recursive: true });
    Deno.writeTextFileSync(path, text);
    return path;
  }

  /** Runs `scripts/stormlock` with `args`, as the README does. */
  async run(
    args: string[],
    env: Record<string, string> = {},
  ): Promise<CliResult> {
    const output = await new Deno.Command("sh", {
      args: [repoPath("scripts", "stormlock"), ...args],
      cwd: this.cwd,
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        HOME: this.home,
        USER: "tester",
        DENO: Deno.execPath(),
        // The module cache stays shared; only the user's folders are fresh.
        DENO_DIR: Deno.env.get("DENO_DIR") ?? join(
          Deno.env.get("HOME") ?? "/root",
          ".cache",
          "deno",
        ),
        NO_COLOR: "1",
        ...env,
      },
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

  /** Removes the temporary HOME. */
  [Symbol.dispose](): void {
    Deno.removeSync(this.home, { recursive: true });
  }
}
