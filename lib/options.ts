/**
 * Reading a backend's `[backend.NAME]` options, written once so every
 * backend reports a bad value the same way: file, section, key, and why.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import { parseTimeoutMs } from "./duration.ts";
import type { BackendContext, BackendOptions } from "./types.ts";

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

/** An option's trimmed text, or `undefined` when unset or blank. */
export function textOption(
  options: BackendOptions,
  key: string,
): string | undefined {
  const value = options[key]?.trim();
  return value === "" ? undefined : value;
}

/** The longest timeout a timer can wait: about 24.8 days, in ms. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The `timeout` option in milliseconds: `500ms`, `3s`, `1m`, or bare
 * seconds. It is capped at about 24.8 days, since a timer set longer
 * would fire at once.
 *
 * @throws {ConfigError} naming the key when it is not a timeout.
 */
export function timeoutOption(
  options: BackendOptions,
  context: BackendContext,
  defaultMs: number,
): number {
  const text = textOption(options, "timeout");
  if (text === undefined) return defaultMs;
  try {
    return Math.min(parseTimeoutMs(text, "timeout"), MAX_TIMEOUT_MS);
  } catch {
    throw optionError(
      context,
      "timeout",
      `"${text}" is not a timeout; use forms like 500ms, 3s or 1m`,
    );
  }
}

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

/**
 * A yes/no option such as `create_table`.
 *
 * @throws {ConfigError} naming the key when it is neither.
 */
export function booleanOption(
  options: BackendOptions,
  context: BackendContext,
  key: string,
  defaultValue: boolean,
): boolean {
  const text = textOption(options, key);
  if (text === undefined) return defaultValue;
  if (TRUE.includes(text.toLowerCase())) return true;
  if (FALSE.includes(text.toLowerCase())) return false;
  throw optionError(context, key, `"${text}" is not true or false`);
}
