/**
 * Which module implements a backend: a static map of lazy imports for the
 * built-ins, so a command evaluates only the client it uses, and plugin
 * modules named by path or URL (see `plugin.ts`).
 *
 * @module
 */
import { ConfigError } from "../kit/errors.ts";
import { didYouMean, trailingComment } from "../kit/suggest.ts";
import { optionError } from "../kit/options.ts";
import { isPluginSpecifier, loadPlugin, pluginOptions } from "./plugin.ts";
import { type BackendModule, definitionOf } from "./plugin_adapter.ts";
import type { Backend, BackendContext, BackendOptions } from "../kit/types.ts";

/** The built-in backends, each in `backends/NAME.ts`. */
const BUILTIN_NAMES = [
  "sqlite",
  "redis",
  "etcd",
  "postgres",
  "dynamodb",
  "mysql",
  "http",
];

/**
 * The original Stormlock's names for built-in backends, where ours differ:
 * a config that uses one works, with a note naming ours.
 */
const ORIGINAL_NAMES: Record<string, string> = { postgresql: "postgres" };

/**
 * Every built-in backend, by name, as a lazy import. The specifier is a
 * template literal on purpose: `deno run` builds no graph for it, so a
 * command reads only the backend it uses and that backend's client (a
 * string literal per backend made Deno load all five and their npm
 * clients' metadata even for `--version`), while `deno publish` and
 * `deno compile` still expand it over `backends/` (compile also gets
 * `--include` for each, from `scripts/compile.ts`).
 */
export const builtinBackends: Record<string, () => Promise<BackendModule>> =
  Object.fromEntries(
    BUILTIN_NAMES.map((name) => [
      name,
      () => import(`../../backends/${name}/mod.ts`),
    ]),
  );

/**
 * The names of the built-in backends, for messages and docs.
 * @example
 * ```ts
 * import { builtinBackendNames } from "@stormlock/stormlock";
 * console.log(builtinBackendNames()); // ["sqlite", "redis", "etcd", "postgres", "dynamodb", "mysql", "http"]
 * ```
 */
export function builtinBackendNames(): string[] {
  return Object.keys(builtinBackends);
}

function unknownBackend(name: string, context: BackendContext): ConfigError {
  const where = context.configPath ? ` (in ${context.configPath})` : "";
  const comment = trailingComment(name);
  if (comment) {
    return new ConfigError(
      `Backend "${name}"${where} ends in what looks like a comment (${comment.comment}): a comment goes on a line of its own, since # or ; after a value is part of the value; write "backend = ${comment.value}"`,
    );
  }
  const hint = /\.(?:[cm]?js|[cm]?ts|jsx|tsx)$/i.test(name)
    ? `; for a plugin file write a path, e.g. "./${name}"`
    : `, name a plugin module (./my.js, file:///…, https://…), or add [${context.section}] with module = …`;
  return new ConfigError(
    `Unknown backend "${name}"${where}${
      didYouMean(name, builtinBackendNames())
    }; choose one of ${builtinBackendNames().join(", ")}${hint}`,
  );
}

/** A backend module ready to build, with the options its factory gets. */
interface Resolved {
  module: BackendModule;
  options: BackendOptions;
  origin: string;
  plugin: boolean;
  /** The original Stormlock's name the config used for this built-in. */
  renamedFrom?: string;
}

/**
 * Finds the module behind a configured backend: a built-in name, a module
 * specifier (`backend = ./my.js`), or a named instance whose section says
 * `module = …`.
 */
async function resolveModule(
  options: BackendOptions,
  context: BackendContext,
): Promise<Resolved> {
  const { name } = context;
  const split = pluginOptions(options);
  const canonical = Object.hasOwn(ORIGINAL_NAMES, name) &&
      split.module === undefined
    ? ORIGINAL_NAMES[name]
    : name;
  const builtin = Object.hasOwn(builtinBackends, canonical)
    ? builtinBackends[canonical]
    : undefined;
  if (builtin) {
    if (split.module !== undefined) {
      throw optionError(
        context,
        "module",
        `"${name}" is a built-in backend; give the plugin instance another name, e.g. [backend.my-${name}]`,
      );
    }
    return {
      module: await builtin(),
      options,
      origin: `"${canonical}"`,
      plugin: false,
      ...(canonical !== name ? { renamedFrom: name } : {}),
    };
  }
  if (split.module !== undefined) {
    if (split.module === "") {
      throw optionError(
        context,
        "module",
        "it is empty; name the plugin module, e.g. module = ./my.js",
      );
    }
    return {
      module: await loadPlugin(split.module, context),
      options: split.options,
      origin: `module ${split.module}`,
      plugin: true,
    };
  }
  if (isPluginSpecifier(name)) {
    return {
      module: await loadPlugin(name, context),
      options,
      origin: `module ${name}`,
      plugin: true,
    };
  }
  throw unknownBackend(name, context);
}

/**
 * Loads a backend and builds it from its options. The backend is a
 * built-in by name, a plugin module named by path or URL, or a named
 * instance whose `[backend.NAME]` section has `module = PATH_OR_URL`; a
 * relative path resolves against the config file's folder. Unknown option
 * names are reported through `warn`, not ignored silently.
 *
 * @param options The `[backend.NAME]` section.
 * @param context Where the options came from.
 * @param warn Receives warnings; defaults to dropping them.
 * @returns The backend, checked to have every {@linkcode Backend} method.
 * @throws {ConfigError} for an unknown backend, a bad option, or a plugin
 * module that can't load or doesn't fit, naming what is missing.
 *
 * @example
 * ```ts ignore
 * import { openBackend } from "@stormlock/stormlock";
 * const backend = await openBackend({ path: "/tmp/locks.db" }, {
 *   name: "sqlite",
 *   section: "backend.sqlite",
 * });
 * await backend.close();
 * ```
 *
 * @example A plugin instance, as `[backend.shared] module = ./json-file-backend.js`
 * ```ts ignore
 * import { openBackend } from "@stormlock/stormlock";
 * const backend = await openBackend(
 *   { module: "./json-file-backend.js", path: "leases.json" },
 *   { name: "shared", section: "backend.shared", configDir: "/etc/stormlock" },
 * );
 * ```
 */
export async function openBackend(
  options: BackendOptions,
  context: BackendContext,
  warn: (message: string) => void = () => {},
): Promise<Backend> {
  const resolved = await resolveModule(options, context);
  const definition = definitionOf(resolved.module, context.name);
  if (resolved.renamedFrom) {
    const where = context.configPath ? `${context.configPath}: ` : "";
    warn(
      `${where}backend = ${resolved.renamedFrom} is the original Stormlock's name for ${definition.name}; it works the same, but prefer backend = ${definition.name} (options stay in [${context.section}])`,
    );
  }
  return await definition.createBackend(resolved.options, context, {
    warn,
    plugin: resolved.plugin ? resolved.origin : undefined,
  });
}
