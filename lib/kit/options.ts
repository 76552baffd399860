/**
 * Option schemas: each backend declares its `[backend.NAME]` options once,
 * as plain data, and from that come parsing and validation (every message
 * names the file, section and key), the list of option names, the
 * unknown-key warning, and the option tables in docs/backends/.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { parseDurationMs, parseTtl } from "./duration.ts";
import { commentNote } from "./suggest.ts";
import { resolveConfigPath } from "./paths.ts";
import type { BackendContext, BackendOptions } from "./types.ts";

/**
 * What every option kind shares.
 * @example
 * ```ts
 * import type { OptionBase } from "./options.ts";
 * const base: OptionBase = { doc: "The server", required: true };
 * ```
 */
export interface OptionBase {
  /** One line for the option table in the docs: what the option does. */
  doc: string;
  /** Whether the option must be set. */
  required?: boolean;
  /**
   * Set when this is the original Stormlock's name for an option this
   * backend calls otherwise: the preferred name, which a note points to.
   */
  preferred?: string;
  /**
   * Set on an option whose value must never be shown: the `config` report
   * shows `****`, and {@linkcode scrubSecrets} takes it out of a client's
   * messages (see {@linkcode secretValues}).
   */
  secret?: boolean;
  /**
   * Set when this option says what another says, another way (or under
   * another name): exactly one of the two must be set.
   */
  insteadOf?: string;
}

/**
 * One option's kind and constraints, as plain data so a JavaScript plugin
 * can declare it without importing anything.
 *
 * - `text`: trimmed text;
 * - `duration`: `500ms`, `3s`, `1m` or bare seconds, as milliseconds
 *   (capped at about 24.8 days, the longest timer);
 * - `ttl`: a TTL such as `30d`, as seconds;
 * - `boolean`: true/false, yes/no, on/off, 1/0;
 * - `integer`: whole number within `min` and `max`;
 * - `port`: 1 to 65535;
 * - `url`: a URL whose scheme is one of `schemes`; the parameters named
 *   in `pemParams` name PEM files, each read and checked like `pem`, and
 *   their texts come from {@linkcode urlPemFiles} (a value in
 *   `pemKeywords`, such as libpq's `sslrootcert=system`, names no file);
 * - `path`: a file, relative to the config file's folder;
 * - `pem`: a PEM file, read and checked; the value is its text.
 *
 * @example
 * ```ts
 * import type { OptionSpec } from "./options.ts";
 * const url: OptionSpec = { kind: "url", schemes: ["redis:"], default: "redis://127.0.0.1", doc: "The server" };
 * ```
 */
export type OptionSpec =
  | OptionBase & { kind: "text"; default?: string }
  | OptionBase & { kind: "duration"; default?: string }
  | OptionBase & { kind: "ttl"; default?: string }
  | OptionBase & { kind: "boolean"; default?: boolean }
  | OptionBase & {
    kind: "integer";
    default?: number;
    min?: number;
    max?: number;
  }
  | OptionBase & { kind: "port"; default?: number }
  | OptionBase & {
    kind: "url";
    schemes: readonly string[];
    default?: string;
    /** URL parameters that name PEM files, relative to the config file. */
    pemParams?: readonly string[];
    /** Values of those parameters that name no file, kept as they are. */
    pemKeywords?: readonly string[];
  }
  | OptionBase & { kind: "path"; default?: string }
  | OptionBase & { kind: "pem" };

/**
 * A backend's options by key, plus pairs of keys that must be set
 * together.
 *
 * @example
 * ```ts
 * import type { OptionSchema } from "./options.ts";
 * const schema: OptionSchema = {
 *   options: {
 *     cert: { kind: "pem", doc: "Client certificate" },
 *     key: { kind: "pem", doc: "Its private key" },
 *   },
 *   together: [["cert", "key"]],
 * };
 * ```
 */
export interface OptionSchema {
  /** Every option the backend reads. */
  options: Record<string, OptionSpec>;
  /** Pairs of options that must both be set, or neither. */
  together?: readonly (readonly [string, string])[];
}

