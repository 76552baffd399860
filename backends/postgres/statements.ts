/**
 * The postgres backend's statements, for one table and its events table.
 * Every change is one statement whose CTEs lock the row, write it, record
 * the event and trim history, so the check-and-set and its event are
 * atomic on the server and cost one round trip.
 *
 * @module
 */
import {
  AGE_PRUNE_CHANCE,
  type EventRow as SqlEventRow,
  type LeaseRow,
} from "../../lib/kit/sql.ts";

/**
 * A notification's payload must be shorter than 8000 bytes: a longer name
 * is announced as this mark and the MD5 of its UTF-8 bytes in hex.
 */
export const HASHED_MARK = "md5:";

/** The columns of a lease as the statements return them. */
export interface Row extends LeaseRow {
  resource: string;
}

/** The columns of an event as the history statement returns them. */
export interface EventRow extends SqlEventRow, Row {}

/** The columns Stormlock 0.1 made, with their types; init checks them. */
export const CORE_COLUMNS: Record<string, string> = {
  resource: "text",
  lease: "uuid",
  principal: "text",
  created: "timestamp with time zone",
  expires: "timestamp with time zone",
};
/**
 * Columns added since 0.1. `events` numbers the resource's events;
 * `detail_lease` names the lease that host, reason, link and fence were
 * written for, so a lease a 0.1 client took over reads with fence 0.
 */
export const ADDED_COLUMNS = [
  "host text",
  "reason text",
  "link text",
  "fence bigint NOT NULL DEFAULT 0",
  "events bigint NOT NULL DEFAULT 0",
  "detail_lease uuid",
];

/** A lease's columns from row alias `a`, its details only if they are its. */
function leaseColumns(a: string): string {
  const own = `${a}.detail_lease = ${a}.lease`;
  return `${a}.resource, ${a}.lease::text AS lease, ${a}.principal,
    CASE WHEN ${own} THEN ${a}.host END AS host,
    CASE WHEN ${own} THEN ${a}.reason END AS reason,
    CASE WHEN ${own} THEN ${a}.link END AS link,
    CASE WHEN ${own} THEN ${a}.fence ELSE 0 END AS fence,
    ${a}.created, ${a}.expires`;
}

const EVENT_COLUMNS = `(resource, n, kind, at, lease, principal, host, reason,
  link, fence, created, expires, by_principal, by_host, by_reason)`;

/**
 * Trims a resource's history after events up to number `last` were added:
 * beyond `keep` events (skipped, index and all, while there are fewer),
 * and, now and then (AGE_PRUNE_CHANCE), past `age` seconds (history() never shows
 * those anyway). Two deletes, so each is one index range or none.
 */
function trim(events: string, last: string, keep: string, age: string) {
  return `trimmed AS (
        DELETE FROM ${events} WHERE resource = $1::text
          AND (${last}) > ${keep}::integer AND n <= (${last}) - ${keep}::integer
      ), aged AS (
        DELETE FROM ${events} WHERE resource = $1::text
          AND (SELECT random()) < ${AGE_PRUNE_CHANCE} AND (${last}) IS NOT NULL
          AND at < now() - ${age}::integer * interval '1 second'
      )`;
}

/**
 * Announces a change of resource `$1` on channel `param` to listeners, as
 * the resource itself or, when that is too long a payload, its hash.
 */
function notify(param: string, from: string): string {
  return `notified AS (
        SELECT pg_notify(${param}::text,
          CASE WHEN octet_length($1::text) < 8000 THEN $1::text
            ELSE '${HASHED_MARK}' || md5(convert_to($1::text, 'UTF8')) END)
        FROM ${from}
      )`;
}

