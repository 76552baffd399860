/**
 * `stormlock run`: runs a command while holding a lock, on top of
 * {@linkcode Lock.hold}. The command gets its own process group (a new
 * session, via `Deno.Command`'s `detached`), so that when the lease is
 * lost the whole group, grandchildren included, gets SIGTERM and then
 * SIGKILL. SIGINT, SIGTERM and SIGHUP sent to `run` are passed on to the
 * group.
 *
 * On Windows there are no process groups: only the command itself is
 * stopped when the lease is lost, and only Ctrl-C (SIGINT) is passed on.
 *
 * @module
 */
import type { HolderOptions } from "../composition/holders.ts";
import { UsageError } from "../kit/errors.ts";
import { sleep } from "../kit/deadline.ts";
import { printable, shorten } from "../kit/text.ts";
import { EXIT } from "./output/exit.ts";
import type { AcquireOptions, Lock, Ttl } from "../composition/lock.ts";
import { durationSeconds } from "../composition/hold.ts";
import type { Lease } from "../kit/types.ts";

/**
 * How {@linkcode runCommand} takes the lock and stops the command.
 *
 * @example
 * ```ts
 * import type { RunCommandOptions } from "@stormlock/stormlock";
 * const options: RunCommandOptions = { ttl: "1m", wait: "10m", killAfter: "30s" };
 * ```
 */
export interface RunCommandOptions extends HolderOptions {
  /**
   * The lease's TTL; it is renewed every TTL/3.
   * @default the configured TTL
   */
  ttl?: Ttl;
  /** How long to wait for a held lock; without it, a held lock is refused. */
  wait?: Ttl;
  /** Called with the holder's lease each time the lock is found held. */
  onWait?: AcquireOptions["onWait"];
  /** Hears about backend failures while waiting. */
  onRetry?: AcquireOptions["onRetry"];
  /** Why the lock is taken. */
  reason?: string;
  /** A link for more, such as a CI run. */
  link?: string;
  /**
   * Takes the lock inside a freeze window, recording this reason (see
   * {@linkcode AcquireOptions.overrideFreeze}).
   */
  overrideFreeze?: string;
  /**
   * When the lease is lost: how long after SIGTERM the process group gets
   * SIGKILL.
   * @default "10s"
   */
  killAfter?: Ttl;
  /**
   * Give the lease up after this long, as if lost.
   * @default the config's `max_hold`, else no limit
   */
  maxHold?: Ttl;
  /**
   * Receives one-line notes for stderr: a renewal being retried, a release
   * that failed, a command that could not start.
   * @default console.error
   */
  warn?: (message: string) => void;
}

/**
 * The command's supervisor (POSIX sh), the leader of the command's process
 * group: it starts the command with `run`'s stdin, waits for it, and exits
 * with its status. Beside it a watcher checks every second that `run` (its
 * parent) is still there; once `run` is gone, even killed with SIGKILL, it
 * stops the group: SIGTERM, then SIGKILL after the kill-after time. The
 * signals `run` passes on reach the whole group; the supervisor catches
 * them (the command gets them with default handling) and keeps waiting.
 * Its own stderr is closed, so the shell's job notes ("Terminated") never
 * mix with the command's. Arguments: the kill-after seconds, the command.
 */
const SUPERVISOR = `run=$PPID after=$1
shift
trap : INT TERM HUP
exec 3<&0 4>&2 2>/dev/null
"$@" <&3 2>&4 3<&- 4>&- &
child=$!
exec 3<&- 4>&-
(
  trap '' INT TERM HUP
  while kill -0 "$run" 2>/dev/null; do sleep 1; done
  kill -TERM 0
  sleep "$after"
  kill -KILL 0
) </dev/null >/dev/null 2>&1 &
watcher=$!
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
kill -KILL "$watcher" 2>/dev/null
exit "$status"`;

/** Whether the supervisor's shell exists; unknown (no read access) counts as yes. */
function hasShell(): boolean {
  try {
    return Deno.statSync("/bin/sh").isFile;
  } catch (error) {
    return error instanceof Deno.errors.NotCapable;
  }
}

/**
 * Whether `name` can be started: a path to a file, or found on PATH.
 * `undefined` when that can't be told (no read permission).
 */
function commandExists(name: string): boolean | undefined {
  const isFile = (path: string) => {
    try {
      return Deno.statSync(path).isFile;
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      return false;
    }
  };
  try {
    if (name.includes("/")) return isFile(name);
    const path = Deno.env.get("PATH") ?? "/usr/bin:/bin";
    return path.split(":").some((dir) => isFile(`${dir || "."}/${name}`));
  } catch {
    return undefined;
  }
}

