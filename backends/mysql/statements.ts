/**
 * The mysql backend's statements, for one table and its events table.
 *
 * @module
 */
import type { EventRow as SqlEventRow, LeaseRow } from "../../lib/kit/sql.ts";

/** The expiry that marks a row free: before any lease could end. */
export const FREE = "1970-01-01 00:00:00.000";
/**
 * The longest resource name, in UTF-8 bytes: InnoDB keys hold at most
 * 3072 bytes, and the events table's key adds an 8-byte number.
 */
export const MAX_NAME_BYTES = 3000;

/** A lease's columns as the statements return them. */
export interface Row extends LeaseRow {
  resource: Uint8Array | string;
  events: string | number;
  live?: number;
  used?: number;
  /** The server's clock, read with the row lock. */
  now?: Date;
}

/** An event's columns as the history statement returns them. */
export interface EventRow extends SqlEventRow, Row {}

/** A lease's columns, lease id as lowercase hex; `T` is the table alias. */
const LEASE_COLUMNS = `T.resource, LOWER(HEX(T.lease)) AS lease, T.principal,
  T.host, T.reason, T.link, T.fence, T.events, T.created, T.expires`;

/** The columns the original Stormlock made; init checks them. */
export const CORE_COLUMNS: Record<string, string[]> = {
  resource: ["varchar", "varbinary", "char", "binary"],
  lease: ["binary"],
  principal: ["varchar", "text", "char"],
  created: ["timestamp", "datetime"],
  expires: ["timestamp", "datetime"],
};

/** Columns the original's table lacks, added by init. */
export const ADDED_COLUMNS: Record<string, string> = {
  host: "TEXT NULL",
  reason: "TEXT NULL",
  link: "TEXT NULL",
  fence: "BIGINT NOT NULL DEFAULT 0",
  events: "BIGINT NOT NULL DEFAULT 0",
};

