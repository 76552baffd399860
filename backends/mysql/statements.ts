/**
 * The mysql backend's statements, for one table, its events table and its
 * holders table (the further holders of a lock with slots or shared holds;
 * the first holder is in the lock's row, as an exclusive lock's one).
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
  /** The row's fence counter once the lock had several holders. */
  top_fence?: string | number;
  /** The server's clock, read with the row lock. */
  now?: Date;
}

/** An event's columns as the history statement returns them. */
export interface EventRow extends SqlEventRow, Row {}

/** A lease's columns, lease id as lowercase hex; `T` is the table alias. */
const LEASE_COLUMNS = `T.resource, LOWER(HEX(T.lease)) AS lease, T.principal,
  T.host, T.reason, T.link, T.fence, T.events, T.created, T.expires,
  T.holder_limit`;
/** The same columns of a holders-table row (no counters there). */
const HOLDER_COLUMNS = `H.resource, LOWER(HEX(H.lease)) AS lease,
  H.principal, H.host, H.reason, H.link, H.fence, 0 AS events, H.created,
  H.expires, H.holder_limit`;

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
  // The fence counter once a lock had several holders (`fence` is then
  // the row's holder's), and 1 exclusive, N slots, 0 shared.
  top_fence: "BIGINT NOT NULL DEFAULT 0",
  holder_limit: "INT NOT NULL DEFAULT 1",
};

