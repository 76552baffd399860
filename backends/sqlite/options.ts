/**
 * The `sqlite` backend's options: the file, and how long to wait for it.
 *
 * @module
 */
import { join } from "node:path";
import type { OptionSpec } from "../../lib/kit/options.ts";
import { stateDir } from "../../lib/kit/paths.ts";

/** The default database: `$XDG_STATE_HOME/stormlock/locks.db`. */
export function defaultDatabasePath(): string {
  return join(stateDir(), "locks.db");
}

/** The `[backend.sqlite]` options. */
export const options = {
  path: {
    kind: "path",
    doc:
      "The database file, relative to the config file's folder. Default: `$XDG_STATE_HOME/stormlock/locks.db` (or `~/.local/state/stormlock/locks.db`).",
  },
  timeout: {
    kind: "duration",
    default: "5s",
    doc: "How long to wait for another process's write lock.",
  },
} satisfies Record<string, OptionSpec>;
