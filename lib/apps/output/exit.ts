/**
 * Exit statuses, and the one table that maps an error to its status and
 * its line on stderr. The CLI (`main.ts`) and `run` both take their
 * statuses from here; `--help` prints {@linkcode EXIT_HELP}, and
 * docs/commands.md lists the same codes.
 *
 * @module
 */
import {
  LeaseLostError,
  LimitMismatchError,
  LockHeldError,
  StormlockError,
  type StormlockErrorCode,
} from "../../kit/errors.ts";
import { HierarchyConflictError } from "../../composition/hierarchy_error.ts";
import { heldMessage } from "./format.ts";

/**
 * Every exit status the CLI uses. `cannotStart` and `notFound` are what a
 * shell answers for a command it could not start, which `run` follows.
 */
export const EXIT = {
  ok: 0,
  no: 1,
  held: 2,
  notHeld: 3,
  usage: 64,
  unavailable: 69,
  internal: 70,
  output: 74,
  lost: 75,
  forbidden: 77,
  config: 78,
  cannotStart: 126,
  notFound: 127,
} as const;

/** The status of each library error code. */
const EXIT_BY_CODE: Record<StormlockErrorCode, number> = {
  LOCK_HELD: EXIT.held,
  LEASE_NOT_HELD: EXIT.notHeld,
  USAGE: EXIT.usage,
  BACKEND_UNAVAILABLE: EXIT.unavailable,
  CONFIG: EXIT.config,
  FORBIDDEN: EXIT.forbidden,
};

/** The exit codes as `--help` explains them. */
export const EXIT_HELP = `Exit codes:
  0   success
  1   a negative answer: not held, or no current lease
  2   the lock is held by someone else (the holder goes to stderr)
  3   the lease is expired, released or broken; nothing was changed
  64  usage error
  69  backend unavailable (an acquire whose answer was lost says so, with the
      lease id it may have taken)
  70  internal error
  74  the answer could not be written to stdout (an acquired lease is
      released first)
  75  run: the lease was lost (broken, not renewed in time, or max_hold
      reached); the command was stopped if it still ran
  77  refused by the lock server: no or a bad token, a missing scope or
      resource, or another principal's lease (only break ends it)
  78  config error`;

/**
 * stdout could not take the answer (exit 74).
 * @example
 * ```ts ignore
 * throw new OutputError(error, "nothing else was changed");
 * ```
 */
export class OutputError extends Error {
  /**
   * @param cause Why writing failed.
   * @param done What was done about it, e.g. that the lease was released.
   */
  constructor(cause: unknown, done: string) {
    super(
      `could not write the answer to stdout (${
        (cause as Error)?.message ?? cause
      }); ${done}`,
      { cause },
    );
    this.name = "OutputError";
  }
}

/**
 * What an error that ended a command means: its exit status, and the one
 * line that says why on stderr.
 *
 * @param error What was thrown.
 * @returns The status and the line.
 * @example
 * ```ts ignore
 * const { status, message } = failure(new UsageError("Bad TTL"));
 * // status 64, message "Bad TTL"
 * ```
 */
export function failure(error: unknown): { status: number; message: string } {
  // A lost lease shares LEASE_NOT_HELD with its cause, but ends `run` 75.
  if (error instanceof LeaseLostError) {
    return { status: EXIT.lost, message: error.message };
  }
  // A limit mismatch names the stored limit, a parent lock's refusal the
  // resource above or below: their own messages say it.
  if (
    error instanceof LockHeldError && !(error instanceof LimitMismatchError) &&
    !(error instanceof HierarchyConflictError)
  ) {
    return {
      status: EXIT.held,
      message: heldMessage(error.holder, Date.now(), error),
    };
  }
  if (error instanceof StormlockError) {
    return { status: EXIT_BY_CODE[error.code], message: error.message };
  }
  if (error instanceof OutputError) {
    return { status: EXIT.output, message: error.message };
  }
  if (error instanceof Deno.errors.NotCapable) {
    return {
      status: EXIT.config,
      message: `${error.message}; Stormlock lacks a Deno permission`,
    };
  }
  return {
    status: EXIT.internal,
    message: `internal error: ${
      (error as Error)?.message ?? error
    } (set STORMLOCK_DEBUG=1 for a stack trace, and please report it)`,
  };
}
