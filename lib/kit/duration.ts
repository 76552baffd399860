/**
 * Durations: one rule for every TTL, wait, timeout and limit, in the CLI
 * and the config. A lease's granularity is one second.
 *
 * @module
 */
import { UsageError } from "./errors.ts";
import { didYouMean } from "./suggest.ts";

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

/** Every unit spelling offered when a unit is mistyped. */
const UNIT_SPELLINGS = [
  "ms",
  "s",
  "sec",
  "seconds",
  "m",
  "min",
  "minutes",
  "h",
  "hours",
  "d",
  "days",
  "w",
  "weeks",
];

const PART = /(\d+)\s*([a-z]*)\s*/y;

/** The forms every duration message shows. */
const FORMS = "use forms like 30s, 10m, 1h30m, 2 days or 1w";

/**
 * Parses a duration, the one rule shared by the CLI (`--ttl`, `--wait`,
 * `--max-hold`, `--kill-after`) and the config (`ttl`, `max_hold`,
 * `timeout`): one or more `NUMBER UNIT` parts, where a unit is `ms` or any
 * prefix of `weeks`, `days`, `hours`, `minutes` or `seconds`, and a bare
 * number is seconds (`90` is `90s`).
 *
 * @param text The duration as the user wrote it.
 * @param what Names the value in the error, e.g. `TTL` or `wait time`.
 * @returns The duration in milliseconds, at least 1.
 * @throws {UsageError} when the text is not a duration, or is zero,
 * negative or fractional; a mistyped unit gets the nearest one suggested.
 *
 * @example
 * ```ts
 * import { parseDurationMs } from "@stormlock/stormlock";
 * parseDurationMs("1h30m"); // 5400000
 * parseDurationMs("90"); // 90000
 * parseDurationMs("500ms"); // 500
 * ```
 */
export function parseDurationMs(text: string, what = "duration"): number {
  const input = text.trim();
  const bad = (why: string) =>
    new UsageError(`Bad ${what} "${text}": ${why}; ${FORMS}`);
  if (input === "") throw bad("it is empty");
  if (input.startsWith("-")) throw bad("it is negative");
  if (/\d[.,]\d/.test(input)) throw bad("use whole numbers (500ms, not 0.5s)");
  if (/^\d+$/.test(input)) {
    if (Number(input) === 0) throw bad("it must be more than zero");
    return Number(input) * 1000;
  }
  if (/[A-Z]/.test(input)) throw bad("units are lowercase");

  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < input.length) {
    const start = PART.lastIndex;
    const match = PART.exec(input);
    if (!match) throw bad(`cannot read "${input.slice(start)}"`);
    const [, digits, unitText] = match;
    if (unitText === "") {
      throw bad(`"${digits}" needs a unit after a first part`);
    }
    if (
      unitText === "ms" ||
      (unitText.length > 2 && "milliseconds".startsWith(unitText))
    ) {
      total += Number(digits);
      continue;
    }
    const unit = UNITS.find(([name]) => name.startsWith(unitText));
    if (!unit) {
      throw bad(
        `"${unitText}" is not a unit${didYouMean(unitText, UNIT_SPELLINGS)}`,
      );
    }
    total += Number(digits) * unit[1] * 1000;
  }
  if (total === 0) throw bad("it must be more than zero");
  return total;
}

/**
 * Parses a TTL with {@linkcode parseDurationMs}'s rule (`1 days`,
 * `30 minutes`, `1h30m`, `2w`, or `90` for 90 seconds) into whole seconds.
 *
 * @param text The TTL as the user wrote it.
 * @returns The TTL in seconds, from 1 to {@linkcode MAX_TTL_SECONDS}.
 * @throws {UsageError} when the text is not a duration, is not whole
 * seconds, or is zero, negative or longer than 365 days.
 *
 * @example
 * ```ts
 * import { parseTtl } from "@stormlock/stormlock";
 * parseTtl("1h30m"); // 5400
 * parseTtl("30 minutes"); // 1800
 * ```
 */
export function parseTtl(text: string, what = "TTL"): number {
  const ms = parseDurationMs(text, what);
  if (ms % 1000 !== 0) {
    throw new UsageError(
      `Bad ${what} "${text}": it must be whole seconds; ${FORMS}`,
    );
  }
  if (ms > MAX_TTL_SECONDS * 1000) {
    throw new UsageError(
      `Bad ${what} "${text}": it must be at most 365 days; ${FORMS}`,
    );
  }
  return ms / 1000;
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
 * Parses a network timeout with the one duration rule
 * ({@linkcode parseDurationMs}): `500ms`, `3s`, `1m`, or `3` for 3 seconds.
 *
 * @param text The timeout as configured.
 * @param where Names the config key in the error, e.g. `[backend.redis] timeout`.
 * @returns Milliseconds, at least 1.
 * @throws {UsageError} when the text is not a positive duration.
 *
 * @example
 * ```ts
 * import { parseTimeoutMs } from "@stormlock/stormlock";
 * parseTimeoutMs("500ms", "timeout"); // 500
 * parseTimeoutMs("3", "timeout"); // 3000
 * ```
 */
export function parseTimeoutMs(text: string, where: string): number {
  try {
    return parseDurationMs(text);
  } catch (error) {
    throw new UsageError(
      `${where}: ${(error as Error).message.replace(/^Bad duration /, "")}`,
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
