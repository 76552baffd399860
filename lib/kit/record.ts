/**
 * The record codec: how a lease a store read becomes a {@linkcode Lease},
 * checked field by field the same way on every backend, so a record
 * Stormlock did not write is refused alike everywhere.
 *
 * @module
 */
import { isLeaseId } from "./lease.ts";
import type { LeaseRecord } from "./contract.ts";
import type { Lease, LeaseEventKind } from "./types.ts";

/**
 * The kinds of event a history may hold, declared once: the frame checks
 * what a store returns against it, and a store checks what it reads.
 * @example
 * ```ts
 * import { EVENT_KINDS } from "./record.ts";
 * EVENT_KINDS.includes("broken"); // true
 * ```
 */
export const EVENT_KINDS: readonly LeaseEventKind[] = [
  "acquired",
  "renewed",
  "released",
  "reason-changed",
  "expired",
  "broken",
];

/**
 * Whether `value` is one of the {@linkcode EVENT_KINDS}.
 * @example
 * ```ts
 * import { isEventKind } from "./record.ts";
 * isEventKind("renewed"); // true
 * isEventKind("stolen"); // false
 * ```
 */
export function isEventKind(value: unknown): value is LeaseEventKind {
  return (EVENT_KINDS as readonly unknown[]).includes(value);
}

/** A record a store read was not written by Stormlock. */
export class ForeignRecordError extends Error {
  constructor(readonly resource: string, readonly field: string) {
    super(`not a Stormlock lease (bad ${field})`);
  }
}

/** Epoch ms from a record's time field, or `undefined`. */
export function toTime(value: unknown): Date | undefined {
  let time: Date | undefined;
  if (value instanceof Date) time = value;
  else if (typeof value === "number") time = new Date(value);
  else if (typeof value === "bigint") time = new Date(Number(value));
  else if (typeof value === "string" && /^\d{1,16}$/.test(value)) {
    time = new Date(Number(value));
  } else if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) {
    time = new Date(value);
  }
  return time && !Number.isNaN(time.getTime()) ? time : undefined;
}

/** An optional text field: absent stays absent; non-text is foreign. */
function optionalText(
  value: unknown,
  resource: string,
  field: string,
): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new ForeignRecordError(resource, field);
  return value;
}

/**
 * Makes a lease of a record a store read, checking every field the same
 * way on every backend.
 *
 * @throws {Error} a kit-internal error the frame turns into a
 * {@linkcode ConfigError} naming the store and section.
 * @example
 * ```ts
 * import { leaseFromRecord } from "./record.ts";
 * const lease = leaseFromRecord("deploy", {
 *   id: "0".repeat(32), principal: "ann@host", created: 1, expires: "2",
 * });
 * console.log(lease.fence); // 0
 * ```
 */
export function leaseFromRecord(resource: string, record: LeaseRecord): Lease {
  if (typeof record !== "object" || record === null) {
    throw new ForeignRecordError(resource, "record");
  }
  const { id, principal } = record;
  if (typeof id !== "string" || !isLeaseId(id)) {
    throw new ForeignRecordError(resource, "id");
  }
  if (typeof principal !== "string") {
    throw new ForeignRecordError(resource, "principal");
  }
  const created = toTime(record.created);
  if (!created) throw new ForeignRecordError(resource, "created");
  const expires = toTime(record.expires);
  if (!expires) throw new ForeignRecordError(resource, "expires");
  let fence = 0;
  if (record.fence !== undefined && record.fence !== null) {
    fence = typeof record.fence === "string" && /^\d{1,16}$/.test(record.fence)
      ? Number(record.fence)
      : typeof record.fence === "bigint"
      ? Number(record.fence)
      : record.fence as number;
    if (!Number.isSafeInteger(fence) || fence < 0) {
      throw new ForeignRecordError(resource, "fence");
    }
  }
  const lease: Lease = { resource, id, principal, fence, created, expires };
  const host = optionalText(record.host, resource, "host");
  const reason = optionalText(record.reason, resource, "reason");
  const link = optionalText(record.link, resource, "link");
  if (host !== undefined) lease.host = host;
  if (reason !== undefined) lease.reason = reason;
  if (link !== undefined) lease.link = link;
  return lease;
}

/** Checks a value a store returned as a lease of `resource`. */
export function checkLease(value: unknown, resource: string): Lease {
  const lease = leaseFromRecord(resource, value as LeaseRecord);
  if ((value as Lease).resource !== resource) {
    throw new ForeignRecordError(resource, "resource");
  }
  return lease;
}