/** The statements, for one table; identifiers are quoted once. */
export function statements(table: string, events: string) {
  const later = (param: string) =>
    `now() + ${param}::integer * interval '1 second'`;
  return {
    // $1 resource, $2 id, $3 principal, $4 host, $5 reason, $6 link,
    // $7 ttl, $8 history, $9 history_age, $10 the events channel (the
    // count of notified makes the notify run). Takes the row when it is free
    // or expired (recording "expired" with its expiry time), or inserts
    // it; else returns the holder. The fence and event counters live on
    // the row; a row made afresh (never used, or deleted by hand or by a
    // 0.1 client) continues from its newest event.
    acquire: `
      WITH old AS (
        SELECT * FROM ${table} WHERE resource = $1::text FOR UPDATE
      ), waiting AS (
        SELECT * FROM ${table}
        WHERE $11::text IS NOT NULL
          AND resource COLLATE "C" > $11::text
          AND resource COLLATE "C" < $12::text AND expires > now()
          AND NOT EXISTS (SELECT 1 FROM old WHERE old.expires > now())
      ), base AS (
        SELECT
          COALESCE((SELECT fence FROM old),
            (SELECT max(fence) FROM ${events} WHERE resource = $1::text),
            0) AS fence,
          COALESCE((SELECT events FROM old),
            (SELECT max(n) FROM ${events} WHERE resource = $1::text),
            0) AS n,
          EXISTS (SELECT 1 FROM old WHERE expires > '-infinity'
            AND expires <= now() AND $8::integer > 1) AS lapsed
      ), upd AS (
        UPDATE ${table} AS t SET lease = $2::uuid, principal = $3::text,
          host = $4::text, reason = $5::text, link = $6::text,
          fence = base.fence + 1,
          events = base.n + CASE WHEN base.lapsed THEN 2 ELSE 1 END,
          detail_lease = $2::uuid, created = now(), expires = ${later("$7")}
        FROM old, base
        WHERE t.resource = $1::text AND old.expires <= now()
          AND NOT EXISTS (SELECT 1 FROM waiting)
        RETURNING t.*
      ), ins AS (
        INSERT INTO ${table} (resource, lease, principal, host, reason, link,
          fence, events, detail_lease, created, expires)
        SELECT $1::text, $2::uuid, $3::text, $4::text, $5::text, $6::text,
          base.fence + 1, base.n + 1, $2::uuid, now(), ${later("$7")}
        FROM base WHERE NOT EXISTS (SELECT 1 FROM old)
          AND NOT EXISTS (SELECT 1 FROM waiting)
        ON CONFLICT (resource) DO NOTHING
        RETURNING *
      ), won AS (
        SELECT * FROM upd UNION ALL SELECT * FROM ins
      ), lapsed AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT o.resource, won.events - 1, 'expired', o.expires, o.lease::uuid,
          o.principal, o.host, o.reason, o.link, o.fence, o.created,
          o.expires, NULL, NULL, NULL
        FROM (SELECT ${leaseColumns("old")} FROM old) o, won, base
        WHERE base.lapsed
      ), acquired AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT resource, events, 'acquired', now(), lease, principal, host,
          reason, link, fence, created, expires, NULL, NULL, NULL
        FROM won
      ), ${trim(events, "SELECT events FROM won", "$8", "$9")},
      ${notify("$10", "won")}
      SELECT true AS won, ${leaseColumns("won")}, 0 AS waiting
      FROM won, (SELECT count(*) FROM notified) AS n
      UNION ALL
      SELECT false, ${leaseColumns("old")}, 0 FROM old
      WHERE old.expires > now() AND NOT EXISTS (SELECT 1 FROM won)
      UNION ALL
      SELECT false, ${leaseColumns("w")}, (SELECT count(*) FROM waiting)
      FROM (SELECT * FROM waiting ORDER BY resource COLLATE "C" LIMIT 1) w`,
    // $1 resource, $2 id, $3 kind, $4-$6 breaker, $7 history, $8 age,
    // $9 the events channel.
    end: `
      WITH old AS (
        SELECT * FROM ${table}
        WHERE resource = $1::text AND lease = $2::uuid AND expires > now()
        FOR UPDATE
      ), ended AS (
        UPDATE ${table} AS t
        SET expires = '-infinity', events = t.events + 1
        FROM old WHERE t.resource = old.resource
        RETURNING t.events
      ), recorded AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT o.resource, ended.events, $3::text, now(), o.lease::uuid,
          o.principal, o.host, o.reason, o.link, o.fence, o.created,
          o.expires, $4::text, $5::text, $6::text
        FROM (SELECT ${leaseColumns("old")} FROM old) o, ended
      ), ${trim(events, "SELECT events FROM ended", "$7", "$8")},
      ${notify("$9", "ended")}
      SELECT ${leaseColumns("old")}
      FROM old, (SELECT count(*) FROM notified) AS n`,
    // $1 resource, $2 id, $3 history, $4 age, $5 the events channel.
    // Ends lease $2 only if its TTL has passed, recording "expired" at its
    // expiry; returns how many it ended (0 or 1).
    expire: `
      WITH old AS (
        SELECT * FROM ${table}
        WHERE resource = $1::text AND lease = $2::uuid
          AND expires <= now() AND expires > '-infinity'
        FOR UPDATE
      ), ended AS (
        UPDATE ${table} AS t
        SET expires = '-infinity', events = t.events + 1
        FROM old WHERE t.resource = old.resource
        RETURNING t.events
      ), recorded AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT o.resource, ended.events, 'expired', o.expires, o.lease::uuid,
          o.principal, o.host, o.reason, o.link, o.fence, o.created,
          o.expires, NULL, NULL, NULL
        FROM (SELECT ${leaseColumns("old")} FROM old) o, ended
      ), ${trim(events, "SELECT events FROM ended", "$3", "$4")},
      ${notify("$5", "ended")}
      SELECT count(*)::integer AS ended
      FROM ended, (SELECT count(*) FROM notified) AS n`,
    // $1 resource, $2 id, $3 ttl, $4 new reason or null, $5 history,
    // $6 age.
    renew: `
      WITH old AS (
        SELECT * FROM ${table}
        WHERE resource = $1::text AND lease = $2::uuid AND expires > now()
        FOR UPDATE
      ), upd AS (
        UPDATE ${table} AS t SET expires = ${later("$3")},
          reason = COALESCE($4::text, t.reason), events = t.events + 1
        FROM old WHERE t.resource = old.resource
        RETURNING t.*
      ), renewed AS (
        SELECT ${leaseColumns("upd")}, upd.events,
          CASE WHEN $4::text IS DISTINCT FROM o.reason AND $4::text IS NOT NULL
            THEN 'reason-changed' ELSE 'renewed' END AS kind
        FROM upd, (SELECT ${leaseColumns("old")} FROM old) o
      ), recorded AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT resource, events, kind, now(), lease::uuid, principal, host,
          reason, link, fence, created, expires, NULL, NULL, NULL
        FROM renewed
      ), ${trim(events, "SELECT events FROM renewed", "$5", "$6")}
      SELECT * FROM renewed`,
    current: `SELECT ${leaseColumns("t")} FROM ${table} AS t
      WHERE resource = $1::text AND expires > now()`,
    isHeld: `SELECT 1 FROM ${table}
      WHERE resource = $1::text AND lease = $2::uuid AND expires > now()`,
    // Names under a prefix sort between it and its successor in code point
    // order, which the "C" collation of the key follows.
    list: `SELECT ${leaseColumns("t")} FROM ${table} AS t
      WHERE resource COLLATE "C" >= $1::text AND expires > now()
      ORDER BY resource COLLATE "C"`,
    listBelow: `SELECT ${leaseColumns("t")} FROM ${table} AS t
      WHERE resource COLLATE "C" >= $1::text
        AND resource COLLATE "C" < $2::text AND expires > now()
      ORDER BY resource COLLATE "C"`,
    // $1 prefix, $2 epoch ms: resources with an event since then.
    recent: `SELECT DISTINCT resource FROM ${events}
      WHERE at >= to_timestamp($2::bigint / 1000.0)
        AND left(resource, char_length($1::text)) = $1::text`,
    history: `SELECT resource, kind, at, lease::text AS lease, principal,
        host, reason, link, fence, created, expires, by_principal, by_host,
        by_reason FROM ${events}
      WHERE resource = $1::text
        AND at >= now() - $3::integer * interval '1 second'
      ORDER BY n DESC LIMIT $2::integer`,
    createTable: `CREATE TABLE ${table} (
        resource     text COLLATE "C" PRIMARY KEY,
        lease        uuid        NOT NULL,
        principal    text        NOT NULL,
        created      timestamptz NOT NULL,
        expires      timestamptz NOT NULL,
        ${ADDED_COLUMNS.join(",\n        ")}
      )`,
    upgrade: `ALTER TABLE ${table} ${
      ADDED_COLUMNS.map((column) => `ADD COLUMN IF NOT EXISTS ${column}`)
        .join(", ")
    }`,
    collate: `ALTER TABLE ${table} ALTER COLUMN resource TYPE text COLLATE "C"`,
    createEvents: `CREATE TABLE IF NOT EXISTS ${events} (
        resource     text COLLATE "C" NOT NULL,
        n            bigint      NOT NULL,
        kind         text        NOT NULL,
        at           timestamptz NOT NULL,
        lease        uuid        NOT NULL,
        principal    text        NOT NULL,
        host         text,
        reason       text,
        link         text,
        fence        bigint      NOT NULL,
        created      timestamptz NOT NULL,
        expires      timestamptz NOT NULL,
        by_principal text,
        by_host      text,
        by_reason    text,
        PRIMARY KEY (resource, n)
      )`,
    check: `SELECT resource, lease, principal, host, reason, link, fence,
        events, detail_lease, created, expires FROM ${table} LIMIT 0`,
    checkEvents: `SELECT resource, n, kind, at, lease, principal, host,
        reason, link, fence, created, expires, by_principal, by_host,
        by_reason FROM ${events} LIMIT 0`,
  };
}
