/**
 * Config discovery, parsing and per-resource resolution.
 *
 * @module
 */
import { dirname, isAbsolute, join, resolve } from "node:path";
import { ConfigError, UsageError } from "./kit/errors.ts";
import { parseTtl } from "./kit/duration.ts";
import { parseIni } from "./ini.ts";
import {
  type EnvReader,
  expandHome,
  homeDir,
  readEnv,
  resolveConfigPath,
} from "./kit/paths.ts";

export type { EnvReader };
export { expandHome, homeDir, resolveConfigPath };
import type { IniSections } from "./ini.ts";
import type { BackendContext, BackendOptions } from "./kit/types.ts";

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

const LOCK_KEYS = new Set(["principal", "backend", "ttl", "reason"]);

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
  /** The backend name or plugin module specifier. */
  backend: string;
  /** The backend's options, from `[backend.NAME]`. */
  backendOptions: BackendOptions;
  /** Where the backend options came from. */
  backendContext: BackendContext;
  /** Problems worth telling the user that do not stop the command. */
  warnings: string[];
}

/** What is at a path: a file, something else, or nothing. */
function kindOf(path: string): "file" | "other" | "missing" {
  try {
    return Deno.statSync(path).isFile ? "file" : "other";
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "missing";
    if (error instanceof Deno.errors.NotADirectory) return "missing";
    throw error;
  }
}

/**
 * How a config file was found. A file found in the working folder
 * (`cwd`) may come from any repository you `cd` into, so it may not load
 * plugin code.
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

function locateConfigFile(
  source: ConfigSource,
): { path: string; origin: ConfigOrigin } | undefined {
  const cwd = source.cwd ?? Deno.cwd();
  const explicit: Array<[string | undefined, ConfigOrigin, string]> = [
    [source.path, "option", "-c/--config"],
    [readEnv(source.env, "STORMLOCK_CONFIG"), "env", "STORMLOCK_CONFIG"],
  ];
  for (const [given, origin, label] of explicit) {
    if (given === undefined) continue;
    const path = resolve(cwd, expandHome(given, source.env));
    const kind = kindOf(path);
    if (kind !== "file") {
      throw new ConfigError(
        `Config file ${path} (from ${label}) ${
          kind === "missing" ? "does not exist" : "is not a file"
        }; fix the path or create the file`,
      );
    }
    return { path, origin };
  }
  const home = homeDir(source.env);
  const xdg = readEnv(source.env, "XDG_CONFIG_HOME") ??
    (home ? join(home, ".config") : undefined);
  const candidates: Array<[string | undefined, ConfigOrigin]> = [
    [join(cwd, ".stormlock.cfg"), "cwd"],
    [xdg && join(xdg, "stormlock.cfg"), "xdg"],
    [home && join(home, ".stormlock.cfg"), "home"],
  ];
  for (const [path, origin] of candidates) {
    if (path && kindOf(path) === "file") return { path, origin };
  }
  return undefined;
}

/**
 * Finds the config file: `-c`, then `STORMLOCK_CONFIG`, then
 * `./.stormlock.cfg`, `$XDG_CONFIG_HOME/stormlock.cfg` (default
 * `~/.config`), and `~/.stormlock.cfg`.
 *
 * @returns The file's path, or `undefined` when no file exists.
 * @throws {ConfigError} when an explicit file (`-c` or
 * `STORMLOCK_CONFIG`) does not exist or is not a file.
 *
 * @example
 * ```ts
 * import { findConfigFile } from "@stormlock/stormlock";
 * const path = findConfigFile({ env: () => undefined, cwd: "/nonexistent" });
 * console.log(path); // undefined
 * ```
 */
export function findConfigFile(source: ConfigSource = {}): string | undefined {
  return locateConfigFile(source)?.path;
}

/**
 * Finds and parses the config. With no file, returns the empty config,
 * which runs on the embedded defaults.
 *
 * @throws {ConfigError} when a file is missing, unreadable or malformed.
 *
 * @example
 * ```ts
 * import { loadConfig } from "@stormlock/stormlock";
 * const config = loadConfig({ env: () => undefined, cwd: "/nonexistent" });
 * console.log(config.sections); // {}
 * ```
 */
export function loadConfig(source: ConfigSource = {}): Config {
  const found = locateConfigFile(source);
  if (found === undefined) return { sections: {} };
  const { path, origin } = found;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw new ConfigError(
      `Cannot read config file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { path, origin, sections: parseIni(text, path) };
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
  const user = readEnv(env, "USER") ?? readEnv(env, "USERNAME") ??
    readEnv(env, "LOGNAME") ?? "unknown";
  return `${user}@${localHost() ?? "localhost"}`;
}

/**
 * This machine's host name, recorded with each lease; `undefined` without
 * the permission to read it.
 * @example
 * ```ts
 * import { localHost } from "@stormlock/stormlock";
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
 * import { ciLink } from "@stormlock/stormlock";
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

/**
 * Resolves one resource's settings: `principal`, `backend` and `ttl` from
 * `[RESOURCE]`, falling back to `[default]` and then to the embedded
 * defaults; backend options from `[backend.NAME]`.
 *
 * @param config The loaded config.
 * @param resource The resource name.
 * @param env The environment, for the default principal.
 * @throws {ConfigError} on a bad value, naming file, section and key.
 * @throws {UsageError} on an empty resource name.
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
  const file = config.path ?? "<config>";
  const warnings: string[] = [];
  const lookup = (key: string): [string, string] | undefined => {
    for (const section of [resource, "default"]) {
      const value = config.sections[section]?.[key];
      if (value !== undefined) return [value, section];
    }
    return undefined;
  };

  for (const section of new Set([resource, "default"])) {
    for (const key of Object.keys(config.sections[section] ?? {})) {
      if (!LOCK_KEYS.has(key)) {
        warnings.push(
          `${file} [${section}] ${key}: unknown key, ignored (known: principal, backend, ttl, reason)`,
        );
      }
    }
  }
  // A misspelt [default] would otherwise fall back silently to a private
  // SQLite lock, which another operator's lock never sees.
  const resourceSections = Object.keys(config.sections).filter((name) =>
    !name.startsWith("backend.")
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
  const named = new Set([
    DEFAULT_BACKEND,
    ...Object.values(config.sections).map((section) => section.backend?.trim()),
  ]);
  for (const name of Object.keys(config.sections)) {
    const backendName = name.slice("backend.".length);
    if (
      name.startsWith("backend.") && !named.has(backendName) &&
      !config.sections[name].module
    ) {
      warnings.push(
        `${file} [${name}]: no "backend = ${backendName}" uses this section; check the name`,
      );
    }
  }

  let ttlSeconds = DEFAULT_TTL_SECONDS;
  const ttl = lookup("ttl");
  if (ttl) {
    try {
      ttlSeconds = parseTtl(ttl[0]);
    } catch (error) {
      throw new ConfigError(
        `${file} [${ttl[1]}] ttl: ${(error as Error).message}`,
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
  const reason = lookup("reason")?.[0].trim();
  return {
    resource,
    principal: principal?.[0].trim() ?? defaultPrincipal(env),
    ttlSeconds,
    ...(reason ? { reason } : {}),
    backend,
    ...backendSettings(config, backend),
    warnings,
  };
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
