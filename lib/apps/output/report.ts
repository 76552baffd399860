/**
 * What `stormlock config` shows: which config file is used and why, where
 * it was looked for, its warnings, the backend and store of each resource
 * section, the principal, and whether each store answers. Secrets are
 * masked before anything leaves this file.
 *
 * @module
 */
import { isAbsolute, join, resolve } from "node:path";
import {
  backendsInUse,
  configWarnings,
  resolveLockSettings,
} from "../../composition/config.ts";
import type { ConfigSource } from "../../composition/config.ts";
import { formatTtl } from "../../kit/duration.ts";
import { within } from "../../kit/deadline.ts";
import { expandHome, homeDir, readEnv } from "../../kit/paths.ts";
import type { EnvReader } from "../../kit/paths.ts";
import type { Stormlock } from "../../composition/stormlock.ts";
import { builtinBackends } from "../../composition/registry.ts";
import { definitionOf } from "../../composition/plugin_adapter.ts";
import { printable } from "../../kit/text.ts";
import { coloursFor } from "./colour.ts";
import { maskOptionValue, type OptionSpec } from "../../kit/options.ts";

/** One place in the config search, in order. */
export interface SearchedPlace {
  /** How the place is named: `-c FILE`, `$STORMLOCK_CONFIG`, … */
  place: string;
  /** The file it points at, when it points at one. */
  path?: string;
  /** `used`, `none` (no such file), `unset`, or `not reached`. */
  state: "used" | "none" | "unset" | "not reached";
}

/** One resource section (or `[default]`) and where its locks live. */
export interface ResourceReport {
  /** The section name: `default` or a resource name. */
  section: string;
  /** The backend name. */
  backend: string;
  /** The TTL of new leases, e.g. `1h`. */
  ttl: string;
  /** Who holds its leases. */
  principal: string;
}

/** One backend in use: its store, options (masked) and whether it answers. */
export interface BackendReport {
  /** The backend name. */
  name: string;
  /** The store, e.g. `SQLite database /path` or `Redis at host:6379`. */
  store?: string;
  /** The `[backend.NAME]` options, with secrets masked. */
  options: Record<string, string>;
  /**
   * A built-in backend's defaults for the options not set (the table, the
   * key prefix, the timeout), with secrets masked.
   */
  defaults: Record<string, string>;
  /** Whether it answered a read within the bound. */
  answers: boolean;
  /** How long the check took, in ms. */
  ms: number;
  /** Why it did not answer. */
  error?: string;
}

/** Everything `stormlock config` shows. */
export interface ConfigReport {
  /** The config file used, or `undefined` for the built-in defaults. */
  file?: string;
  /** Why that file (or none) was used. */
  why: string;
  /** The search, in order. */
  search: SearchedPlace[];
  /** Warnings about the config. */
  warnings: string[];
  /** `[default]` first, then each resource section. */
  resources: ResourceReport[];
  /** Each backend in use. */
  backends: BackendReport[];
}

/**
 * An option value safe to show: secrets become `****`, and so does the
 * password in a URL's user part. Without the backend's schema, an option
 * whose name says it is secret counts as one (see
 * {@linkcode maskOptionValue}, where options declare `secret: true`).
 * @example
 * ```ts
 * import { maskSecret } from "./report.ts";
 * maskSecret("url", "redis://:hunter2@h:6379/0"); // "redis://:****@h:6379/0"
 * maskSecret("password", "hunter2"); // "****"
 * ```
 */
export function maskSecret(
  key: string,
  value: string,
  options?: Record<string, OptionSpec>,
): string {
  return maskOptionValue(
    key,
    value,
    options && Object.hasOwn(options, key) ? options[key] : undefined,
  );
}

/** The search in order, marking the file used. */
function searchOrder(
  source: ConfigSource,
  used: string | undefined,
): SearchedPlace[] {
  const env: EnvReader = source.env ?? ((name) => Deno.env.get(name));
  const cwd = source.cwd ?? Deno.cwd();
  const home = homeDir(env);
  const xdgSet = readEnv(env, "XDG_CONFIG_HOME");
  const xdg = xdgSet && isAbsolute(xdgSet)
    ? xdgSet
    : home && isAbsolute(home)
    ? join(home, ".config")
    : undefined;
  const given = (value: string | undefined) =>
    value === undefined ? undefined : resolve(cwd, expandHome(value, env));
  const places: Array<[string, string | undefined, boolean]> = [
    ["-c FILE", given(source.path), true],
    ["$STORMLOCK_CONFIG", given(readEnv(env, "STORMLOCK_CONFIG")), true],
    ["./.stormlock.cfg", join(cwd, ".stormlock.cfg"), false],
    [
      "$XDG_CONFIG_HOME/stormlock.cfg",
      xdg && join(xdg, "stormlock.cfg"),
      false,
    ],
    [
      "~/.stormlock.cfg",
      home && isAbsolute(home) ? join(home, ".stormlock.cfg") : undefined,
      false,
    ],
  ];
  let found = false;
  return places.map(([place, path, explicit]) => {
    let state: SearchedPlace["state"];
    if (found) state = "not reached";
    else if (path === undefined) state = "unset";
    else if (path === used) state = "used";
    else state = explicit ? "unset" : "none";
    if (state === "used") found = true;
    return { place, ...(path ? { path } : {}), state };
  });
}

/** A built-in backend's option declarations; `undefined` for others. */
async function optionsOf(
  name: string,
): Promise<Record<string, OptionSpec> | undefined> {
  const load = Object.hasOwn(builtinBackends, name)
    ? builtinBackends[name]
    : undefined;
  return load ? definitionOf(await load(), name).schema.options : undefined;
}

