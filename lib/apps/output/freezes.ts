/**
 * Freeze windows as `current` and `list` mention them: one stderr line per
 * window in force or coming within a week.
 *
 * @module
 */
import {
  type FreezeSource,
  freezeWindows,
  splitWindows,
  windowLine,
} from "../../composition/freeze.ts";
import { complain } from "./terminal.ts";

/**
 * Says on stderr which freeze windows cover `resource` (or any, when
 * undefined) now or within a week; a failure to read them is only a note.
 *
 * @param source The config and store the windows are read from.
 * @param resource Only windows covering it; all when undefined.
 * @example
 * ```ts ignore
 * await noteFreezes(locks, "prod/db");
 * ```
 */
export async function noteFreezes(
  source: FreezeSource,
  resource: string | undefined,
): Promise<void> {
  try {
    const now = new Date();
    const { active, upcoming } = splitWindows(
      await freezeWindows(source, now),
      resource,
      now,
    );
    for (const window of active) complain(`frozen: ${windowLine(window)}`);
    for (const window of upcoming) complain(`upcoming: ${windowLine(window)}`);
  } catch (error) {
    complain(`freeze windows unknown: ${(error as Error).message}`);
  }
}