/**
 * The parsed value of one option kind.
 * @example
 * ```ts
 * import type { ValueOf } from "./options.ts";
 * const port: ValueOf<{ kind: "port"; doc: "" }> = 6379;
 * ```
 */
export type ValueOf<S extends OptionSpec> = S extends { kind: "boolean" }
  ? boolean
  : S extends { kind: "duration" | "ttl" | "integer" | "port" } ? number
  : S extends { kind: "url" } ? URL
  : string;

/**
 * Whether an option always has a value: it is required or has a default.
 * @example
 * ```ts
 * import type { HasValue } from "./options.ts";
 * const yes: HasValue<{ kind: "text"; default: "x"; doc: "" }> = true;
 * ```
 */
export type HasValue<S extends OptionSpec> = S extends { required: true } ? true
  : S extends { default: unknown } ? true
  : false;

/**
 * The parsed settings a schema yields: options with a default or marked
 * required are always present.
 *
 * @example
 * ```ts
 * import type { SettingsOf } from "./options.ts";
 * type S = SettingsOf<{ timeout: { kind: "duration"; default: "3s"; doc: "" } }>;
 * const settings: S = { timeout: 3000 };
 * ```
 */
export type SettingsOf<O extends Record<string, OptionSpec>> =
  & { [K in keyof O as HasValue<O[K]> extends true ? K : never]: ValueOf<O[K]> }
  & {
    [K in keyof O as HasValue<O[K]> extends true ? never : K]?: ValueOf<O[K]>;
  };

/**
 * A config error naming the file, section and key of a bad option;
 * `options` can carry the `cause`.
 *
 * @example
 * ```ts
 * import { optionError } from "./options.ts";
 * const error = optionError(
 *   { name: "redis", section: "backend.redis", configPath: "/etc/s.cfg" },
 *   "url",
 *   "it is not a redis:// URL",
 * );
 * console.log(error.message); // "/etc/s.cfg [backend.redis] url: it is not a redis:// URL"
 * ```
 */
export function optionError(
  context: BackendContext,
  key: string,
  why: string,
  options?: ErrorOptions,
): ConfigError {
  return new ConfigError(
    `${context.configPath ?? "<config>"} [${context.section}] ${key}: ${why}`,
    options,
  );
}

/** The longest timeout a timer can wait: about 24.8 days, in ms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * A timeout as messages show it: `3s` when it is whole seconds, else `500ms`.
 *
 * @example
 * ```ts
 * import { formatTimeout } from "./options.ts";
 * formatTimeout(3000); // "3s"
 * formatTimeout(500); // "500ms"
 * ```
 */
export function formatTimeout(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const TRUE = ["true", "yes", "on", "1"];
const FALSE = ["false", "no", "off", "0"];

/** Parses one option's text by its kind. */
function parseValue(
  spec: OptionSpec,
  text: string,
  key: string,
  context: BackendContext,
): unknown {
  const fail = (why: string, cause?: unknown) =>
    optionError(
      context,
      key,
      `${why}${commentNote(text)}`,
      cause ? { cause } : undefined,
    );
  const shown = JSON.stringify(
    text.length > 60 ? `${text.slice(0, 60)}…` : text,
  );
  switch (spec.kind) {
    case "text":
      return text;
    case "duration":
      try {
        return Math.min(parseDurationMs(text), MAX_TIMEOUT_MS);
      } catch (error) {
        throw fail(
          (error as Error).message.replace(
            /^Bad duration "[^]*?": /,
            `${shown}: `,
          ),
        );
      }
    case "ttl":
      try {
        return parseTtl(text);
      } catch (error) {
        throw fail(
          (error as Error).message.replace(/^Bad TTL "[^]*?": /, `${shown}: `),
        );
      }
    case "boolean":
      if (TRUE.includes(text.toLowerCase())) return true;
      if (FALSE.includes(text.toLowerCase())) return false;
      throw fail(`${shown} is not true or false`);
    case "integer":
    case "port": {
      const [min, max] = spec.kind === "port"
        ? [1, 65535]
        : [spec.min ?? 0, spec.max ?? Number.MAX_SAFE_INTEGER];
      const value = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(value >= min && value <= max)) {
        throw fail(
          `${shown} is not a whole number from ${min} to ${max}${
            spec.kind === "port" ? " (a TCP port)" : ""
          }`,
        );
      }
      return value;
    }
    case "url": {
      const schemes = spec.schemes.map((scheme) => `${scheme}//`).join(" or ");
      let url: URL;
      try {
        url = new URL(text);
      } catch {
        // Never echo a URL: it may hold a password.
        throw fail(`not a URL; use ${schemes}…`);
      }
      if (!spec.schemes.includes(url.protocol)) {
        throw fail(`the scheme is "${url.protocol}"; use ${schemes}`);
      }
      if (spec.pemParams) {
        readUrlPems(url, spec.pemParams, spec.pemKeywords ?? [], context, fail);
      }
      return url;
    }
    case "path":
      return resolveConfigPath(text, context);
    case "pem":
      return readPem(text, "", context, fail);
  }
}