/** The signals passed on to the command. */
const FORWARDED: readonly Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT"]
  : ["SIGINT", "SIGTERM", "SIGHUP"];

/**
 * The command's words from the CLI's arguments: everything after the
 * first `--`. The `--` is required, so that the command's own options are
 * never read as Stormlock's.
 *
 * @param argv The CLI's whole argument list.
 * @param positionals The words after RESOURCE, as the parser gave them.
 * @returns The command and its arguments.
 * @throws {UsageError} when `--` is missing or misplaced.
 * @example
 * ```ts
 * import { commandArgv } from "./run.ts";
 * commandArgv(["run", "db", "--", "make", "-j4"], ["make", "-j4"]); // ["make", "-j4"]
 * ```
 */
export function commandArgv(argv: string[], positionals: string[]): string[] {
  const dashes = argv.indexOf("--");
  const tail = dashes < 0 ? [] : argv.slice(dashes + 1);
  if (
    tail.length === 0 || tail.length !== positionals.length ||
    tail.some((word, index) => word !== positionals[index])
  ) {
    throw new UsageError(
      '"run" needs "--" between the resource and the command, e.g. stormlock run deploy -- make deploy',
    );
  }
  return tail;
}

/**
 * Splits `run`'s words into the resources (those before `--`, at least
 * one) and the command with its arguments (checked as
 * {@linkcode commandArgv} does).
 *
 * @param argv The CLI's whole argument list.
 * @param positionals Every word after `run`, as the parser gave them.
 * @throws {UsageError} when `--` is missing or misplaced.
 * @example
 * ```ts
 * import { runWords } from "./run.ts";
 * runWords(["run", "db", "dns", "--", "make"], ["db", "dns", "make"]);
 * // { resources: ["db", "dns"], command: ["make"] }
 * ```
 */
export function runWords(
  argv: string[],
  positionals: string[],
): { resources: string[]; command: string[] } {
  const dashes = argv.indexOf("--");
  const tail = dashes < 0 ? 0 : argv.length - dashes - 1;
  const resources = positionals.slice(
    0,
    Math.max(1, positionals.length - tail),
  );
  const command = commandArgv(argv, positionals.slice(resources.length));
  return { resources, command };
}

/** Sends `signal` to the command's process group (or the command alone). */
function signalGroup(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    if (Deno.build.os === "windows") child.kill(signal);
    else Deno.kill(-child.pid, signal);
  } catch {
    // The group is gone already.
  }
}

/**
 * Whether any process of group `pgid` is still running. Zombies don't
 * count: an orphan's zombie may wait long for a parent to reap it.
 */
function groupRunning(pgid: number): boolean {
  if (Deno.build.os === "windows") return false;
  try {
    Deno.kill(-pgid, 0 as unknown as Deno.Signal);
  } catch {
    return false;
  }
  if (Deno.build.os !== "linux") return true;
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      let stat: string;
      try {
        stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      } catch {
        continue;
      }
      // "pid (comm) state ppid pgrp …"; comm may hold spaces and parens.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") return true;
    }
    return false;
  } catch {
    return true;
  }
}

/**
 * Stops the command's group: SIGTERM, then SIGKILL once `killAfterMs`
 * passed with any of it still running.
 */
async function stopGroup(
  child: Deno.ChildProcess,
  killAfterMs: number,
): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true, () => exited = true);
  signalGroup(child, "SIGTERM");
  const deadline = Date.now() + killAfterMs;
  while (Date.now() < deadline) {
    if (exited && !groupRunning(child.pid)) return;
    await sleep(Math.min(100, Math.max(0, deadline - Date.now())));
  }
  signalGroup(child, "SIGKILL");
}

/**
 * Takes the lock, runs `command` while renewing the lease, and releases
 * the lease when the command ends. The command sees `STORMLOCK_RESOURCE`,
 * `STORMLOCK_LEASE_ID` and `STORMLOCK_FENCE` in its environment.
 *
 * @param lock The lock to hold.
 * @param command The command and its arguments.
 * @param options TTL, wait, reason, link, `killAfter`, `maxHold`.
 * @returns The command's exit status, 128+N when signal N ended it, 127
 * when it was not found and 126 when it could not be started.
 * @throws {LeaseLostError} when the lease was lost: the command's process
 * group was stopped first.
 * @throws {LockHeldError} when the lock is held (after the wait, if any).
 * @throws {UsageError} on a bad TTL, wait or duration, or no command.
 * @example
 * ```ts ignore
 * await using lock = await openLock("deploy-prod");
 * const status = await runCommand(lock, ["make", "deploy"], { ttl: "1m" });
 * ```
 */
