/**
 * How leases and events read: local times with their offset and relative
 * times for people, one stable JSON shape for scripts, aligned tables, and
 * the holder message of a refused acquire. Text from other users is
 * escaped everywhere.
 *
 * @module
 */
import { printable, shellQuote, shorten } from "./kit/text.ts";
import type { Lease, LeaseEvent } from "./kit/types.ts";
import { historyEventId } from "./event_id.ts";

/**
 * A time as ISO 8601 in UTC with an explicit `+00:00` offset.
 * @example
 * ```ts
 * import { isoTime } from "./format.ts";
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
 * import { localOffset } from "./format.ts";
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
 * import { localTime } from "./format.ts";
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
 * import { span } from "./format.ts";
 * span(3_900_000); // "1h5m"
 * ```
 */
export function span(ms: number): string {
  const seconds = Math.round(Math.abs(ms) / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours}h${minutes % 60 ? `${minutes % 60}m` : ""}`;
  const days = Math.floor(hours / 24);
  return `${days}d${hours % 24 ? `${hours % 24}h` : ""}`;
}

/**
 * `12m ago` or `in 48m`.
 * @example
 * ```ts
 * import { relative } from "./format.ts";
 * relative(new Date(Date.now() - 60_000)); // "1m ago"
 * ```
 */
export function relative(date: Date, now = Date.now()): string {
  const ms = date.getTime() - now;
  return ms < 0 ? `${span(ms)} ago` : `in ${span(ms)}`;
}

// Characters JSON.stringify leaves raw that a terminal would act on.
const JSON_UNSAFE =
  /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON text in which every control and bidirectional character is a
 * `\uXXXX` escape: the data is unchanged, the terminal is safe.
 * @example
 * ```ts
 * import { safeJson } from "./format.ts";
 * safeJson({ reason: "a\u202eb" }); // '{"reason":"a\\u202eb"}'
 * ```
 */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    JSON_UNSAFE,
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * The JSON shape of a lease, shared by `acquire`, `current`, `list` and
 * `history`.
 * @example
 * ```ts
 * import { leaseJson } from "./format.ts";
 * const now = new Date(0);
 * leaseJson({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now });
 * ```
 */
export function leaseJson(
  lease: Lease & {
    backend?: string;
    waiting?: Lease[];
    request?: Lease | null;
  },
) {
  return {
    ...(lease.backend !== undefined ? { backend: lease.backend } : {}),
    resource: lease.resource,
    id: lease.id,
    principal: lease.principal,
    host: lease.host ?? null,
    reason: lease.reason ?? null,
    link: lease.link ?? null,
    fence: lease.fence,
    created: isoTime(lease.created),
    expires: isoTime(lease.expires),
    ...(lease.waiting !== undefined
      ? { waiting: lease.waiting.map(waiterJson) }
      : {}),
    ...(lease.request !== undefined
      ? { request: lease.request ? requestJson(lease.request) : null }
      : {}),
  };
}

/**
 * The JSON shape of a hand-over request: who asks, from where, why, and
 * since when.
 * @example
 * ```ts
 * import { requestJson } from "./format.ts";
 * const now = new Date(0);
 * requestJson({ resource: "r", id: "0".repeat(32), principal: "bob", reason: "hotfix", fence: 0, created: now, expires: now });
 * ```
 */
export function requestJson(request: Lease) {
  return {
    principal: request.principal,
    host: request.host ?? null,
    reason: request.reason ?? null,
    since: isoTime(request.created),
  };
}

/**
 * The JSON shape of one waiter: who, and since when.
 * @example
 * ```ts
 * import { waiterJson } from "./format.ts";
 * const now = new Date(0);
 * waiterJson({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 0, created: now, expires: now });
 * ```
 */
export function waiterJson(waiter: Lease) {
  return {
    principal: waiter.principal,
    host: waiter.host ?? null,
    since: isoTime(waiter.created),
  };
}

/**
 * The JSON shape of a history event: its stable `event_id`, the lease's
 * fields plus `kind`, `at` and, for a break, `by`.
 * @example
 * ```ts
 * import { eventJson } from "./format.ts";
 * const now = new Date(0);
 * eventJson({ kind: "released", at: now, resource: "r", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now });
 * ```
 */
export function eventJson(event: LeaseEvent) {
  return {
    event_id: historyEventId(event),
    kind: event.kind,
    at: isoTime(event.at),
    ...leaseJson(event),
    by: event.by
      ? {
        principal: event.by.principal,
        host: event.by.host ?? null,
        reason: event.by.reason,
      }
      : null,
  };
}

/**
 * Who holds a lease, with host: `ann@build-1` or `ann (on build-1)`.
 * @example
 * ```ts
 * import { holderText } from "./format.ts";
 * const now = new Date(0);
 * holderText({ resource: "r", id: "0".repeat(32), principal: "ann", host: "h", fence: 1, created: now, expires: now }); // "ann (on h)"
 * ```
 */
export function holderText(lease: Lease): string {
  const who = shorten(lease.principal, 80);
  return lease.host && !lease.principal.endsWith(`@${lease.host}`)
    ? `${who} (on ${shorten(lease.host, 80)})`
    : who;
}

/**
 * The one line a refused acquire prints: holder, host, reason, link, age,
 * time left, fence, and the command to break it if it is stale.
 * @example
 * ```ts
 * import { heldMessage } from "./format.ts";
 * const now = new Date();
 * console.log(heldMessage({ resource: "r", id: "0".repeat(32), principal: "ann", fence: 3, created: now, expires: now }));
 * ```
 */
export function heldMessage(
  lease: Lease,
  now = Date.now(),
  queue: { waiting?: number; queued?: boolean } = {},
): string {
  const waiting = queue.waiting ?? 0;
  if (queue.queued) {
    return `"${
      shorten(lease.resource)
    }" is free, but ${waiting} waiting got there first (the first is ${
      shorten(lease.principal)
    }, since ${localTime(lease.created)}); join the queue with --wait`;
  }
  const onOtherHost = lease.host && !lease.principal.endsWith(`@${lease.host}`);
  const parts = [
    `"${shorten(lease.resource)}" is held by ${shorten(lease.principal)}`,
    ...(lease.reason ? [`for "${shorten(lease.reason)}"`] : []),
    `since ${localTime(lease.created)}, ${relative(lease.created, now)},`,
    `until ${localTime(lease.expires)}, ${relative(lease.expires, now)}`,
  ];
  const tail = [
    ...(onOtherHost ? [`on host ${shorten(lease.host!)}`] : []),
    ...(lease.fence ? [`fence ${lease.fence}`] : []),
    ...(waiting ? [`${waiting} waiting`] : []),
    ...(lease.link ? [`see ${shorten(lease.link)}`] : []),
    `if it is stale: stormlock break ${
      lease.resource.length > 200
        ? "RESOURCE"
        : printable(shellQuote(lease.resource))
    } --reason '…'`,
  ];
  return `${parts.join(" ")}; ${tail.join("; ")}`;
}

/**
 * Rows as an aligned table, header first; cells are escaped and cut.
 * @example
 * ```ts
 * import { table } from "./format.ts";
 * console.log(table(["A", "B"], [["1", "two"]]));
 * ```
 */
export function table(header: string[], rows: string[][]): string {
  const cells = [header, ...rows.map((row) => row.map((c) => shorten(c, 60)))];
  const widths = header.map((_, i) =>
    Math.max(...cells.map((row) => [...row[i]].length))
  );
  return cells.map((row) =>
    row.map((cell, i) =>
      i === row.length - 1
        ? cell
        : cell + " ".repeat(widths[i] - [...cell].length)
    ).join("  ").trimEnd()
  ).join("\n");
}