/**
 * Reads and checks the PEM file at `path` (relative to the config file);
 * `what` names it in messages (`sslcert file `), or is empty.
 */
function readPem(
  path: string,
  what: string,
  context: BackendContext,
  fail: (why: string, cause?: unknown) => Error,
): string {
  const file = resolveConfigPath(path, context);
  let pem: string;
  try {
    pem = Deno.readTextFileSync(file);
  } catch (error) {
    throw fail(
      `cannot read ${what}${file}: ${(error as Error).message}`,
      error,
    );
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(pem)) {
    throw fail(
      `${what}${file} is not a PEM file (no "-----BEGIN …-----" line)`,
    );
  }
  return pem;
}

/** The PEM texts read for each parsed URL, by parameter. */
const urlPems = new WeakMap<URL, Record<string, string>>();

/** Reads the PEM files a URL's parameters name, and keeps their texts. */
function readUrlPems(
  url: URL,
  params: readonly string[],
  keywords: readonly string[],
  context: BackendContext,
  fail: (why: string, cause?: unknown) => Error,
): Record<string, string> {
  const pems: Record<string, string> = {};
  for (const param of params) {
    const path = url.searchParams.get(param);
    if (path === null || keywords.includes(path)) continue;
    pems[param] = readPem(path, `${param} file `, context, fail);
  }
  urlPems.set(url, pems);
  return pems;
}

/**
 * The PEM files a URL's parameters name (see `pemParams` on a `url`
 * option), read and checked, by parameter. A URL the schema parsed gives
 * the texts it read; any other is read now, relative to the config file.
 *
 * @param url The URL, as the schema parsed it or as the backend built it.
 * @param params The parameters that name PEM files.
 * @param key The option, for messages.
 * @param context Names the file and section in messages, and the folder.
 * @param keywords Values that name no file (libpq's `sslrootcert=system`).
 * @throws {ConfigError} when a file can't be read or is not PEM.
 *
 * @example
 * ```ts
 * import { urlPemFiles } from "./options.ts";
 * const pems = urlPemFiles(
 *   new URL("postgres://db/ops?sslmode=require"),
 *   ["sslrootcert"],
 *   "url",
 *   { name: "postgres", section: "backend.postgres" },
 * );
 * console.log(pems); // {}
 * ```
 */
export function urlPemFiles(
  url: URL,
  params: readonly string[],
  key: string,
  context: BackendContext,
  keywords: readonly string[] = [],
): Record<string, string> {
  const known = urlPems.get(url);
  if (known) return known;
  return readUrlPems(
    url,
    params,
    keywords,
    context,
    (why, cause) =>
      optionError(context, key, why, cause ? { cause } : undefined),
  );
}

/**
 * The values a client's messages must never show: those of options marked
 * `secret`, and the password in any URL option.
 *
 * @example
 * ```ts
 * import { secretValues } from "./options.ts";
 * secretValues(
 *   { password: { kind: "text", secret: true, doc: "" } },
 *   { password: "hunter2" },
 * ); // ["hunter2"]
 * ```
 */