/** A built-in backend's defaults for the options not set, masked. */
async function defaultsOf(
  name: string,
  set: Record<string, string>,
): Promise<Record<string, string>> {
  const options = await optionsOf(name);
  if (!options) return {};
  return Object.fromEntries(
    Object.entries(options)
      .filter(([key, spec]) =>
        !(key in set) && "default" in spec && spec.default !== undefined
      )
      .map(([key, spec]) => [
        key,
        maskSecret(
          key,
          String((spec as { default: unknown }).default),
          options,
        ),
      ]),
  );
}

const WHY: Record<string, string> = {
  option: "named by -c",
  env: "named by $STORMLOCK_CONFIG",
  cwd: "found in the working folder",
  xdg: "found in $XDG_CONFIG_HOME",
  home: "found in the home folder",
};

/**
 * Builds the report for `locks`' config, checking each backend with one
 * bounded read.
 *
 * @param locks The open store.
 * @param source How the config was looked for (`-c`, env, cwd).
 * @param boundMs How long each backend may take to answer.
 * @example
 * ```ts ignore
 * import { openStormlock } from "@stormlock/stormlock";
 * import { configReport } from "./report.ts";
 * await using locks = await openStormlock();
 * console.log(await configReport(locks, {}));
 * ```
 */
export async function configReport(
  locks: Stormlock,
  source: ConfigSource,
  boundMs = 5000,
): Promise<ConfigReport> {
  const config = locks.config;
  const env = source.env;
  const resources: ResourceReport[] = [];
  const warnings = [...config.warnings ?? [], ...configWarnings(config)];
  for (
    const section of [
      "default",
      ...Object.keys(config.sections).filter((name) =>
        name !== "default" && !name.startsWith("backend.")
      ),
    ]
  ) {
    const settings = resolveLockSettings(config, section, env);
    for (const warning of settings.warnings) {
      if (!warnings.includes(warning)) warnings.push(warning);
    }
    resources.push({
      section,
      backend: settings.backend,
      ttl: formatTtl(settings.ttlSeconds),
      principal: settings.principal,
    });
  }
  const backends = await Promise.all(
    backendsInUse(config).map(async (name): Promise<BackendReport> => {
      const declared = await optionsOf(name);
      const options = Object.fromEntries(
        Object.entries(config.sections[`backend.${name}`] ?? {}).map((
          [key, value],
        ) => [key, maskSecret(key, value, declared)]),
      );
      const defaults = await defaultsOf(name, options);
      const started = Date.now();
      let store: string | undefined;
      try {
        await within(boundMs, async () => {
          const backend = await locks.backend(name);
          store = backend.label;
          if (backend.capabilities.list) {
            await backend.list("stormlock-config-check/", { internal: true });
          } else await backend.current("stormlock-config-check");
        });
        return {
          name,
          store,
          options,
          defaults,
          answers: true,
          ms: Date.now() - started,
        };
      } catch (error) {
        return {
          name,
          ...(store ? { store } : {}),
          options,
          defaults,
          answers: false,
          ms: Date.now() - started,
          error: (error as Error)?.message ?? String(error),
        };
      }
    }),
  );
  return {
    ...(config.path ? { file: config.path } : {}),
    why: config.path
      ? WHY[config.origin ?? ""] ?? "given"
      : "no config file was found, so the built-in defaults apply (embedded SQLite, ttl 1h)",
    search: searchOrder(source, config.path),
    warnings,
    resources,
    backends,
  };
}

/**
 * The config report as `stormlock config` prints it for people: the file
 * and why, the search order, warnings, resources and backends, with
 * colours when stdout is a terminal.
 *
 * @param report What {@linkcode configReport} found.
 * @returns The text, without a final newline.
 * @example
 * ```ts ignore
 * console.log(configReportText(await configReport(locks)));
 * ```
 */
export function configReportText(report: ConfigReport): string {
  const colours = coloursFor(Deno.stdout);
  const p = printable;
  const state = {
    used: `  ${colours.green("<- used")}`,
    none: "  (no such file)",
    unset: "  (not set)",
    "not reached": "",
  };
  return [
    `Config file: ${p(report.file ?? "none")} (${report.why})`,
    "Searched, in order:",
    ...report.search.map((place, index) =>
      `  ${index + 1}. ${place.place.padEnd(32)}${p(place.path ?? "")}${
        state[place.state]
      }`
    ),
    `Warnings: ${report.warnings.length === 0 ? "none" : ""}`,
    ...report.warnings.map((warning) => `  - ${colours.yellow(p(warning))}`),
    "Resources:",
    ...report.resources.map((resource) =>
      `  [${p(resource.section)}]  backend ${
        p(resource.backend)
      }, ttl ${resource.ttl}, principal ${p(resource.principal)}`
    ),
    "Backends:",
    ...report.backends.flatMap((backend) => [
      `  ${p(backend.name)}: ${p(backend.store ?? "(not opened)")}; ${
        backend.answers
          ? colours.green(`answers (${backend.ms} ms)`)
          : colours.red(`does not answer: ${p(backend.error ?? "")}`)
      }`,
      ...Object.entries(backend.options).map(([key, value]) =>
        `    ${p(key)} = ${p(value)}`
      ),
      ...Object.entries(backend.defaults).map(([key, value]) =>
        `    ${p(key)} = ${p(value)}  ${colours.dim("(default)")}`
      ),
    ]),
  ].join("\n");
}
