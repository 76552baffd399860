/**
 * Notification events: what `watch`, hooks and the dispatcher send. Every
 * event recorded in history, and every event a watcher derives
 * (`expiring`, `waiting`, `requested`), gets a stable id made from what
 * happened, so two watchers, or one watcher resuming, name the same event
 * the same way and a receiver can drop duplicates.
 *
 * @module
 */
import { INTERNAL_MARK } from "../kit/reserved.ts";
import type { Lease, LeaseEvent, LeaseEventKind } from "../kit/types.ts";
import { isoTime, localTime, relative } from "../kit/time.ts";
import { printable, shorten } from "../kit/text.ts";
import { historyEventId } from "./event_id.ts";

export { eventId, eventIdTime, historyEventId } from "./event_id.ts";

/**
 * Every kind of notification event: the five recorded in history (and
 * `reason-changed`), plus the three a watcher derives.
 * @example
 * ```ts
 * import type { NotificationKind } from "./events.ts";
 * const kind: NotificationKind = "expiring";
 * ```
 */
export type NotificationKind =
  | LeaseEventKind
  | "expiring"
  | "waiting"
  | "requested";

/** Every notification kind, in the order the docs list them. */
export const NOTIFICATION_KINDS: readonly NotificationKind[] = [
  "acquired",
  "renewed",
  "reason-changed",
  "released",
  "broken",
  "expired",
  "expiring",
  "waiting",
  "requested",
];

/**
 * Who acted, for `broken` (the breaker), `requested` (who asks) and
 * `waiting` (who joined the queue).
 * @example
 * ```ts
 * import type { Actor } from "./events.ts";
 * const by: Actor = { principal: "bob@ops", reason: "hotfix" };
 * ```
 */
export interface Actor {
  /** Their principal. */
  principal: string;
  /** Their host, when known. */
  host?: string;
  /** What they said. */
  reason?: string;
}

/**
 * One notification: the lease it concerns, what happened, when, and its
 * stable id.
 * @example
 * ```ts ignore
 * const event: Notification = { eventId, kind: "released", at, backend: "sqlite", lease };
 * ```
 */
export interface Notification {
  /** Stable id: the same event always gets the same id. */
  eventId: string;
  /** What happened. */
  kind: NotificationKind;
  /** When it happened (for `expiring`: when it was noticed). */
  at: Date;
  /** The backend, as the config names it. */
  backend: string;
  /** The lease as it was (for `waiting` and `requested`: the holder's). */
  lease: Lease;
  /** Who acted, for `broken`, `requested` and `waiting`. */
  by?: Actor;
}

/**
 * A recorded history event as a notification.
 * @example
 * ```ts ignore
 * const note = fromHistory("sqlite", event);
 * ```
 */
export function fromHistory(backend: string, event: LeaseEvent): Notification {
  const { kind, at, by, ...lease } = event;
  return {
    eventId: historyEventId(event),
    kind,
    at,
    backend,
    lease,
    ...(by ? { by: { ...by } } : {}),
  };
}

/**
 * A notification as JSON: see docs/notifications.md for each field.
 * @example
 * ```ts ignore
 * const json: NotificationJson = notificationJson(event);
 * ```
 */
export interface NotificationJson {
  /** The stable event id. */
  event_id: string;
  /** What happened. */
  kind: NotificationKind;
  /** When, as ISO 8601. */
  at: string;
  /** The backend's config name. */
  backend: string;
  /** The lock. */
  resource: string;
  /** The lease as it was. */
  lease: {
    id: string;
    principal: string;
    host: string | null;
    reason: string | null;
    link: string | null;
    fence: number;
    created: string;
    expires: string;
  };
  /** Who acted, or `null`. */
  by: { principal: string; host: string | null; reason: string | null } | null;
}

/**
 * The JSON shape of a notification, as `watch --json`, `--exec` and
 * hooks send it (documented in docs/notifications.md).
 * @example
 * ```ts ignore
 * console.log(JSON.stringify(notificationJson(event)));
 * ```
 */
export function notificationJson(event: Notification): NotificationJson {
  const { lease } = event;
  return {
    event_id: event.eventId,
    kind: event.kind,
    at: isoTime(event.at),
    backend: event.backend,
    resource: lease.resource,
    lease: {
      id: lease.id,
      principal: lease.principal,
      host: lease.host ?? null,
      reason: lease.reason ?? null,
      link: lease.link ?? null,
      fence: lease.fence,
      created: isoTime(lease.created),
      expires: isoTime(lease.expires),
    },
    by: event.by
      ? {
        principal: event.by.principal,
        host: event.by.host ?? null,
        reason: event.by.reason ?? null,
      }
      : null,
  };
}

/**
 * The prefix of the hand-over requests made of one lease: a request is
 * kept as a short lease on this internal name, so it is recorded (as its
 * `acquired` event) on every store, and lapses with the lease it asks for.
 * @example
 * ```ts
 * import { requestName } from "./events.ts";
 * requestName("deploy", "0".repeat(32)); // "deploy\u001frequest\u001f000…"
 * ```
 */
export function requestName(resource: string, leaseId: string): string {
  return `${resource}${INTERNAL_MARK}request${INTERNAL_MARK}${leaseId}`;
}

/**
 * Splits an internal request name into the resource and the lease asked
 * for, or `undefined` when `name` is not one.
 * @example
 * ```ts
 * import { parseRequestName, requestName } from "./events.ts";
 * parseRequestName(requestName("a", "0".repeat(32)))?.resource; // "a"
 * ```
 */
export function parseRequestName(
  name: string,
): { resource: string; leaseId: string } | undefined {
  const mark = `${INTERNAL_MARK}request${INTERNAL_MARK}`;
  const at = name.lastIndexOf(mark);
  if (at <= 0) return undefined;
  const leaseId = name.slice(at + mark.length);
  if (!/^[0-9a-f]{32}$/.test(leaseId)) return undefined;
  return { resource: name.slice(0, at), leaseId };
}

/**
 * One event as a line for people: local time, kind, resource, holder,
 * and what was said, with text from other users escaped.
 * @example
 * ```ts ignore
 * console.log(notificationLine(event));
 * ```
 */
export function notificationLine(
  event: Notification,
  now: number = Date.now(),
): string {
  const { lease, by } = event;
  const parts = [
    `${localTime(event.at)} ${relative(event.at, now)}`,
    event.kind.padEnd(14),
    JSON.stringify(printable(lease.resource)),
  ];
  const holder = `${printable(lease.principal)}${
    lease.reason ? ` (${printable(shorten(lease.reason, 120))})` : ""
  }`;
  switch (event.kind) {
    case "waiting":
      parts.push(
        `${printable(by?.principal ?? "someone")} waits for ${holder}`,
      );
      break;
    case "requested":
      parts.push(
        `${
          printable(by?.principal ?? "someone")
        } asks ${holder} to hand it over${
          by?.reason ? `: ${printable(shorten(by.reason, 200))}` : ""
        }`,
      );
      break;
    case "broken":
      parts.push(
        `${holder} broken by ${printable(by?.principal ?? "someone")}${
          by?.reason ? `: ${printable(shorten(by.reason, 200))}` : ""
        }`,
      );
      break;
    case "expiring":
      parts.push(`${holder}, expires ${relative(lease.expires, now)}`);
      break;
    default:
      parts.push(holder);
  }
  parts.push(`fence ${lease.fence}`);
  if (lease.link) parts.push(printable(lease.link));
  return parts.join("  ");
}