/** The statements, for one table; identifiers are quoted once. */
export function statements(table: string, events: string, holders: string) {
  const now = "UTC_TIMESTAMP(3)";
  const eventColumns = `(resource, n, kind, at, lease, principal, host,
    reason, link, fence, created, expires, by_principal, by_host, by_reason,
    holder_limit)`;
  /** Live holders from both tables; `where` filters T and H alike. */
  const both = (where: (a: string) => string) =>
    `SELECT ${LEASE_COLUMNS} FROM ${table} AS T
      WHERE ${where("T")} AND T.expires > ${now}
      UNION ALL
      SELECT ${HOLDER_COLUMNS} FROM ${holders} AS H
      WHERE ${where("H")} AND H.expires > ${now}`;
  return {
    // The row of a resource, locked, with whether its lease is live and
    // whether it ever had one (a free row's expiry is FREE).
    lock: `SELECT ${LEASE_COLUMNS}, T.expires > ${now} AS live,
        T.expires > '${FREE}' AS used, ${now} AS now, T.top_fence
      FROM ${table} AS T WHERE T.resource = ? FOR UPDATE`,
    // The further holders of a resource, live or not, with the row lock
    // held (so they are what other changes committed).
    others: `SELECT ${HOLDER_COLUMNS}, H.expires > ${now} AS live
      FROM ${holders} AS H WHERE H.resource = ? ORDER BY H.fence`,
    // Every live holder of a resource, lowest fence first.
    holders: `${both((a) => `${a}.resource = ?`)} ORDER BY fence`,
    addHolder: `INSERT INTO ${holders} (resource, lease, principal, host,
        reason, link, fence, created, expires, holder_limit)
      VALUES (?, UNHEX(?), ?, ?, ?, ?, ?, ?, DATE_ADD(?, INTERVAL ? SECOND), ?)`,
    dropHolder:
      `DELETE FROM ${holders} WHERE resource = ? AND lease = UNHEX(?)`,
    renewHolder: `UPDATE ${holders}
      SET expires = DATE_ADD(?, INTERVAL ? SECOND), reason = COALESCE(?, reason)
      WHERE resource = ? AND lease = UNHEX(?)`,
    // The row's counters when a holder is added beside its holder.
    count: `UPDATE ${table} SET top_fence = ?, events = ? WHERE resource = ?`,
    // A holder of the holders table as event number `n` of `kind`.
    recordHolder: `INSERT INTO ${events} ${eventColumns}
      SELECT resource, ?, ?, COALESCE(?, ${now}), lease, principal, host,
        reason, link, fence, created, expires, ?, ?, ?, holder_limit
      FROM ${holders} WHERE resource = ? AND lease = UNHEX(?)`,
    // Moves a further holder into the row, whose holder ended; the
    // counter (first parameter) stays above every holder's fence.
    promote: `UPDATE ${table} AS T, ${holders} AS H
      SET T.top_fence = ?, T.lease = H.lease,
        T.principal = H.principal, T.host = H.host, T.reason = H.reason,
        T.link = H.link, T.fence = H.fence, T.created = H.created,
        T.expires = H.expires, T.holder_limit = H.holder_limit
      WHERE T.resource = ? AND H.resource = T.resource
        AND H.lease = UNHEX(?)`,
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
        reason = ?, link = ?, fence = ?, top_fence = ?, events = ?,
        created = ?, expires = DATE_ADD(?, INTERVAL ? SECOND),
        holder_limit = ?
      WHERE resource = ?`,
    // The row as it is now, as an event of `kind` at `at` (or now).
    recordRow: `INSERT INTO ${events} ${eventColumns}
      SELECT resource, events, ?, COALESCE(?, ${now}), lease, principal,
        host, reason, link, fence, created, expires, ?, ?, ?, holder_limit
      FROM ${table} WHERE resource = ?`,
    // The row's lease before a change, as event number `n` of `kind`.
    recordOld: `INSERT INTO ${events} ${eventColumns}
      SELECT resource, ?, ?, COALESCE(?, ${now}), lease, principal, host,
        reason, link, fence, created, expires, ?, ?, ?, holder_limit
      FROM ${table} WHERE resource = ?`,
    // A free row reads as exclusive to the original Stormlock taking it.
    end: `UPDATE ${table}
      SET expires = '${FREE}', holder_limit = 1, events = events + 1
      WHERE resource = ?`,
    events: `UPDATE ${table} SET events = ? WHERE resource = ?`,
    renew: `UPDATE ${table}
      SET expires = DATE_ADD(?, INTERVAL ? SECOND),
        reason = COALESCE(?, reason), events = events + 1
      WHERE resource = ?`,
    live: `${both((a) => `${a}.resource = ?`)} ORDER BY fence LIMIT 1`,
    liveLease: `SELECT ${LEASE_COLUMNS}, ${now} AS now FROM ${table} AS T
      WHERE T.resource = ? AND T.lease = UNHEX(?) AND T.expires > ${now}
      FOR UPDATE`,
    // Holder `lease` of the holders table, live, with the row lock held.
    liveHolder: `SELECT ${HOLDER_COLUMNS}, ${now} AS now FROM ${holders} AS H
      WHERE H.resource = ? AND H.lease = UNHEX(?) AND H.expires > ${now}
      FOR UPDATE`,
    isHeld: `SELECT 1 AS held FROM ${table}
      WHERE resource = ? AND lease = UNHEX(?) AND expires > ${now}
      UNION ALL
      SELECT 1 FROM ${holders}
      WHERE resource = ? AND lease = UNHEX(?) AND expires > ${now}`,
    // Byte order is code point order for UTF-8, so a prefix's names sort
    // between it and its successor.
    list: `${both((a) => `${a}.resource >= ?`)} ORDER BY resource, fence`,
    listBelow: `${
      both((a) => `${a}.resource >= ? AND ${a}.resource < ?`)
    } ORDER BY resource, fence`,
    history: `SELECT resource, kind, at, LOWER(HEX(lease)) AS lease,
        principal, host, reason, link, fence, n AS events, created, expires,
        by_principal, by_host, by_reason, holder_limit
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
        expires   DATETIME(3) NOT NULL,
        top_fence BIGINT      NOT NULL DEFAULT 0,
        holder_limit INT      NOT NULL DEFAULT 1
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
        holder_limit INT         NOT NULL DEFAULT 1,
        PRIMARY KEY (resource, n)
      ) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    // Events recorded before slots: every one was exclusive.
    upgradeEvents: `ALTER TABLE ${events}
      ADD COLUMN holder_limit INT NOT NULL DEFAULT 1`,
    createHolders: `CREATE TABLE IF NOT EXISTS ${holders} (
        resource     VARBINARY(${MAX_NAME_BYTES}) NOT NULL,
        lease        BINARY(16)  NOT NULL,
        principal    TEXT        NOT NULL,
        host         TEXT        NULL,
        reason       TEXT        NULL,
        link         TEXT        NULL,
        fence        BIGINT      NOT NULL,
        created      DATETIME(3) NOT NULL,
        expires      DATETIME(3) NOT NULL,
        holder_limit INT         NOT NULL,
        PRIMARY KEY (resource, lease)
      ) ENGINE = InnoDB DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`,
    columns: `SELECT COLUMN_NAME AS name, DATA_TYPE AS type
      FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?`,
  };
}
