/**
 * The `sqlite` backend's failures, and what to do about each.
 *
 * @module
 */
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";

/** What to do about an SQLite error, by its message. */
function sqliteRemedy(message: string): string {
  if (/file is not a database|malformed|file is encrypted/i.test(message)) {
    return "move the file aside (a new one is created) or fix path in [backend.sqlite]";
  }
  if (/database is locked|busy/i.test(message)) {
    return "another process held it too long; retry, or raise timeout in [backend.sqlite]";
  }
  if (
    /readonly|read-only|unable to open|permission denied|EACCES/i.test(message)
  ) {
    return "check that you can read and write the file and its folder, or fix path in [backend.sqlite]";
  }
  if (/disk is full|disk I\/O|ENOSPC/i.test(message)) {
    return "free space on its disk, or move path in [backend.sqlite] elsewhere";
  }
  return "check the file and its folder, or fix path in [backend.sqlite]";
}

/**
 * Words an SQLite failure with its remedy: every failure of the file is
 * the store being unavailable.
 *
 * @example
 * ```ts
 * import { classifySqliteError } from "./errors.ts";
 * classifySqliteError(new Error("database is locked"), { action: "acquire", label: "SQLite" });
 * ```
 */
export function classifySqliteError(
  error: unknown,
  failed: FailedOperation,
): Classified {
  const message = (error as Error)?.message ?? String(error);
  return {
    unavailable: `failed to ${failed.action}: ${message}; ${
      sqliteRemedy(message)
    }`,
  };
}