export function secretValues(
  options: Record<string, OptionSpec>,
  settings: object,
): string[] {
  const secrets: string[] = [];
  for (const [key, spec] of Object.entries(options)) {
    const value = (settings as Record<string, unknown>)[key];
    if (spec.secret && typeof value === "string" && value !== "") {
      secrets.push(value);
    }
    if (value instanceof URL && value.password !== "") {
      secrets.push(value.password);
      try {
        secrets.push(decodeURIComponent(value.password));
      } catch {
        // Not percent-encoded text: the raw form is enough.
      }
    }
  }
  return [...new Set(secrets)];
}

/**
 * `text` with every secret replaced by `***`, for a client's message.
 *
 * @example
 * ```ts
 * import { scrubSecrets } from "./options.ts";
 * scrubSecrets("bad key hunter2", ["hunter2"]); // "bad key ***"
 * ```
 */
export function scrubSecrets(text: string, secrets: readonly string[]): string {
  return secrets.reduce(
    (out, secret) => secret ? out.replaceAll(secret, "***") : out,
    text,
  );
}

/** Option names that hold secrets, for options not declared `secret`. */
const SECRET_NAME = /pass|secret|token|credential|session|access_key/i;

/**
 * An option value safe to show: `****` for an option declared `secret`
 * (or, when no schema is known, one whose name says it is secret), and
 * the password in a URL's user part masked.
 *
 * @param key The option.
 * @param value Its text.
 * @param spec Its declaration, when the backend's schema is known.
 * @example
 * ```ts
 * import { maskOptionValue } from "./options.ts";
 * maskOptionValue("url", "redis://:hunter2@h:6379/0"); // "redis://:****@h:6379/0"
 * maskOptionValue("key", "abc", { kind: "text", secret: true, doc: "" }); // "****"
 * ```
 */
export function maskOptionValue(
  key: string,
  value: string,
  spec?: OptionSpec,
): string {
  if (spec ? spec.secret : SECRET_NAME.test(key)) {
    return value === "" ? "" : "****";
  }
  return value.replace(
    /^([a-z][a-z0-9+.-]*:\/\/)([^@/?#]*)@/i,
    (_, scheme: string, user: string) =>
      `${scheme}${user.includes(":") ? `${user.split(":")[0]}:****` : "****"}@`,
  );
}

/**
 * Parses a section's options by a schema. Blank values count as unset.
 *
 * @param schema What the backend reads.
 * @param options The section's values.
 * @param context Names the file and section in errors.
 * @returns The settings, with defaults filled in.
 * @throws {ConfigError} naming the file, section and key of a bad value,
 * a missing required option, or half of a pair.
 *
 * @example
 * ```ts
 * import { parseOptions } from "./options.ts";
 * const settings = parseOptions(
 *   { options: { timeout: { kind: "duration", default: "3s", doc: "Bound" } } },
 *   { timeout: "500ms" },
 *   { name: "redis", section: "backend.redis" },
 * );
 * console.log(settings.timeout); // 500
 * ```
 */
export function parseOptions(
  schema: OptionSchema,
  options: BackendOptions,
  context: BackendContext,
): Record<string, unknown> {
  const settings: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema.options)) {
    const raw = Object.hasOwn(options, key) ? options[key].trim() : "";
    if (raw === "") {
      if (spec.required) {
        throw optionError(
          context,
          key,
          `required; ${spec.doc.replace(/\.$/, "")}`,
        );
      }
      if ("default" in spec && spec.default !== undefined) {
        settings[key] = typeof spec.default === "string"
          ? parseValue(spec, spec.default, key, context)
          : spec.default;
      }
      continue;
    }
    settings[key] = parseValue(spec, raw, key, context);
  }
  for (const [key, spec] of Object.entries(schema.options)) {
    const other = spec.insteadOf;
    if (other === undefined) continue;
    const has = (name: string) => (options[name] ?? "").trim() !== "";
    if (has(key) && has(other)) {
      throw optionError(context, key, `set ${other} or ${key}, not both`);
    }
    if (!has(key) && !has(other)) {
      throw optionError(context, other, `required; set ${other} (or ${key})`);
    }
  }
  for (const [first, second] of schema.together ?? []) {
    const has = (key: string) => (options[key] ?? "").trim() !== "";
    if (has(first) !== has(second)) {
      const [set, unset] = has(first) ? [first, second] : [second, first];
      throw optionError(
        context,
        set,
        `${unset} must be set too; set both ${first} and ${second}, or neither`,
      );
    }
  }
  return settings;
}

