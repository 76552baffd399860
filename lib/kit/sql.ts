/**
 * What the stores on an SQL server share (postgres and mysql today): the
 * events table's name, quoting of `NAME` or `SCHEMA.NAME`, the codec of a
 * lease row and an event row, history pruning, a driver failure with the
 * password masked out, and the remedies both classifiers give.
 *
 * A store keeps one row per resource (holding its fence counter) and its
 * history in `<table>_events`, one row per event numbered per resource.
 *
 * @example
 * ```ts
 * import { quoteName } from "./sql.ts";
 * console.log(quoteName("ops.locks", '"')); // "ops"."locks"
 * ```
 *
 * @module
 */
import type { Classified, FailedOperation, LeaseRecord } from "./contract.ts";
import type { Lease, LeaseEvent, LeaseEventKind } from "./types.ts";

/** The events table's name is the table's with this suffix. */
export const EVENTS_SUFFIX = "_events";

/**
 * Old events are never shown; a write deletes them with this chance, which
 * is often enough to keep the table small and rare enough to cost nothing.
 */
export const AGE_PRUNE_CHANCE = 1 / 256;

/**
 * Quotes `NAME` or `SCHEMA.NAME` as an identifier, doubling `quote`
 * inside each part: `"` for PostgreSQL, a backtick for MySQL.
 */
export function quoteName(name: string, quote: '"' | "`"): string {
  return name.split(".").map((part) =>
    `${quote}${part.replaceAll(quote, quote + quote)}${quote}`
  ).join(".");
}

/** A lease's columns as an SQL store's statements return them. */
export interface LeaseRow {
  /** The lease id: hex, with or without a uuid's dashes. */
  lease: string;
  principal: string;
  host: string | null;
  reason: string | null;
  link: string | null;
  fence: string | number;
  created: Date;
  expires: Date;
}

/** An event's columns: a lease's, its kind and time, and who broke it. */
export interface EventRow extends LeaseRow {
  kind: LeaseEventKind;
  at: Date;
  by_principal: string | null;
  by_host: string | null;
  by_reason: string | null;
}

/** The record the kit checks, from a lease row. */
export function recordFromRow(row: LeaseRow): LeaseRecord {
  return {
    // uuid columns read back with dashes; lease ids have none.
    id: row.lease.replaceAll("-", ""),
    principal: row.principal,
    host: row.host,
    reason: row.reason,
    link: row.link,
    fence: row.fence,
    created: row.created,
    expires: row.expires,
  };
}

/** The event an event row records, given its lease as the kit read it. */
export function eventFromRow(lease: Lease, row: EventRow): LeaseEvent {
  const event: LeaseEvent = { ...lease, kind: row.kind, at: row.at };
  if (row.by_principal !== null) {
    event.by = {
      principal: row.by_principal,
      reason: row.by_reason ?? "",
      ...(row.by_host !== null ? { host: row.by_host } : {}),
    };
  }
  return event;
}

/** What messages may say of the connection, and what they must not. */
export interface SqlPlace {
  /** `host:port/database`: never a URL, which may hold a password. */
  where: string;
  /** The table, as configured. */
  table: string;
  /** The config section, e.g. `backend.postgres`. */
  section: string;
}

/**
 * A driver's failure, with what a classifier needs to name the remedy. Its
 * message has the password (plain and percent-encoded) masked.
 */
export class SqlFailure extends Error {
  /**
   * @param error What the driver threw.
   * @param place Where it happened, for messages.
   * @param password Masked out of the message.
   */
  constructor(
    readonly error: unknown,
    readonly place: SqlPlace,
    password: string,
  ) {
    const text = String((error as Error)?.message ?? error);
    super(mask(text, password), { cause: error });
    this.name = "SqlFailure";
  }

  /** The server's or the driver's error code, or "". */
  get code(): string {
    const code = (this.error as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : "";
  }
}

function mask(text: string, password: string): string {
  if (!password) return text;
  return text.replaceAll(password, "***")
    .replaceAll(encodeURIComponent(password), "***");
}

/**
 * The remedies every SQL store gives in the same words. `settings` names
 * where the user fixes the host, e.g. `the url` or `host`.
 */
export const sqlRemedies = {
  /** The table is missing: init makes it (the kit, with create_table). */
  noTable(place: SqlPlace, message: string): Classified {
    return {
      missing:
        `has no table ${place.table} (${message}); run "stormlock init" or set create_table = true in [${place.section}]`,
    };
  },
  /** A replica, or a server in read-only mode. */
  readOnly(message: string, setting: string, section: string): Classified {
    return {
      unavailable:
        `is read-only (${message}); point ${setting} in [${section}] at the primary`,
    };
  },
  /** The server's connection limit is reached. */
  noFreeConnection(message: string): Classified {
    return {
      unavailable:
        `has no free connection (${message}); retry, or raise its max_connections`,
    };
  },
  /** A server error with no remedy of its own. */
  otherServerError(
    failed: FailedOperation,
    message: string,
    code: string,
  ): Classified {
    return {
      unavailable:
        `failed to ${failed.action}: ${message} (${code}); fix what the server names, or retry if it was transient`,
    };
  },
  /** A failure that is not the driver's (a bug, or the platform's). */
  notDriver(error: unknown, failed: FailedOperation): Classified {
    return {
      unavailable: `failed to ${failed.action}: ${
        String((error as Error)?.message ?? error)
      }`,
    };
  },
  /** A client-side failure with no remedy of its own. */
  otherClientError(failed: FailedOperation, message: string): Classified {
    return {
      unavailable:
        `failed to ${failed.action}: ${message}; check that the server is up and reachable, then retry`,
    };
  },
};
