/**
 * Plugin backends: a config names a module instead of a built-in, and the
 * module's `createBackend(options, context)` returns a {@linkcode Backend}.
 *
 * Under `deno run` a plugin is imported as is (`file:`, `https:`, `jsr:`,
 * `npm:`). A compiled binary can't import modules that were not in its
 * graph at compile time (denoland/deno#18327), so there a plugin file is
 * read and imported as a `data:` URL, which works only for one
 * self-contained JavaScript file importing nothing but `node:` built-ins.
 *
 * @module
 */
import { extname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolveConfigPath } from "../kit/paths.ts";
import type { ConfigOrigin } from "./config.ts";
import { ConfigError } from "../kit/errors.ts";
import type { BackendModule } from "./plugin_adapter.ts";
import type { KitContext } from "../kit/contract.ts";
import type { BackendContext, BackendOptions } from "../kit/types.ts";

/**
 * What a plugin's `open` (or a Stormlock 0.1 `createBackend`) receives as
 * its context: where the options came from, plus the error classes and
 * helpers a self-contained plugin can't import.
 *
 * @example
 * ```js ignore
 * open(settings, context) {
 *   if (!ok) throw new context.errors.ConfigError(`[${context.section}] path: required`);
 * }
 * ```
 */
export type PluginContext = KitContext;

/**
 * How a plugin module is loaded: `import` imports its URL; `data` reads
 * the file and imports it as a `data:` URL, as a compiled binary must.
 */
export type PluginLoadMode = "import" | "data";

/** The environment variable that forces the compiled binary's loader. */
export const PLUGIN_LOADER_ENV = "STORMLOCK_PLUGIN_LOADER";

/**
 * The mode this process loads plugins in: `data` inside a compiled binary
 * or when `STORMLOCK_PLUGIN_LOADER=data` (to try a plugin against the
 * binary's rules without compiling), else `import`.
 */
export function pluginLoadMode(): PluginLoadMode {
  if (Deno.build.standalone) return "data";
  // Library callers may lack env access; asking must never prompt.
  const access = Deno.permissions.querySync({
    name: "env",
    variable: PLUGIN_LOADER_ENV,
  });
  if (access.state !== "granted") return "import";
  return Deno.env.get(PLUGIN_LOADER_ENV) === "data" ? "data" : "import";
}

const SPECIFIER =
  /^(?:\.{1,2}[\\/]|[\\/]|~[\\/]|[A-Za-z]:[\\/]|file:|https?:|jsr:|npm:)/;

/**
 * Whether a configured backend name is a module specifier: a path
 * (`./x.js`, `../x.js`, `/abs/x.js`, `~/x.js`) or a `file:`, `https:`,
 * `jsr:` or `npm:` URL.
 *
 * @example
 * ```ts
 * import { isPluginSpecifier } from "./plugin.ts";
 * isPluginSpecifier("./backends/my.js"); // true
 * isPluginSpecifier("redis"); // false
 * ```
 */
export function isPluginSpecifier(name: string): boolean {
  return SPECIFIER.test(name);
}

/**
 * Turns a plugin specifier into the URL to load. Paths resolve against the
 * config file's folder; URLs are kept.
 *
 * @throws {ConfigError} for `http:`, which Stormlock never loads.
 *
 * @example
 * ```ts
 * import { resolvePluginUrl } from "./plugin.ts";
 * const url = resolvePluginUrl("./my.js", {
 *   name: "./my.js",
 *   section: "backend../my.js",
 *   configDir: "/etc/stormlock",
 * });
 * console.log(url); // "file:///etc/stormlock/my.js"
 * ```
 */
export function resolvePluginUrl(
  specifier: string,
  context: BackendContext,
): string {
  if (/^http:/i.test(specifier)) {
    throw new ConfigError(
      `Backend module ${specifier}: plugins load over https:, never plain http:`,
    );
  }
  if (/^(?:file|https|jsr|npm):/i.test(specifier)) return specifier;
  return pathToFileURL(resolveConfigPath(specifier, context)).href;
}

/** Where a plugin was named, for messages: `./my.js (/etc/my.js)`. */
function describe(specifier: string, url: string): string {
  if (!url.startsWith("file:") || specifier.startsWith("file:")) {
    return specifier;
  }
  const path = fileURLToPath(url);
  return path === specifier ? path : `${specifier} (${path})`;
}

