/**
 * Checks on what a store returns. A built-in store makes every lease with
 * `context.leaseFromRecord`, so its leases pass as they are; what a plugin
 * store returns is checked field by field, and a wrong shape is named as
 * the plugin's fault.
 *
 * @module
 */
import { BackendUnavailableError, type StormlockError } from "./errors.ts";
import {
  checkLease,
  ForeignRecordError,
  isEventKind,
  toTime,
} from "./record.ts";
import { describe } from "./failure.ts";
import { INTERNAL_MARK, isBookkeeping } from "./reserved.ts";
import type { Lease, LeaseEvent } from "./types.ts";

/**
 * Whose answer is checked: the backend's name and label, the plugin (for
 * plugins), and how a failure becomes the frame's error.
 */
export interface Answerer {
  /** The backend's configured name. */
  name: string;
  /** How messages name the store. */
  label: string;
  /** Set for a plugin: how messages name it. */
  plugin?: string;
  /** Translates a failure the way the frame does. */
  fail(error: unknown, action: string, resource?: string): StormlockError;
}

/**
 * `value` as a lease of `resource`, or the frame's error: a foreign record
 * for a built-in store, the plugin's fault for a plugin.
 * @example
 * ```ts ignore
 * const lease = checkedLease(value, "deploy", "acquire", who);
 * ```
 */
export function checkedLease(
  value: unknown,
  resource: string,
  action: string,
  who: Answerer,
): Lease {
  // Built-in stores make every lease with context.leaseFromRecord.
  if (!who.plugin && (value as Lease)?.resource === resource) {
    return value as Lease;
  }
  try {
    return checkLease(value, resource);
  } catch (error) {
    if (!who.plugin) throw who.fail(error, action, resource);
    throw new BackendUnavailableError(
      `Backend "${who.name}" (${who.plugin}) returned ${
        describe(value)
      } from ${action}, not a lease of "${resource}"; fix the plugin`,
    );
  }
}

/**
 * `value` as an array, or a clear error naming the store.
 * @example
 * ```ts ignore
 * const leases = checkedArray(value, "list", who);
 * ```
 */
export function checkedArray(
  value: unknown,
  action: string,
  who: Answerer,
): unknown[] {
  if (Array.isArray(value)) return value;
  throw new BackendUnavailableError(
    `${who.label} returned ${describe(value)} from ${action}, not a list${
      who.plugin ? "; fix the plugin" : ""
    }`,
  );
}

/**
 * `value` as an event of `resource`'s history, or the frame's error.
 * @example
 * ```ts ignore
 * const event = checkedEvent(value, "deploy", who);
 * ```
 */
export function checkedEvent(
  value: unknown,
  resource: string,
  who: Answerer,
): LeaseEvent {
  const event = value as LeaseEvent;
  const at = toTime(event?.at);
  if (!isEventKind(event?.kind) || !at) {
    throw who.fail(
      new ForeignRecordError(resource, "event"),
      "read history",
      resource,
    );
  }
  const checked: LeaseEvent = {
    ...checkedLease(event, resource, "history", who),
    kind: event.kind,
    at,
  };
  if (event.by) checked.by = event.by;
  return checked;
}

/**
 * What `list` returned, as the live leases under `prefix` in name order;
 * Stormlock's bookkeeping is left out unless `internal` or the prefix
 * names it.
 * @example
 * ```ts ignore
 * const leases = checkedList(value, "deploy-", false, who);
 * ```
 */
export function checkedList(
  value: unknown,
  prefix: string,
  internal: boolean,
  who: Answerer,
): Lease[] {
  const now = Date.now();
  return checkedArray(value, "list", who)
    .map((lease) => {
      const resource = (lease as Lease)?.resource;
      return checkedLease(
        lease,
        typeof resource === "string" ? resource : "",
        "list",
        who,
      );
    })
    .filter((lease) =>
      lease.resource.startsWith(prefix) && lease.expires.getTime() > now &&
      (internal || prefix.includes(INTERNAL_MARK) ||
        !isBookkeeping(lease.resource))
    )
    .sort((a, b) =>
      a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0
    );
}
