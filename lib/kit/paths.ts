/**
 * Paths every layer shares: the home and state folders, `~` expansion, and
 * options that name files relative to the config file.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "./errors.ts";
import type { BackendContext } from "./types.ts";

/**
 * Reads an environment variable; injectable for tests.
 * @example A fixed environment
 * ```ts
 * import { type EnvReader, homeDir } from "./paths.ts";
 * const env: EnvReader = (name) => ({ HOME: "/home/ann" })[name];
 * console.log(homeDir(env)); // "/home/ann"
 * ```
 */
export type EnvReader = (name: string) => string | undefined;

/**
 * An environment variable, or `undefined` when unset or empty.
 * @example
 * ```ts
 * import { readEnv } from "./paths.ts";
 * readEnv(() => "", "HOME"); // undefined
 * ```
 */
export function readEnv(
  env: EnvReader | undefined,
  name: string,
): string | undefined {
  const value = (env ?? ((key: string) => Deno.env.get(key)))(name);
  return value === "" ? undefined : value;
}

/**
 * The user's home folder, from `HOME` (or `USERPROFILE` on Windows).
 * @example
 * ```ts
 * import { homeDir } from "./paths.ts";
 * homeDir(() => undefined); // undefined
 * ```
 */
export function homeDir(env?: EnvReader): string | undefined {
  return readEnv(env, "HOME") ?? readEnv(env, "USERPROFILE");
}

/**
 * Expands a leading `~` to the home folder.
 *
 * @throws {ConfigError} when the path starts with `~` and there is no home.
 * @example
 * ```ts
 * import { expandHome } from "./paths.ts";
 * expandHome("~/x.cfg", () => "/home/ann"); // "/home/ann/x.cfg"
 * ```
 */
export function expandHome(path: string, env?: EnvReader): string {
  if (path !== "~" && !path.startsWith("~/")) return path;
  const home = homeDir(env);
  if (!home) {
    throw new ConfigError(
      `Cannot expand "${path}": HOME is not set; set HOME or write the path in full`,
    );
  }
  return join(home, path.slice(1));
}

/**
 * Stormlock's state folder, where the embedded SQLite file lives:
 * `$XDG_STATE_HOME/stormlock`, else `~/.local/state/stormlock`. It is never
 * resolved against the working folder: as the XDG rule says, a relative
 * `XDG_STATE_HOME` is ignored, so two operators in two folders can never
 * end up with two databases for one lock.
 *
 * @throws {ConfigError} when neither gives an absolute folder.
 * @example
 * ```ts
 * import { stateDir } from "./paths.ts";
 * stateDir((name) => ({ XDG_STATE_HOME: "rel", HOME: "/home/ann" })[name]);
 * // "/home/ann/.local/state/stormlock"
 * ```
 */
export function stateDir(env?: EnvReader): string {
  const xdg = readEnv(env, "XDG_STATE_HOME");
  if (xdg !== undefined && isAbsolute(xdg)) return join(xdg, "stormlock");
  const home = homeDir(env);
  if (home !== undefined && isAbsolute(home)) {
    return join(home, ".local", "state", "stormlock");
  }
  throw new ConfigError(
    "No state folder for the embedded SQLite database: HOME is unset or relative, and XDG_STATE_HOME is not an absolute path; set HOME or XDG_STATE_HOME to an absolute folder, or set path in [backend.sqlite]",
  );
}

/**
 * Resolves a path option against the config file's folder (or the working
 * folder when no file was read), after `~` expansion.
 *
 * @example
 * ```ts
 * import { resolveConfigPath } from "./paths.ts";
 * resolveConfigPath("ca.pem", { name: "redis", section: "backend.redis", configDir: "/etc" });
 * // "/etc/ca.pem"
 * ```
 */
export function resolveConfigPath(
  path: string,
  context: BackendContext,
  env?: EnvReader,
): string {
  const expanded = expandHome(path, env);
  if (isAbsolute(expanded)) return expanded;
  return resolve(context.configDir ?? Deno.cwd(), expanded);
}