function firstLine(error: unknown): string {
  const message = (error as Error)?.message ?? String(error);
  // A data: URL in a message repeats the whole plugin; cut it out.
  return message.split("\n")[0].replace(/data:[^\s"')]+/g, "<plugin>");
}

/**
 * The import specifiers in plain JavaScript that a `data:` module can't
 * resolve: everything but `node:` built-ins. A scan, not a parse: it reads
 * `import`/`export … from` statements that start a line, and `import("…")`
 * calls outside line comments.
 *
 * @example
 * ```ts
 * import { foreignImports } from "./plugin.ts";
 * foreignImports('import fs from "node:fs";\nimport x from "./x.js";');
 * // ["./x.js"]
 * ```
 */
export function foreignImports(source: string): string[] {
  const found = new Set<string>();
  const statement =
    /^[ \t]*(?:import|export)\b[^;]*?\bfrom\s*(["'])([^"'\n]+)\1|^[ \t]*import\s*(["'])([^"'\n]+)\3/gm;
  for (const match of source.matchAll(statement)) {
    found.add(match[2] ?? match[4]);
  }
  const code = source.split("\n").filter((line) =>
    !/^\s*(?:\/\/|\*|\/\*)/.test(line)
  ).join("\n");
  for (const match of code.matchAll(/\bimport\s*\(\s*(["'`])([^"'`\n]+)\1/g)) {
    found.add(match[2]);
  }
  return [...found].filter((specifier) => !specifier.startsWith("node:"));
}

const BINARY_RULES =
  "a plugin for the compiled binary must be one self-contained JavaScript file (.js or .mjs) that imports only node: built-ins";

/** Reads a plugin file and imports it as a `data:` URL. */
async function importAsData(
  specifier: string,
  url: string,
): Promise<Record<string, unknown>> {
  const shown = describe(specifier, url);
  if (!url.startsWith("file:")) {
    throw new ConfigError(
      `Backend module ${shown} can't load in the compiled binary, which loads plugins only from files; download it and name the file. (${BINARY_RULES})`,
    );
  }
  const path = fileURLToPath(url);
  const extension = extname(path).toLowerCase();
  if (extension !== ".js" && extension !== ".mjs") {
    throw new ConfigError(
      `Backend module ${shown} is not plain JavaScript; ${BINARY_RULES}. Bundle it first, e.g. with deno bundle`,
    );
  }
  let source: string;
  try {
    source = await Deno.readTextFile(path);
  } catch (error) {
    throw new ConfigError(
      error instanceof Deno.errors.NotFound
        ? `Backend module ${shown} does not exist; a relative path resolves against the config file's folder`
        : `Backend module ${shown} can't be read: ${firstLine(error)}`,
      { cause: error },
    );
  }
  const foreign = foreignImports(source);
  if (foreign.length > 0) {
    throw new ConfigError(
      `Backend module ${shown} imports ${
        foreign.join(", ")
      }; ${BINARY_RULES}. Bundle it into one file, e.g. with deno bundle`,
    );
  }
  // sourceURL names the file in stack traces instead of the data: URL.
  const data = `data:text/javascript;charset=utf-8,${
    encodeURIComponent(`${source}\n//# sourceURL=${url}\n`)
  }`;
  try {
    return await import(data);
  } catch (error) {
    throw new ConfigError(
      `Backend module ${shown} failed to load: ${
        firstLine(error)
      } (${BINARY_RULES})`,
      { cause: error },
    );
  }
}

/** The host an import of `url` needs permission for. */
function importHost(url: string): string {
  return url.startsWith("jsr:") ? "jsr.io" : new URL(url).host;
}

/** Imports a plugin by its URL, translating Deno's refusals. */
async function importByUrl(
  specifier: string,
  url: string,
): Promise<Record<string, unknown>> {
  const shown = describe(specifier, url);
  try {
    return await import(url);
  } catch (error) {
    const message = firstLine(error);
    const asked = /Requires import access to "([^"]+)"/.exec(message)?.[1] ??
      (/--no-remote/.test(message) ? importHost(url) : undefined);
    // Users name hosts as in the URL; the default https port is implied.
    const host = asked?.replace(/:443$/, "");
    if (host !== undefined) {
      throw new ConfigError(
        `Backend module ${shown}: importing code from ${host} needs explicit permission, since a plugin runs with all of Stormlock's; set STORMLOCK_ALLOW_IMPORT=${host} for scripts/stormlock, or pass --allow-import=${host} to deno run`,
        { cause: error },
      );
    }
    if (/^Module not found/.test(message) && url.startsWith("file:")) {
      throw new ConfigError(
        `Backend module ${shown} does not exist; a relative path resolves against the config file's folder`,
        { cause: error },
      );
    }
    throw new ConfigError(
      `Backend module ${shown} failed to load: ${message}`,
      { cause: error },
    );
  }
}

/**
 * Loads a plugin module and checks its shape: a `createBackend` function
 * and, if present, `optionNames` as an array of strings.
 *
 * @param specifier The module as configured: a path or URL.
 * @param context Where it was configured; paths resolve against its folder.
 * @param mode How to load it; defaults to {@linkcode pluginLoadMode}.
 * @throws {ConfigError} when the module can't load or doesn't fit, naming
 * what is missing.
 *
 * @example
 * ```ts ignore
 * import { loadPlugin } from "./plugin.ts";
 * const module = await loadPlugin("./json-file-backend.js", {
 *   name: "json",
 *   section: "backend.json",
 *   configDir: "/etc/stormlock",
 * });
 * ```
 */
export async function loadPlugin(
  specifier: string,
  context: BackendContext,
  mode: PluginLoadMode = pluginLoadMode(),
): Promise<BackendModule> {
  const url = resolvePluginUrl(specifier, context);
  const shown = describe(specifier, url);
  const module = mode === "data"
    ? await importAsData(specifier, url)
    : await importByUrl(specifier, url);
  const definition = module.backend as Record<string, unknown> | undefined;
  if (definition !== undefined) {
    if (
      typeof definition !== "object" || definition === null ||
      typeof definition.open !== "function"
    ) {
      throw new ConfigError(
        `Backend module ${shown} exports backend, but not as a definition with an open(settings, context) function; see "Writing a backend" in docs/writing-a-backend.md`,
      );
    }
    return module as BackendModule;
  }
  if (typeof module.createBackend !== "function") {
    const names = Object.keys(module);
    const fallback = module.default as Record<string, unknown> | undefined;
    const hint = "createBackend" in module
      ? `; its createBackend is a ${typeof module.createBackend}`
      : typeof fallback?.backend === "object" ||
          typeof fallback?.createBackend === "function"
      ? "; it has one on its default export, but it must be a named export"
      : names.length > 0
      ? `; it exports only ${names.join(", ")}`
      : "; it exports nothing";
    throw new ConfigError(
      `Backend module ${shown} exports neither a backend definition nor a createBackend(options, context) function${hint}`,
    );
  }
  const optionNames = module.optionNames;
  if (
    optionNames !== undefined &&
    !(Array.isArray(optionNames) &&
      optionNames.every((name) => typeof name === "string"))
  ) {
    throw new ConfigError(
      `Backend module ${shown} exports optionNames, but not as an array of strings`,
    );
  }
  return module as unknown as BackendModule;
}

/**
 * Splits a plugin's config into the module to load and the options its
 * factory gets: `module` is Stormlock's key, so the plugin never sees it.
 */
export function pluginOptions(
  options: BackendOptions,
): { module?: string; options: BackendOptions } {
  const { module, ...rest } = options;
  return { module: module?.trim(), options: rest };
}

/** What a config may load, by how it was found and what the caller allows. */
export interface PluginPolicy {
  /** How the config file was found. */
  origin?: ConfigOrigin;
  /** Whether `npm:` and `jsr:` plugin packages may load. */
  allowPackagePlugins?: boolean;
}

/**
 * The plugin module a backend setting names, if it names one.
 *
 * @example
 * ```ts
 * import { pluginModuleOf } from "./plugin.ts";
 * pluginModuleOf("./my.js", {}); // "./my.js"
 * pluginModuleOf("team-a", { module: "./my.js" }); // "./my.js"
 * pluginModuleOf("redis", {}); // undefined
 * ```
 */
export function pluginModuleOf(
  backend: string,
  options: BackendOptions,
): string | undefined {
  return options.module ??
    (isPluginSpecifier(backend) ? backend : undefined);
}

/**
 * Refuses plugin code that the config's user did not clearly choose: any
 * plugin named by a config found in the working folder (it could come from
 * any repository), and `npm:` or `jsr:` packages unless allowed.
 *
 * The rule is about where the file is, not how the search met it:
 * `loadConfig` gives `./.stormlock.cfg` that is really
 * `~/.stormlock.cfg` or `$XDG_CONFIG_HOME/stormlock.cfg` (as when run from
 * the home folder) the origin `home` or `xdg`, so it may load plugins.
 *
 * @param specifier The plugin module as configured.
 * @param configPath The config file that names it, for the message.
 * @param policy How the config was found, and what the caller allows.
 *
 * @throws {ConfigError} naming the module and how to allow it.
 */
export function assertPluginAllowed(
  specifier: string,
  configPath: string | undefined,
  policy: PluginPolicy,
): void {
  if (policy.origin === "cwd") {
    throw new ConfigError(
      `${configPath} names the plugin module ${specifier}, but a config found in the working folder may not load code (it may come from any repository you cd into); pass it with -c or STORMLOCK_CONFIG to trust it`,
    );
  }
  if (/^(?:npm|jsr):/i.test(specifier) && !policy.allowPackagePlugins) {
    throw new ConfigError(
      `Backend module ${specifier} is a registry package, which runs with all of Stormlock's permissions; set STORMLOCK_ALLOW_PACKAGE_PLUGINS=1 to allow it`,
    );
  }
}
