/**
 * Times for people, one format everywhere (tables, the held message, error
 * messages, the page): the local time with its offset, and how long ago or
 * ahead it is, rounded the same way.
 *
 * @module
 */

/**
 * A time as ISO 8601 in UTC with an explicit `+00:00` offset.
 * @example
 * ```ts
 * import { isoTime } from "./time.ts";
 * isoTime(new Date(0)); // "1970-01-01T00:00:00.000+00:00"
 * ```
 */
export function isoTime(date: Date): string {
  return date.toISOString().replace("Z", "+00:00");
}

/**
 * The local UTC offset of `date` as `+01:00`; `TZ` is respected.
 * @example
 * ```ts
 * import { localOffset } from "./time.ts";
 * console.log(localOffset(new Date()));
 * ```
 */
export function localOffset(date: Date): string {
  const minutes = -date.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/**
 * A local time with its offset: `14:02 (+01:00)` today, else with the
 * date, `2026-11-29 14:02 (+01:00)`.
 * @example
 * ```ts
 * import { localTime } from "./time.ts";
 * console.log(localTime(new Date()));
 * ```
 */
export function localTime(date: Date, now = new Date()): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${
    pad(date.getDate())
  }`;
  const today = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${
    pad(now.getDate())
  }`;
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return `${day === today ? "" : `${day} `}${clock} (${localOffset(date)})`;
}

/**
 * A span as people say it: `45s`, `12m`, `3h5m`, `2d4h`.
 * @example
 * ```ts
 * import { span } from "./time.ts";
 * span(3_900_000); // "1h5m"
 * ```
 */
export function span(ms: number): string {
  // Self-contained: the status page embeds this very function's source.
  // Each unit rounds to the nearest, so a fresh 1h lease reads "in 1h".
  const seconds = Math.round(Math.abs(ms) / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${minutes % 60 ? `${minutes % 60}m` : ""}`;
  const wholeHours = Math.round(minutes / 60);
  const days = Math.floor(wholeHours / 24);
  return `${days}d${wholeHours % 24 ? `${wholeHours % 24}h` : ""}`;
}

/**
 * `12m ago` or `in 48m`.
 * @example
 * ```ts
 * import { relative } from "./time.ts";
 * relative(new Date(Date.now() - 60_000)); // "1m ago"
 * ```
 */
export function relative(date: Date, now = Date.now()): string {
  const ms = date.getTime() - now;
  return ms < 0 ? `${span(ms)} ago` : `in ${span(ms)}`;
}

/**
 * A time as every message shows it: `14:02 (+01:00), 3m ago`.
 * @example
 * ```ts
 * import { when } from "./time.ts";
 * console.log(when(new Date()));
 * ```
 */
export function when(date: Date, now = Date.now()): string {
  return `${localTime(date, new Date(now))}, ${relative(date, now)}`;
}

/**
 * Why `TZ` can't be used, or `undefined` when it is unset or a time zone.
 * Deno silently shows UTC for an unknown zone.
 * @example
 * ```ts
 * import { timeZoneProblem } from "./time.ts";
 * timeZoneProblem("Mars/Olympus"); // 'TZ "Mars/Olympus" is not a time zone …'
 * timeZoneProblem("Europe/Paris"); // undefined
 * ```
 */
export function timeZoneProblem(tz: string | undefined): string | undefined {
  if (tz === undefined || tz === "") return undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz.replace(/^:/, "") });
    return undefined;
  } catch {
    return `TZ "${tz}" is not a time zone, so times are shown in UTC; set TZ to a name such as Europe/Paris or America/New_York, or unset it`;
  }
}