/** The statements, for one table; identifiers are quoted once. */
export function statements(table: string, events: string) {
  const now = "UTC_TIMESTAMP(3)";
  const eventColumns = `(resource, n, kind, at, lease, principal, host,
    reason, link, fence, created, expires, by_principal, by_host, by_reason)`;
  return {
    // The row of a resource, locked, with whether its lease is live and
    // whether it ever had one (a free row's expiry is FREE).
    lock: `SELECT ${LEASE_COLUMNS}, T.expires > ${now} AS live,
        T.expires > '${FREE}' AS used, ${now} AS now
      FROM ${table} AS T WHERE T.resource = ? FOR UPDATE`,
    // A free row for a new resource, with no counts yet. Not INSERT
    // IGNORE, which would turn errors (a name too long) into warnings.
    makeRow: `INSERT INTO ${table}
        (resource, lease, principal, fence, events, created, expires)
      VALUES (?, UNHEX(REPEAT('0', 32)), '', 0, 0, '${FREE}', '${FREE}')
      ON DUPLICATE KEY UPDATE resource = resource`,
    // The counts of a row with none: they continue from history, in case
    // the row was deleted (by hand, or by the original Stormlock). A plain
    // read: the row lock already keeps other writers of them out.
    counts: `SELECT COALESCE(MAX(fence), 0) AS fence,
        COALESCE(MAX(n), 0) AS events
      FROM ${events} WHERE resource = ?`,
    // Times are from the server's clock, as the row lock read it.
    take: `UPDATE ${table} SET lease = UNHEX(?), principal = ?, host = ?,
        reason = ?, link = ?, fence = ?, events = ?,
        created = ?, expires = DATE_ADD(?, INTERVAL ? SECOND)
      WHERE resource = ?`,
    // The row as it is now, as an event of `kind` at `at` (or now).
    recordRow: `INSERT INTO ${events} ${eventColumns}
      SELECT resource, events, ?, COALESCE(?, ${now}), lease, principal,
        host, reason, link, fence, created, expires, ?, ?, ?
      FROM ${table} WHERE resource = ?`,
    // The row's lease before a change, as event number `n` of `kind`.
    recordOld: `INSERT INTO ${events} ${eventColumns}
      SELECT resource, ?, ?, COALESCE(?, ${now}), lease, principal, host,
        reason, link, fence, created, expires, ?, ?, ?
      FROM ${table} WHERE resource = ?`,
    end: `UPDATE ${table} SET expires = '${FREE}', events = events + 1
      WHERE resource = ?`,
    renew: `UPDATE ${table}
      SET expires = DATE_ADD(?, INTERVAL ? SECOND),
        reason = COALESCE(?, reason), events = events + 1
      WHERE resource = ?`,
    live: `SELECT ${LEASE_COLUMNS} FROM ${table} AS T
      WHERE T.resource = ? AND T.expires > ${now}`,
    liveLease: `SELECT ${LEASE_COLUMNS}, ${now} AS now FROM ${table} AS T
      WHERE T.resource = ? AND T.lease = UNHEX(?) AND T.expires > ${now}
      FOR UPDATE`,
    isHeld: `SELECT 1 AS held FROM ${table}
      WHERE resource = ? AND lease = UNHEX(?) AND expires > ${now}`,
    // Byte order is code point order for UTF-8, so a prefix's names sort
    // between it and its successor.
    list: `SELECT ${LEASE_COLUMNS} FROM ${table} AS T
      WHERE T.resource >= ? AND T.expires > ${now} ORDER BY T.resource`,
    listBelow: `SELECT ${LEASE_COLUMNS} FROM ${table} AS T
      WHERE T.resource >= ? AND T.resource < ? AND T.expires > ${now}
      ORDER BY T.resource`,
    history: `SELECT resource, kind, at, LOWER(HEX(lease)) AS lease,
        principal, host, reason, link, fence, n AS events, created, expires,
        by_principal, by_host, by_reason
      FROM ${events}
      WHERE resource = ? AND at >= DATE_SUB(${now}, INTERVAL ? SECOND)
      ORDER BY n DESC LIMIT ?`,
    trim: `DELETE FROM ${events} WHERE resource = ? AND n <= ?`,
    age: `DELETE FROM ${events}
      WHERE resource = ? AND at < DATE_SUB(${now}, INTERVAL ? SECOND)`,
    createTable: `CREATE TABLE IF NOT EXISTS ${table} (
        resource  VARBINARY(${MAX_NAME_BYTES}) NOT NULL PRIMARY KEY,
        lease     BINARY(16)  NOT NULL,
        principal TEXT        NOT NULL,
        host      TEXT        NULL,
        reason    TEXT        NULL,
        link      TEXT        NULL,
        fence     BIGINT      NOT NULL DEFAULT 0,
        events    BIGINT      NOT NULL DEFAULT 0,
        created   DATETIME(3) NOT NULL,
        expires   DATETIME(3) NOT NULL
      ) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    createEvents: `CREATE TABLE IF NOT EXISTS ${events} (
        resource     VARBINARY(${MAX_NAME_BYTES}) NOT NULL,
        n            BIGINT      NOT NULL,
        kind         VARCHAR(16) NOT NULL,
        at           DATETIME(3) NOT NULL,
        lease        BINARY(16)  NOT NULL,
        principal    TEXT        NOT NULL,
        host         TEXT        NULL,
        reason       TEXT        NULL,
        link         TEXT        NULL,
        fence        BIGINT      NOT NULL,
        created      DATETIME(3) NOT NULL,
        expires      DATETIME(3) NOT NULL,
        by_principal TEXT        NULL,
        by_host      TEXT        NULL,
        by_reason    TEXT        NULL,
        PRIMARY KEY (resource, n)
      ) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    columns: `SELECT COLUMN_NAME AS name, DATA_TYPE AS type
      FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`,
  };
}
