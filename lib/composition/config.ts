/**
 * Config discovery, parsing and per-resource resolution.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError, UsageError } from "../kit/errors.ts";
import { parseTtl } from "../kit/duration.ts";
import { resourceNameProblem } from "../kit/text.ts";
import { parseIni } from "./ini.ts";
import { closest, commentNote, didYouMean } from "../kit/suggest.ts";
import {
  type EnvReader,
  expandHome,
  homeDir,
  readEnv,
  resolveConfigPath,
} from "../kit/paths.ts";

export type { EnvReader };
export { expandHome, homeDir, resolveConfigPath };
import type { IniSections } from "./ini.ts";
import type { BackendContext, BackendOptions } from "../kit/types.ts";

/** The longest reason or link, in characters, from a flag or the config. */
export const MAX_TEXT = 4096;

/**
 * The backend used when the config names none.
 * @example
 * ```ts
 * import { DEFAULT_BACKEND } from "@stormlock/stormlock";
 * console.log(DEFAULT_BACKEND); // "sqlite"
 * ```
 */
export const DEFAULT_BACKEND = "sqlite";
/**
 * The TTL used when the config names none: one hour.
 * @example
 * ```ts
 * import { DEFAULT_TTL_SECONDS } from "@stormlock/stormlock";
 * console.log(DEFAULT_TTL_SECONDS); // 3600
 * ```
 */
export const DEFAULT_TTL_SECONDS = 3600;

const LOCK_KEYS = new Set([
  "principal",
  "backend",
  "ttl",
  "reason",
  "max_hold",
]);

/**
 * Where to look for the config, and the environment to look in.
 * @example
 * ```ts
 * import { type ConfigSource, findConfigFile } from "@stormlock/stormlock";
 * const source: ConfigSource = { cwd: "/nonexistent", env: () => undefined };
 * console.log(findConfigFile(source)); // undefined
 * ```
 */
export interface ConfigSource {
  /** An explicit file (`-c`). It must exist. */
  path?: string;
  /**
   * The environment, for `STORMLOCK_CONFIG`, `HOME` and `XDG_CONFIG_HOME`.
   * @default Deno.env.get
   */
  env?: EnvReader;
  /**
   * The folder searched for `.stormlock.cfg`.
   * @default Deno.cwd()
   */
  cwd?: string;
}

/**
 * A parsed config file, or the empty config when none exists.
 * @example
 * ```ts
 * import { type Config, parseConfig } from "@stormlock/stormlock";
 * const config: Config = parseConfig("[default]\nbackend = redis\n", "/etc/s.cfg");
 * console.log(config.sections.default.backend); // "redis"
 * ```
 */
export interface Config {
  /** The file read, or `undefined` when none was found. */
  path?: string;
  /** How the file was found; `undefined` for text parsed directly. */
  origin?: ConfigOrigin;
  /** Every section by name. */
  sections: IniSections;
  /**
   * Problems met while searching that did not stop it, such as an
   * `XDG_CONFIG_HOME` that can't be searched; {@linkcode resolveLockSettings}
   * passes them on.
   */
  warnings?: string[];
}

/**
 * Everything needed to open one resource's lock.
 * @example
 * ```ts
 * import { type LockSettings, parseConfig, resolveLockSettings } from "@stormlock/stormlock";
 * const settings: LockSettings = resolveLockSettings(parseConfig(""), "deploy");
 * console.log(settings.backend, settings.ttlSeconds); // "sqlite" 3600
 * ```
 */
export interface LockSettings {
  /** The resource name. */
  resource: string;
  /** Who will hold leases. */
  principal: string;
  /** The TTL of new and renewed leases, in seconds. */
  ttlSeconds: number;
  /** The default reason recorded with new leases, from `reason =`. */
  reason?: string;
  /**
   * From `max_hold =`: how long `hold` and `stormlock run` keep renewing a
   * lease before they give it up as lost, in seconds. No limit if absent.
   */
  maxHoldSeconds?: number;
  /** The backend name or plugin module specifier. */
  backend: string;
  /** The backend's options, from `[backend.NAME]`. */
  backendOptions: BackendOptions;
  /** Where the backend options came from. */
  backendContext: BackendContext;
  /** Problems worth telling the user that do not stop the command. */
  warnings: string[];
}