/**
 * Warnings for the keys a schema does not know, naming those it does.
 *
 * @example
 * ```ts
 * import { unknownOptionWarnings } from "./options.ts";
 * unknownOptionWarnings(
 *   { options: { url: { kind: "text", doc: "" } } },
 *   { ulr: "x" },
 *   { name: "redis", section: "backend.redis" },
 * ); // ['<config> [backend.redis] ulr: unknown option, ignored (known: url)']
 * ```
 */
export function unknownOptionWarnings(
  schema: OptionSchema,
  options: BackendOptions,
  context: BackendContext,
): string[] {
  const known = Object.keys(schema.options);
  return Object.keys(options).filter((key) => !known.includes(key)).map(
    (key) =>
      optionError(
        context,
        key,
        `unknown option, ignored (known: ${known.join(", ")})`,
      ).message,
  );
}

/**
 * One note for each option set under the original Stormlock's name where
 * the backend prefers another (see {@linkcode OptionBase.preferred}).
 *
 * @example
 * ```ts
 * import { originalNameNotes } from "./options.ts";
 * originalNameNotes(
 *   { options: { connection: { kind: "text", doc: "", preferred: "url" } } },
 *   { connection: "postgres://db/ops" },
 *   { name: "postgres", section: "backend.postgres" },
 * ); // ['<config> [backend.postgres] connection: the original Stormlock's name for url; it works the same, but prefer url']
 * ```
 */
export function originalNameNotes(
  schema: OptionSchema,
  options: BackendOptions,
  context: BackendContext,
): string[] {
  return Object.entries(schema.options).filter(([key, spec]) =>
    spec.preferred !== undefined && (options[key] ?? "").trim() !== ""
  ).map(([key, spec]) =>
    optionError(
      context,
      key,
      `the original Stormlock's name for ${spec.preferred}; it works the same, but prefer ${spec.preferred}`,
    ).message
  );
}

/**
 * The Markdown table of a schema's options, as each backend's docs page shows it.
 *
 * @example
 * ```ts
 * import { optionTable } from "./options.ts";
 * console.log(optionTable({ options: { path: { kind: "path", doc: "The file", required: true } } }));
 * ```
 */
export function optionTable(schema: OptionSchema): string {
  const kinds: Record<OptionSpec["kind"], string> = {
    text: "text",
    duration: "duration",
    ttl: "duration",
    boolean: "true/false",
    integer: "integer",
    port: "port",
    url: "URL",
    path: "file path",
    pem: "PEM file",
  };
  const rows = Object.entries(schema.options).map(([key, spec]) => {
    const kind = spec.kind === "url"
      ? `URL (${spec.schemes.map((s) => `\`${s}//\``).join(", ")})`
      : spec.kind === "integer" &&
          (spec.min !== undefined || spec.max !== undefined)
      ? `integer ${spec.min ?? 0}–${spec.max ?? "∞"}`
      : kinds[spec.kind];
    const fallback = spec.required
      ? "required"
      : "default" in spec && spec.default !== undefined
      ? `\`${spec.default}\``
      : "unset";
    const pair = schema.together?.find((pair) => pair.includes(key));
    const note = pair
      ? ` Set together with \`${pair[0] === key ? pair[1] : pair[0]}\`.`
      : "";
    return `| \`${key}\` | ${kind} | ${fallback} | ${spec.doc}${note} |`;
  });
  return ["| option | kind | default | meaning |", "|---|---|---|---|", ...rows]
    .join("\n");
}
