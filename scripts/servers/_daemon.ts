/**
 * Servers a test can pause, kill and restart: each runs in its own process
 * group, with its output in a log file, and is killed when the process
 * unloads, even after a failure. `scripts/test.sh` starts the shared
 * servers with it, and the fault suite its dedicated ones (each file in
 * this folder exports both).
 *
 * @module
 */

/** Kills left behind by a failed test, run when the process unloads. */
export const cleanups = new Set<() => void>();
globalThis.addEventListener("unload", () => {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch { /* best effort */ }
  }
});

/** Waits `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` until it resolves, every 100 ms, up to `attempts` times.
 *
 * @param what Names the awaited state in the error.
 * @param probe Rejects until the state is reached.
 * @param attempts How many tries before giving up.
 * @returns What `probe` resolved with.
 * @throws {Error} naming `what` and the last failure.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T> | T,
  attempts = 200,
): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await probe();
    } catch (error) {
      last = error;
      await delay(100);
    }
  }
  throw new Error(
    `${what} did not happen: ${(last as Error)?.message ?? last}`,
  );
}

/** The parent of each live process, from /proc, with zombies left out. */
function processTable(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" || fields[0] === "X") continue;
      parents.set(Number(entry.name), Number(fields[1]));
    } catch { /* gone meanwhile */ }
  }
  return parents;
}

/** Whether `pid` is a live (not zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** `pid` and all its live descendants. */
export function processTree(pid: number): number[] {
  const table = processTable();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of table) {
      if (parent === tree[i] && !tree.includes(child)) tree.push(child);
    }
  }
  return tree.filter((p) => p === pid ? alive(p) : true);
}

/**
 * Sends `signal` to `pid`'s process group and to every process in its
 * tree. A stop signal goes to the root first, so that it forks nothing
 * new, then again to the whole tree.
 *
 * @param pid The root process (a group leader when we spawned it).
 * @param signal The signal.
 */
export function signalTree(pid: number, signal: Deno.Signal): void {
  const send = (target: number) => {
    try {
      Deno.kill(target, signal);
    } catch { /* gone */ }
  };
  const tree = processTree(pid);
  send(-pid);
  for (const target of tree) send(target);
}

/** Waits until `pid` has exited (polling /proc), for processes not ours. */
export async function exited(pid: number): Promise<void> {
  await until(`process ${pid} exiting`, () => {
    if (alive(pid)) throw new Error("still running");
  }, 300);
}

/**
 * One server process we spawn in a process group of its own, with its
 * output appended to a log file. It can be paused, resumed, killed and
 * started again with the same arguments (so on the same ports and data).
 */
export class Daemon {
  #child?: Deno.ChildProcess;
  #cleanup?: () => void;
  #ended: () => boolean = () => true;

  /**
   * Describes the daemon; {@linkcode Daemon.start} runs it.
   *
   * @param name Names it in errors.
   * @param command The program.
   * @param args Its arguments.
   * @param logFile Where its output goes.
   * @param env Extra environment variables.
   */
  constructor(
    readonly name: string,
    readonly command: string,
    readonly args: string[],
    readonly logFile: string,
    readonly env: Record<string, string> = {},
  ) {}

  /** Spawns the process (again, after a kill). */
  start(): void {
    if (this.#child) throw new Error(`${this.name} is already running`);
    const file = Deno.openSync(this.logFile, {
      write: true,
      create: true,
      append: true,
    });
    const child = new Deno.Command(this.command, {
      args: this.args,
      env: this.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
    const pipe = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) file.writeSync(chunk);
    };
    Promise.all([pipe(child.stdout), pipe(child.stderr)]).catch(() => {})
      .finally(() => file.close());
    this.#child = child;
    const pid = child.pid;
    // A pid that ended may be reused by another test's process, which must
    // never be signalled: only a child still running is ours.
    let ended = false;
    child.status.finally(() => ended = true);
    this.#ended = () => ended;
    this.#cleanup = () => {
      if (!ended) signalTree(pid, "SIGKILL");
    };
    cleanups.add(this.#cleanup);
  }

  /** The running process's id. */
  get pid(): number {
    if (!this.#child) throw new Error(`${this.name} is not running`);
    return this.#child.pid;
  }

  /** Whether it runs. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause(): void {
    if (!this.#ended()) signalTree(this.pid, "SIGSTOP");
  }

  /** Lets a paused server go on (SIGCONT). */
  resume(): void {
    if (!this.#ended()) signalTree(this.pid, "SIGCONT");
  }

  /** Kills the server outright (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const tree = processTree(child.pid);
    signalTree(child.pid, "SIGKILL");
    signalTree(child.pid, "SIGCONT");
    await child.status;
    for (const pid of tree) await exited(pid);
    this.#forget();
  }

  /**
   * Stops the server politely (SIGTERM, or `signal`; none when null, for a
   * server told to stop another way), killing it after 5 s.
   */
  async stop(signal: Deno.Signal | null = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    signalTree(child.pid, "SIGCONT");
    if (signal) signalTree(child.pid, signal);
    const timer = setTimeout(() => {
      if (!this.#ended()) signalTree(child.pid, "SIGKILL");
    }, 5000);
    await child.status;
    clearTimeout(timer);
    this.#forget();
  }

  #forget(): void {
    if (this.#cleanup) cleanups.delete(this.#cleanup);
    this.#cleanup = undefined;
    this.#child = undefined;
  }

  /** The tail of the log, for failure messages. */
  logTail(lines = 20): string {
    try {
      return Deno.readTextFileSync(this.logFile).split("\n").slice(-lines)
        .join("\n");
    } catch {
      return "";
    }
  }
}

/** A server the fault tests can pause, kill and restart. */
export interface FaultServer {
  /** The backend's name in a config: `redis`, `etcd`, `postgres`, `dynamodb`, `mysql`. */
  readonly backend: string;
  /** The port clients connect to. */
  readonly port: number;
  /** `[backend.NAME]` options reaching the server at `port`. */
  options(port?: number): Record<string, string>;
  /** Freezes every process of the server (SIGSTOP). */
  pause(): void;
  /** Thaws it (SIGCONT). */
  resume(): void;
  /** Kills it (SIGKILL), keeping its data. */
  kill(): Promise<void>;
  /** Starts it again after a kill, on the same port and data; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  close(): Promise<void>;
}
