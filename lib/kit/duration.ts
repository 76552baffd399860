/**
 * TTL parsing and formatting. Granularity is one second.
 *
 * @module
 */
import { UsageError } from "./errors.ts";

/**
 * The longest TTL accepted: 365 days, in seconds.
 * @example
 * ```ts
 * import { MAX_TTL_SECONDS, parseTtl } from "@stormlock/stormlock";
 * console.log(parseTtl("365d") === MAX_TTL_SECONDS); // true
 * ```
 */
export const MAX_TTL_SECONDS = 365 * 24 * 3600;

const UNITS: ReadonlyArray<readonly [name: string, seconds: number]> = [
  ["weeks", 7 * 24 * 3600],
  ["days", 24 * 3600],
  ["hours", 3600],
  ["minutes", 60],
  ["seconds", 1],
];

const PART = /(\d+)\s*([a-z]+)\s*/y;

/**
 * Parses a TTL such as `1 days`, `30 minutes`, `2 h`, `1 sec`, `1d`,
 * `1h30m` or `2w` into whole seconds. A unit is any prefix of `weeks`,
 * `days`, `hours`, `minutes` or `seconds`.
 *
 * @param text The TTL as the user wrote it.
 * @returns The TTL in seconds, from 1 to {@linkcode MAX_TTL_SECONDS}.
 * @throws {UsageError} when the text is not a TTL, or is zero, negative,
 * fractional or longer than 365 days.
 *
 * @example
 * ```ts
 * import { parseTtl } from "@stormlock/stormlock";
 * parseTtl("1h30m"); // 5400
 * parseTtl("30 minutes"); // 1800
 * ```
 */
export function parseTtl(text: string): number {
  const input = text.trim();
  const bad = (why: string) =>
    new UsageError(
      `Bad TTL "${text}": ${why}; use forms like 30s, 10m, 1h30m, 2 days or 1w`,
    );
  if (input === "") throw bad("it is empty");
  if (input.startsWith("-")) throw bad("it is negative");
  if (/\d[.,]\d/.test(input)) throw bad("use whole numbers");
  if (/^\d+$/.test(input)) throw bad("it needs a unit");
  if (/[A-Z]/.test(input)) throw bad("units are lowercase");

  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < input.length) {
    const start = PART.lastIndex;
    const match = PART.exec(input);
    if (!match) throw bad(`cannot read "${input.slice(start)}"`);
    const [, digits, unitText] = match;
    const unit = UNITS.find(([name]) => name.startsWith(unitText));
    if (!unit) throw bad(`"${unitText}" is not a unit`);
    total += Number(digits) * unit[1];
  }
  if (total === 0) throw bad("it must be at least 1 second");
  if (total > MAX_TTL_SECONDS) throw bad("it must be at most 365 days");
  return total;
}

/**
 * Formats seconds compactly, largest unit first.
 *
 * @param seconds A whole number of seconds.
 * @returns Text that {@linkcode parseTtl} reads back to the same value.
 *
 * @example
 * ```ts
 * import { formatTtl } from "@stormlock/stormlock";
 * formatTtl(5400); // "1h30m"
 * ```
 */
export function formatTtl(seconds: number): string {
  if (seconds <= 0) return "0s";
  let rest = seconds;
  let text = "";
  for (const [name, size] of UNITS) {
    const count = Math.floor(rest / size);
    if (count > 0) {
      text += `${count}${name[0]}`;
      rest -= count * size;
    }
  }
  return text;
}

/**
 * Parses a network timeout: `500ms`, `3s`, `1m`, or a bare number of
 * seconds (as the original's `timeout` option was).
 *
 * @param text The timeout as configured.
 * @param where Names the config key in the error, e.g. `[backend.redis] timeout`.
 * @returns Milliseconds, at least 1.
 * @throws {UsageError} when the text is not a positive timeout.
 *
 * @example
 * ```ts
 * import { parseTimeoutMs } from "@stormlock/stormlock";
 * parseTimeoutMs("500ms", "timeout"); // 500
 * parseTimeoutMs("3", "timeout"); // 3000
 * ```
 */
export function parseTimeoutMs(text: string, where: string): number {
  const input = text.trim();
  const millis = /^(\d+)\s*ms$/.exec(input);
  if (millis && Number(millis[1]) > 0) return Number(millis[1]);
  if (/^\d+$/.test(input) && Number(input) > 0) return Number(input) * 1000;
  try {
    return parseTtl(input) * 1000;
  } catch {
    throw new UsageError(
      `${where}: "${text}" is not a timeout; use forms like 500ms, 3s or 1m`,
    );
  }
}

/**
 * A TTL as seconds, or as text such as `"30m"`.
 * @example
 * ```ts
 * import type { Ttl } from "@stormlock/stormlock";
 * const ttls: Ttl[] = [1800, "30m", "1h30m"];
 * ```
 */
export type Ttl = number | string;