/** What is at a path: a file, something else, nothing, or a failure to look. */
type Probe =
  | { kind: "file" | "other" | "missing" }
  | { kind: "unreadable"; reason: string; error: Error };

function probe(path: string): Probe {
  try {
    return { kind: Deno.statSync(path).isFile ? "file" : "other" };
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return { kind: "missing" };
    if (error instanceof Deno.errors.NotADirectory) return { kind: "missing" };
    // Deno's own permission error: the CLI names the missing flag.
    if (error instanceof Deno.errors.NotCapable) throw error;
    return {
      kind: "unreadable",
      reason: statFailure(error),
      error: error as Error,
    };
  }
}

/** Why a path can't be looked at, in words, for the cases users meet. */
function statFailure(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (error instanceof Deno.errors.FilesystemLoop || code === "ELOOP") {
    return "its symbolic links form a loop";
  }
  if (code === "ENAMETOOLONG") return "the name is too long";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied on it or a folder above it";
  }
  return (error as Error)?.message ?? String(error);
}

/**
 * Whether a folder the search looks in can be searched: `undefined` when
 * it can (or does not exist), else why not.
 */
function folderProblem(folder: string): string | undefined {
  const found = probe(folder);
  if (found.kind === "unreadable") return found.reason;
  return found.kind === "file" ? "it is not a folder" : undefined;
}

/**
 * How a config file was found, and so whether it may load plugin code.
 * A file found in the working folder (`cwd`) may come from any repository
 * you `cd` into, so it may not. The origin names where the file really
 * is: `./.stormlock.cfg` that is the same file as `~/.stormlock.cfg` or
 * `$XDG_CONFIG_HOME/stormlock.cfg` (run from the home folder, or through a
 * symbolic link) is `home` or `xdg`, not `cwd`.
 *
 * @example
 * ```ts
 * import { type ConfigOrigin, loadConfig } from "@stormlock/stormlock";
 * const origin: ConfigOrigin | undefined =
 *   loadConfig({ env: () => undefined, cwd: "/nonexistent" }).origin;
 * console.log(origin); // undefined: no file was found
 * ```
 */
export type ConfigOrigin = "option" | "env" | "cwd" | "xdg" | "home";

/** The result of the search: the file, how it was found, and warnings. */
interface Located {
  path?: string;
  origin?: ConfigOrigin;
  warnings: string[];
}

/** The places searched when no file is named. */
type SearchedOrigin = "cwd" | "xdg" | "home";

/** One searched place: its file, or why its folder was skipped. */
interface Candidate {
  origin: SearchedOrigin;
  path?: string;
  skipped?: string;
}

/** How each searched place is named in messages. */
const SEARCHED: Record<SearchedOrigin, string> = {
  cwd: "./.stormlock.cfg in the working folder",
  xdg: "stormlock.cfg in XDG_CONFIG_HOME (default ~/.config)",
  home: "~/.stormlock.cfg",
};

/** The real path of a file, or `undefined` when it can't be resolved. */
function realPath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

