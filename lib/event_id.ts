/**
 * Stable event ids: the same event always gets the same id, whoever reads
 * it, so receivers can drop duplicates.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { LeaseEvent } from "./kit/types.ts";

/**
 * The stable id of an event: the time it names, then a digest of what
 * happened, so ids sort by time and `--since` can take one.
 *
 * @param parts The resource, kind, lease id and times that make it unique.
 * @param atMs The event's time, in epoch ms.
 * @returns `1764777600000-<20 hex digits>`.
 * @example
 * ```ts
 * import { eventId } from "./event_id.ts";
 * eventId(["deploy", "released", "0".repeat(32), 5], 5).startsWith("0000000000005-"); // true
 * ```
 */
export function eventId(parts: (string | number)[], atMs: number): string {
  const digest = createHash("sha256").update(parts.join("\u0000")).digest(
    "hex",
  );
  return `${String(Math.max(0, atMs)).padStart(13, "0")}-${
    digest.slice(0, 20)
  }`;
}

/**
 * The time an event id names, in epoch ms, or `undefined` when `text` is
 * not an event id.
 * @example
 * ```ts
 * import { eventIdTime } from "./event_id.ts";
 * eventIdTime("0000000000005-0123456789abcdef0123"); // 5
 * ```
 */
export function eventIdTime(text: string): number | undefined {
  const match = /^(\d{13})-[0-9a-f]{20}$/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/**
 * The id of a recorded history event. Recorded `expired` events carry the
 * lease's expiry as their time on every store, so a watcher that notices
 * an expiry first names it as the store will.
 * @example
 * ```ts ignore
 * const id = historyEventId(event);
 * ```
 */
export function historyEventId(event: LeaseEvent): string {
  return eventId([
    event.resource,
    event.kind,
    event.id,
    event.at.getTime(),
    event.expires.getTime(),
  ], event.at.getTime());
}
