/**
 * Shared pieces for starting real servers on loopback for the tests. Each
 * other file in this folder starts one server and is found by
 * `scripts/test.ts` on its own, so adding a backend touches no shared file.
 */
import { join } from "node:path";

/** A server a test run started, with the environment that points at it. */
export interface StartedServer {
  /** Variables the backend's tests read, e.g. STORMLOCK_TEST_REDIS_URL. */
  env: Record<string, string>;
  /** Stops the server and everything it started. */
  stop(): Promise<void>;
}

/** What a file in `scripts/servers/` exports. */
export interface ServerModule {
  /** A short name, e.g. "redis". */
  name: string;
  /** Starts the server in `workDir`, installing it first if missing. */
  start(workDir: string): Promise<StartedServer>;
}

/** Logs a progress line of the test run to stderr. */
export function log(message: string): void {
  console.error(`[test] ${message}`);
}

/** A TCP port that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Whether `command` is on PATH or at an absolute path. */
export function hasCommand(command: string): boolean {
  if (command.startsWith("/")) {
    try {
      return Deno.statSync(command).isFile;
    } catch {
      return false;
    }
  }
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => {
    try {
      return Deno.statSync(join(dir, command)).isFile;
    } catch {
      return false;
    }
  });
}

/** Runs a command to completion; throws with its output when it fails. */
export async function run(
  command: string,
  args: string[],
  options: Deno.CommandOptions = {},
): Promise<string> {
  const output = await new Deno.Command(command, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...options,
  }).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  if (!output.success) {
    throw new Error(`${command} ${args.join(" ")} failed:\n${text}`);
  }
  return text;
}

let aptUpdated = false;

/** What this run changed on the machine, for the summary at its end. */
export const machineChanges: string[] = [];

/**
 * Says, before it happens, that the run is about to change the machine
 * (install a package, create a user), and remembers it for the summary.
 */
export function announceChange(change: string): void {
  log(`about to change this machine: ${change}`);
  machineChanges.push(change);
}

/** Installs Debian packages with apt-get when `command` is missing. */
export async function ensureApt(
  command: string,
  packages: string[],
): Promise<void> {
  if (hasCommand(command)) return;
  announceChange(`install ${packages.join(", ")} with apt-get`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  if (!aptUpdated) {
    await run("apt-get", ["update", "-qq"], { env });
    aptUpdated = true;
  }
  await run("apt-get", ["install", "-y", "-qq", ...packages], { env });
  if (!hasCommand(command)) {
    throw new Error(
      `${packages.join(", ")} installed, but ${command} is missing`,
    );
  }
}

/**
 * Waits until `probe` succeeds, polling. Fails after `attempts` tries with
 * the last error, so a broken server install fails the run instead of
 * hanging it.
 */
export async function waitUntil(
  what: string,
  probe: () => Promise<unknown>,
  attempts = 150,
): Promise<void> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      await probe();
      return;
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  throw new Error(`${what} did not become ready: ${last}`);
}

/** Resolves when something accepts TCP connections on the port. */
export async function tcpOpen(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.close();
}