function locateConfigFile(source: ConfigSource): Located {
  const cwd = source.cwd ?? Deno.cwd();
  if (source.path === "") {
    throw new ConfigError(
      "The -c/--config value is empty; name a config file, or leave -c out to use the usual search",
    );
  }
  const explicit: Array<[string | undefined, ConfigOrigin, string]> = [
    [source.path, "option", "-c/--config"],
    // An empty STORMLOCK_CONFIG reads as unset, as readEnv does everywhere.
    [readEnv(source.env, "STORMLOCK_CONFIG"), "env", "STORMLOCK_CONFIG"],
  ];
  for (const [given, origin, label] of explicit) {
    if (given === undefined) continue;
    const path = resolve(cwd, expandHome(given, source.env));
    const found = probe(path);
    if (found.kind === "unreadable") {
      throw new ConfigError(
        `Config file ${path} (from ${label}) can't be used: ${found.reason}; fix the path or name another file`,
        { cause: found.error },
      );
    }
    if (found.kind !== "file") {
      throw new ConfigError(
        `Config file ${path} (from ${label}) ${
          found.kind === "missing" ? "does not exist" : "is not a file"
        }; fix the path or create the file`,
      );
    }
    return { path, origin, warnings: [] };
  }

  // As XDG says, relative paths in these variables are ignored; resolving
  // them would make the config depend on the working folder.
  const absolute = (value: string | undefined) =>
    value !== undefined && isAbsolute(value) ? value : undefined;
  const home = absolute(homeDir(source.env));
  const xdgSet = absolute(readEnv(source.env, "XDG_CONFIG_HOME"));
  const xdg = xdgSet ?? (home ? join(home, ".config") : undefined);
  // A folder that can't be searched holds no config: skip it with a
  // warning, or an odd XDG_CONFIG_HOME or HOME would break every command.
  const searched = (
    origin: "xdg" | "home",
    folder: string | undefined,
    name: string,
    label: string,
    fix: string,
  ): Candidate => {
    if (folder === undefined) return { origin };
    const problem = folderProblem(folder);
    if (problem === undefined) return { origin, path: join(folder, name) };
    return {
      origin,
      skipped:
        `${label} can't be searched for a config file (${problem}), so it is skipped; ${fix}`,
    };
  };
  const inHome = searched(
    "home",
    home,
    ".stormlock.cfg",
    `HOME (${home})`,
    "fix HOME",
  );
  const inXdg = xdgSet
    ? searched(
      "xdg",
      xdgSet,
      "stormlock.cfg",
      `XDG_CONFIG_HOME (${xdgSet})`,
      "fix or unset XDG_CONFIG_HOME",
    )
    : inHome.path === undefined
    ? { origin: "xdg" as const } // HOME's own problem is reported once
    : searched(
      "xdg",
      xdg,
      "stormlock.cfg",
      `${xdg} (the default XDG_CONFIG_HOME)`,
      "fix it or set XDG_CONFIG_HOME",
    );
  const candidates: Candidate[] = [
    { origin: "cwd", path: join(cwd, ".stormlock.cfg") },
    inXdg,
    inHome,
  ];
  const warnings: string[] = [];
  for (const { path, origin, skipped } of candidates) {
    if (skipped !== undefined) warnings.push(skipped);
    if (path === undefined) continue;
    const found = probe(path);
    if (found.kind === "missing") continue;
    if (found.kind !== "file") {
      // Skipping it would silently use another config, maybe another
      // backend, and so another lock.
      const problem = found.kind === "unreadable"
        ? `can't be used: ${found.reason}`
        : "is not a file";
      throw new ConfigError(
        `Config file ${path} (${
          SEARCHED[origin]
        }) ${problem}; fix or remove it, or name another file with -c`,
        found.kind === "unreadable" ? { cause: found.error } : undefined,
      );
    }
    return { path, origin: trustedOrigin(path, origin, candidates), warnings };
  }
  return { warnings };
}

/**
 * Where a found file really is: `./.stormlock.cfg` that is the same file
 * as a later candidate (run from the home folder, or a symbolic link) has
 * that candidate's origin, since trust depends on the file, not the search.
 */
function trustedOrigin(
  path: string,
  origin: SearchedOrigin,
  candidates: Candidate[],
): ConfigOrigin {
  if (origin !== "cwd") return origin;
  const real = realPath(path);
  if (real === undefined) return origin;
  for (const other of candidates) {
    if (other.path === undefined || other.origin === "cwd") continue;
    if (realPath(other.path) === real) return other.origin;
  }
  return origin;
}

/**
 * Finds the config file: `-c`, then `STORMLOCK_CONFIG`, then
 * `./.stormlock.cfg`, `$XDG_CONFIG_HOME/stormlock.cfg` (default
 * `~/.config`), and `~/.stormlock.cfg`.
 *
 * A relative `XDG_CONFIG_HOME` or `HOME` is ignored, as XDG says, and a
 * folder that can't be searched (a symbolic link loop, no permission) is
 * skipped; {@linkcode loadConfig} reports it in `warnings`.
 *
 * @returns The file's path, or `undefined` when no file exists.
 * @throws {ConfigError} when `-c` is empty; when an explicit file (`-c` or
 * `STORMLOCK_CONFIG`) does not exist, is not a file or can't be looked at
 * (a symbolic link loop, a name too long); or when a searched
 * `.stormlock.cfg` or `stormlock.cfg` exists but is not a usable file.
 *
 * @example
 * ```ts
 * import { findConfigFile } from "@stormlock/stormlock";
 * const path = findConfigFile({ env: () => undefined, cwd: "/nonexistent" });
 * console.log(path); // undefined
 * ```
 */
export function findConfigFile(source: ConfigSource = {}): string | undefined {
  return locateConfigFile(source).path;
}