export async function runCommand(
  lock: Lock,
  command: string[],
  options: RunCommandOptions = {},
): Promise<number> {
  const warn = options.warn ?? ((message: string) => console.error(message));
  if (command.length === 0 || command[0] === "") {
    throw new UsageError("No command to run; give one after --");
  }
  const killAfterMs =
    durationSeconds(options.killAfter ?? "10s", "--kill-after") *
    1000;
  const maxHold = options.maxHold === undefined
    ? undefined
    : durationSeconds(options.maxHold, "--max-hold");
  let retrying = false;
  let leaseId = "";
  return await lock.hold(options.ttl, async (signal, lease) => {
    leaseId = lease.id;
    let child: Deno.ChildProcess;
    // Under a supervisor where there are process groups and a shell (a
    // scratch image has none), so that the command dies with run however
    // run ends.
    const supervised = Deno.build.os !== "windows" && hasShell();
    try {
      if (supervised && commandExists(command[0]) === false) {
        throw new Deno.errors.NotFound(command[0]);
      }
      const [program, args] = supervised
        ? [
          "/bin/sh",
          ["-c", SUPERVISOR, "stormlock-run", String(killAfterMs / 1000)]
            .concat(command),
        ]
        : [command[0], command.slice(1)];
      child = new Deno.Command(program, {
        args,
        env: {
          STORMLOCK_RESOURCE: lease.resource,
          STORMLOCK_LEASE_ID: lease.id,
          STORMLOCK_FENCE: String(lease.fence),
        },
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
        detached: true,
      }).spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) throw error;
      const notFound = error instanceof Deno.errors.NotFound;
      warn(
        `Could not start ${printable(shorten(command[0], 80))}: ${
          notFound ? "command not found" : (error as Error).message
        }`,
      );
      return notFound ? EXIT.notFound : EXIT.cannotStart;
    }
    const forward = FORWARDED.map((name) => {
      const listener = () => signalGroup(child, name);
      Deno.addSignalListener(name, listener);
      return () => Deno.removeSignalListener(name, listener);
    });
    const stopAsking = tellRequests(lock, lease, warn);
    let stopping: Promise<void> | undefined;
    const onLoss = () => stopping = stopGroup(child, killAfterMs);
    if (signal.aborted) onLoss();
    else signal.addEventListener("abort", onLoss, { once: true });
    try {
      const status = await child.status;
      await stopping;
      return status.code;
    } finally {
      signal.removeEventListener("abort", onLoss);
      forward.forEach((remove) => remove());
      stopAsking();
    }
  }, {
    wait: options.wait,
    slots: options.slots,
    shared: options.shared,
    onWait: options.onWait,
    onRetry: options.onRetry,
    reason: options.reason,
    link: options.link,
    overrideFreeze: options.overrideFreeze,
    maxHold,
    onRenewRetry(error) {
      // One note per outage, not one per retry.
      if (retrying) return;
      retrying = true;
      warn(
        `renewing the lease failed; retrying until it would expire: ${error.message}`,
      );
    },
    onReleaseError(error) {
      warn(
        `releasing lease ${leaseId} failed: ${
          (error as Error)?.message ?? error
        }; it expires on its own`,
      );
    },
  });
}

/** How often a running command's lease is checked for hand-over requests. */
const REQUEST_CHECK_MS = 10_000;

/**
 * Tells the holder, on stderr, of each hand-over request made of its
 * lease while the command runs; returns what stops the checks.
 */
function tellRequests(
  lock: Lock,
  lease: Lease,
  warn: (message: string) => void,
): () => void {
  const told = new Set<string>();
  const check = () =>
    lock.handOverRequest(lease).then((request) => {
      if (!request || told.has(`${request.id} ${request.reason}`)) return;
      told.add(`${request.id} ${request.reason}`);
      warn(requestNote(request));
    }, () => {/* the next check will tell */});
  const ttlMs = lease.expires.getTime() - lease.created.getTime();
  const timer = setInterval(
    check,
    Math.max(1000, Math.min(REQUEST_CHECK_MS, ttlMs / 3)),
  );
  return () => clearInterval(timer);
}

/**
 * The line that tells a holder someone asks for the lock.
 * @example
 * ```ts ignore
 * console.error(requestNote(request));
 * ```
 */
export function requestNote(request: Lease): string {
  return `Hand-over requested: ${
    printable(shorten(request.principal, 80))
  } asks you to hand over "${printable(shorten(request.resource))}"${
    request.reason ? `: ${printable(shorten(request.reason, 300))}` : ""
  }`;
}