/**
 * Finds and parses the config. With no file, returns the empty config,
 * which runs on the embedded defaults.
 *
 * @throws {ConfigError} when a file is missing, unreadable or malformed,
 * as {@linkcode findConfigFile} says.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@stormlock/stormlock";
 * const config = loadConfig({ env: () => undefined, cwd: "/nonexistent" });
 * console.log(config.sections); // {}
 * ```
 */
export function loadConfig(source: ConfigSource = {}): Config {
  const { path, origin, warnings } = locateConfigFile(source);
  const searchWarnings = warnings.length > 0 ? { warnings } : {};
  if (path === undefined) return { sections: {}, ...searchWarnings };
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new ConfigError(
      `Cannot read config file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { path, origin, sections: parseIni(text, path), ...searchWarnings };
}

/**
 * Parses config text that is not in a file, e.g. in tests or embedders.
 *
 * @example
 * ```ts
 * import { parseConfig } from "@stormlock/stormlock";
 * const config = parseConfig("[default]\nttl = 2h\n");
 * console.log(config.sections.default.ttl); // "2h"
 * ```
 */
export function parseConfig(text: string, path?: string): Config {
  return { path, sections: parseIni(text, path ?? "<config>") };
}

/**
 * The default principal: `$USER@hostname`, with `unknown` for a missing
 * user and `localhost` when the hostname can't be read.
 * @example
 * ```ts
 * import { defaultPrincipal } from "@stormlock/stormlock";
 * console.log(defaultPrincipal(() => "ann")); // "ann@<hostname>"
 * ```
 */
export function defaultPrincipal(env?: EnvReader): string {
  return `${principalUser(env) ?? "unknown"}@${localHost() ?? "localhost"}`;
}

/** The user name of the default principal, if the environment has one. */
function principalUser(env?: EnvReader): string | undefined {
  return readEnv(env, "USER") ?? readEnv(env, "USERNAME") ??
    readEnv(env, "LOGNAME");
}

/** Unknown keys of a resource section, `[default]` included. */
function unknownKeys(config: Config, section: string): string[] {
  const file = config.path ?? "<config>";
  return Object.keys(config.sections[section] ?? {})
    .filter((key) => !LOCK_KEYS.has(key))
    // Parent locks are on or off for the whole store (hierarchy.ts).
    .filter((key) => !(section === "default" && key === "hierarchy"))
    .map((key) =>
      `${file} [${section}] ${key}: unknown key, ignored${
        didYouMean(key, LOCK_KEYS)
      } (known: ${[...LOCK_KEYS].join(", ")})`
    );
}

/**
 * Problems in the config as a whole, which every command reports: unknown
 * keys in `[default]`, sections that look like a misspelt `[default]` or
 * `[backend.NAME]`, and `[backend.NAME]` sections no `backend =` uses.
 *
 * @example
 * ```ts
 * import { configWarnings, parseConfig } from "./config.ts";
 * configWarnings(parseConfig("[defualt]\nttl = 1h\n"));
 * // ['<config> [defualt]: read as the section of a resource called "defualt" (did you mean [default]?)']
 * ```
 */
export function configWarnings(config: Config): string[] {
  const file = config.path ?? "<config>";
  const warnings = unknownKeys(config, "default");
  const names = Object.keys(config.sections);
  const named = new Set([
    DEFAULT_BACKEND,
    ...Object.values(config.sections).map((section) => section.backend?.trim()),
  ]);
  const backendSections = [...named].filter(Boolean).map((name) =>
    `backend.${name}`
  );
  for (const name of names) {
    if (name === "default") continue;
    if (name.startsWith("backend.")) {
      const backendName = name.slice("backend.".length);
      if (!named.has(backendName) && !config.sections[name].module) {
        warnings.push(
          `${file} [${name}]: no "backend = ${backendName}" uses this section${
            didYouMean(name, backendSections, (near) => `[${near}]`)
          }`,
        );
      }
      continue;
    }
    // Resource sections may have any name; these only look like typos.
    const [head, ...rest] = name.split(".");
    const meant = closest(name, ["default"]) === "default"
      ? "[default]"
      : rest.length > 0 && closest(head, ["backend"]) === "backend"
      ? `[backend.${rest.join(".")}]`
      : undefined;
    if (meant !== undefined) {
      warnings.push(
        `${file} [${name}]: read as the section of a resource called "${name}" (did you mean ${meant}?)`,
      );
    }
  }
  return warnings;
}

/**
 * This machine's host name, recorded with each lease; `undefined` without
 * the permission to read it.
 * @example
 * ```ts
 * import { localHost } from "./config.ts";
 * console.log(localHost());
 * ```
 */
export function localHost(): string | undefined {
  try {
    return Deno.hostname();
  } catch {
    // No sys permission or no hostname: the principal still identifies.
    return undefined;
  }
}

/**
 * A link to the CI run this process belongs to, from the variables that
 * GitHub Actions, GitLab, Jenkins, Buildkite and CircleCI set.
 * @example
 * ```ts
 * import { ciLink } from "./config.ts";
 * const env = { GITLAB_CI: "true", CI_JOB_URL: "https://gitlab.example/j/1" };
 * console.log(ciLink((name) => env[name as keyof typeof env])); // "https://gitlab.example/j/1"
 * ```
 */
export function ciLink(env?: EnvReader): string | undefined {
  const get = (name: string) => readEnv(env, name);
  const server = get("GITHUB_SERVER_URL");
  const repository = get("GITHUB_REPOSITORY");
  const run = get("GITHUB_RUN_ID");
  const link = server && repository && run
    ? `${server}/${repository}/actions/runs/${run}`
    : get("CI_JOB_URL") ?? get("BUILD_URL") ?? get("BUILDKITE_BUILD_URL") ??
      get("CIRCLE_BUILD_URL");
  return link && /^https?:\/\//i.test(link) ? link : undefined;
}

/** Whether a section configures the lock server, not a resource. */
function isServerSection(name: string): boolean {
  return name === "serve" || name.startsWith("oidc.");
}

/**
 * Resolves one resource's settings: `principal`, `backend` and `ttl` from
 * `[RESOURCE]`, falling back to `[default]` and then to the embedded
 * defaults; backend options from `[backend.NAME]`.
 *
 * @param config The loaded config.
 * @param resource The resource name.
 * @param env The environment, for the default principal.
 * @throws {ConfigError} on a bad value, naming file, section and key.
 * @throws {UsageError} on an empty resource name, or one that is not
 * valid text (see below).
 *
 * A name that is not valid UTF-8 reaches Deno's `Deno.args` with each bad
 * byte replaced by U+FFFD, so `$'\xff'` and `$'\xfe'` would be one lock; such
 * names, and names with lone UTF-16 surrogates, are refused.
 *
 * @example
 * ```ts
 * import { parseConfig, resolveLockSettings } from "@stormlock/stormlock";
 * const config = parseConfig("[default]\nttl = 2h\nprincipal = ann\n");
 * const settings = resolveLockSettings(config, "deploy");
 * console.log(settings.ttlSeconds, settings.backend); // 7200 "sqlite"
 * ```
 */
export function resolveLockSettings(
  config: Config,
  resource: string,
  env?: EnvReader,
): LockSettings {
  if (resource === "") {
    throw new UsageError("The resource name is empty; name the thing to lock");
  }
  assertWellFormedName(resource);
  const file = config.path ?? "<config>";
  const warnings: string[] = [...config.warnings ?? []];
  const lookup = (key: string): [string, string] | undefined => {
    for (const section of [resource, "default"]) {
      const value = config.sections[section]?.[key];
      if (value !== undefined) return [value, section];
    }
    return undefined;
  };

  warnings.push(...configWarnings(config));
  if (resource !== "default") {
    warnings.push(...unknownKeys(config, resource));
  }
  // A misspelt [default] would otherwise fall back silently to a private
  // SQLite lock, which another operator's lock never sees.
  const resourceSections = Object.keys(config.sections).filter((name) =>
    !name.startsWith("backend.") && !isServerSection(name) &&
    !name.startsWith("hook.") && name !== "notify" &&
    !name.startsWith("freeze.")
  );
  if (
    !config.sections[resource] && !config.sections.default &&
    resourceSections.length > 0
  ) {
    warnings.push(
      `${file} has no [default] or [${resource}] section, so the built-in defaults apply; sections found: ${
        resourceSections.map((name) => `[${name}]`).join(", ")
      }`,
    );
  }
  if (!lookup("principal") && principalUser(env) === undefined) {
    warnings.push(
      `USER is not set, so leases are held as ${
        defaultPrincipal(env)
      }; set USER, or "principal = NAME" under [default] in the config`,
    );
  }

  let ttlSeconds = DEFAULT_TTL_SECONDS;
  const ttl = lookup("ttl");
  if (ttl) {
    try {
      ttlSeconds = parseTtl(ttl[0]);
    } catch (error) {
      throw new ConfigError(
        `${file} [${ttl[1]}] ttl: ${(error as Error).message}${
          commentNote(ttl[0])
        }`,
      );
    }
  }

  const principal = lookup("principal");
  if (principal && principal[0].trim() === "") {
    throw new ConfigError(
      `${file} [${
        principal[1]
      }] principal: it is empty; remove the key to use $USER@hostname`,
    );
  }
  const backendEntry = lookup("backend");
  const backend = backendEntry?.[0].trim() || DEFAULT_BACKEND;
  if (backendEntry && backendEntry[0].trim() === "") {
    throw new ConfigError(
      `${file} [${
        backendEntry[1]
      }] backend: it is empty; name a backend such as sqlite or redis`,
    );
  }
  const reasonEntry = lookup("reason");
  const reason = reasonEntry?.[0].trim();
  if (reason && reason.length > MAX_TEXT) {
    throw new ConfigError(
      `${file} [${
        reasonEntry![1]
      }] reason: it is ${reason.length} characters long; keep it under ${MAX_TEXT}, and put the rest behind a link`,
    );
  }
  const maxHold = lookup("max_hold");
  let maxHoldSeconds: number | undefined;
  if (maxHold) {
    try {
      maxHoldSeconds = parseTtl(maxHold[0], "max_hold");
    } catch (error) {
      throw new ConfigError(
        `${file} [${maxHold[1]}] max_hold: ${(error as Error).message}${
          commentNote(maxHold[0])
        }`,
      );
    }
  }
  return {
    resource,
    principal: principal?.[0].trim() ?? defaultPrincipal(env),
    ttlSeconds,
    ...(reason ? { reason } : {}),
    ...(maxHoldSeconds ? { maxHoldSeconds } : {}),
    backend,
    ...backendSettings(config, backend),
    warnings,
  };
}

/**
 * Refuses a resource name that is not valid text. Deno decodes arguments
 * lossily, so distinct invalid byte sequences all arrive as U+FFFD and
 * would name one lock; a lone surrogate can't be stored as UTF-8 at all.
 */
function assertWellFormedName(resource: string): void {
  const problem = resourceNameProblem(resource);
  if (problem) {
    throw new UsageError(
      `The resource name ${
        JSON.stringify(resource.slice(0, 60))
      } ${problem}; use another name`,
    );
  }
  if (resource.isWellFormed() && !resource.includes("\uFFFD")) return;
  const shown = JSON.stringify(resource.toWellFormed()).replaceAll(
    "\uFFFD",
    "\\ufffd",
  );
  throw new UsageError(
    `The resource name ${shown} is not valid text (UTF-8; \\ufffd marks what can't be read), and invalid names would share one lock; use another name`,
  );
}

/**
 * The options and context of the backend called `backend` in `config`.
 * @example
 * ```ts
 * import { backendSettings, parseConfig } from "./config.ts";
 * const { backendContext } = backendSettings(parseConfig(""), "sqlite");
 * console.log(backendContext.section); // "backend.sqlite"
 * ```
 */
export function backendSettings(
  config: Config,
  backend: string,
): Pick<LockSettings, "backendOptions" | "backendContext"> {
  const section = `backend.${backend}`;
  return {
    backendOptions: { ...config.sections[section] },
    backendContext: {
      name: backend,
      section,
      configPath: config.path,
      configDir: config.path ? dirname(config.path) : undefined,
    },
  };
}

/**
 * Every backend the config's resources use: `[default]`'s (or the embedded
 * default) and each resource section's, in order, without repeats.
 *
 * @example
 * ```ts
 * import { backendsInUse, parseConfig } from "./config.ts";
 * backendsInUse(parseConfig("[deploy]\nbackend = redis\n")); // ["sqlite", "redis"]
 * ```
 */
export function backendsInUse(config: Config): string[] {
  const names = [config.sections.default?.backend?.trim() || DEFAULT_BACKEND];
  for (const [name, section] of Object.entries(config.sections)) {
    const backend = section.backend?.trim();
    if (!name.startsWith("backend.") && backend) names.push(backend);
  }
  return [...new Set(names)];
}
