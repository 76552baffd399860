/**
 * The postgres backend's statements, for one table, its events table and
 * its holders table. Every change is one statement whose CTEs lock the
 * row, write it, record the event and trim history, so a change and its
 * event are atomic on the server; an acquire first locks the row in a
 * transaction of its own (`lock`), so that it reads every holder others
 * committed before it decides.
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
 * `detail_lease` names the lease that host, reason, link, fence and
 * holder_limit were written for, so a lease a 0.1 client took over reads
 * with fence 0, exclusive. `top_fence` is the fence counter once a lock
 * has had several holders (the highest fence given; `fence` is the
 * row's holder's); `holder_limit` is 1 exclusive, N slots, 0 shared.
 */
export const ADDED_COLUMNS = [
  "host text",
  "reason text",
  "link text",
  "fence bigint NOT NULL DEFAULT 0",
  "events bigint NOT NULL DEFAULT 0",
  "detail_lease uuid",
  "top_fence bigint NOT NULL DEFAULT 0",
  "holder_limit integer NOT NULL DEFAULT 1",
];

/** A lease's columns from row alias `a`, its details only if they are its. */
function leaseColumns(a: string): string {
  const own = `${a}.detail_lease = ${a}.lease`;
  return `${a}.resource, ${a}.lease::text AS lease, ${a}.principal,
    CASE WHEN ${own} THEN ${a}.host END AS host,
    CASE WHEN ${own} THEN ${a}.reason END AS reason,
    CASE WHEN ${own} THEN ${a}.link END AS link,
    CASE WHEN ${own} THEN ${a}.fence ELSE 0 END AS fence,
    ${a}.created, ${a}.expires,
    CASE WHEN ${own} THEN ${a}.holder_limit ELSE 1 END AS holder_limit`;
}

/** A further holder's columns from row alias `a` of the holders table. */
function holderColumns(a: string): string {
  return `${a}.resource, ${a}.lease::text AS lease, ${a}.principal,
    ${a}.host, ${a}.reason, ${a}.link, ${a}.fence, ${a}.created,
    ${a}.expires, ${a}.holder_limit`;
}

/** The columns both projections above give, from alias `a`. */
function names(a: string): string {
  return ["resource", "lease", "principal", "host", "reason", "link", "fence"]
    .concat(["created", "expires", "holder_limit"])
    .map((name) => `${a}.${name}`).join(", ");
}

const EVENT_COLUMNS = `(resource, n, kind, at, lease, principal, host, reason,
  link, fence, created, expires, by_principal, by_host, by_reason,
  holder_limit)`;

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

/**
 * The statements, for one table, its events table and its holders table;
 * identifiers are quoted once.
 *
 * A lock's first holder lives in its row, as it always has, so an
 * exclusive lock (and data of 0.1 or the original) looks as before;
 * further holders of a lock with slots or shared holds are rows of the
 * holders table. The row's `top_fence` is the resource's fence counter
 * (its `fence` is the first holder's, which a promoted holder brings), and
 * `events` numbers its events, the holders' included.
 */
export function statements(table: string, events: string, holders: string) {
  const later = (param: string) =>
    `now() + ${param}::integer * interval '1 second'`;
  /**
   * Holder `$2` of `$1` from both tables, `first` when in the row. Both
   * are locked, the row first (as every change does), so that a holder a
   * concurrent change just moved into the row is read where it is now.
   */
  const mine = (live: (a: string) => string) =>
    `main AS (
        SELECT * FROM ${table} WHERE resource = $1::text FOR UPDATE
      ), beside AS (
        SELECT * FROM ${holders} x
        WHERE x.resource = $1::text AND x.lease = $2::uuid AND ${live("x")}
        FOR UPDATE
      ), mine AS (
        SELECT ${leaseColumns("m")}, true AS first FROM main m
        WHERE m.lease = $2::uuid AND ${live("m")}
        UNION ALL
        SELECT ${holderColumns("b")}, false FROM beside b
      )`;
  const alive = (a: string) => `${a}.expires > now()`;
  const allHolders = `SELECT ${leaseColumns("t")} FROM ${table} AS t
      WHERE resource = $1::text AND expires > now()
      UNION ALL
      SELECT ${holderColumns("h")} FROM ${holders} AS h
      WHERE resource = $1::text AND expires > now()
      ORDER BY fence`;
  /** Every live holder under a prefix, from $1 (to below `end`). */
  const listed = (end?: string) => {
    const under = (a: string) =>
      `${a}.resource COLLATE "C" >= $1::text${
        end ? ` AND ${a}.resource COLLATE "C" < ${end}::text` : ""
      } AND ${a}.expires > now()`;
    return `SELECT * FROM (
        SELECT ${leaseColumns("t")} FROM ${table} AS t WHERE ${under("t")}
        UNION ALL
        SELECT ${holderColumns("h")} FROM ${holders} AS h WHERE ${under("h")}
      ) AS u ORDER BY resource COLLATE "C", fence`;
  };
  return {
    // $1 resource. Locks the resource's row for the transaction, making
    // it free (expires '-infinity') when missing, its counters continued
    // from its newest event or holder (a row never used, or deleted by
    // hand or by a 0.1 client). Every acquire runs this first, so what
    // it reads next is what the other acquires committed.
    lock: `
      INSERT INTO ${table} AS t (resource, lease, principal, created,
        expires, fence, top_fence, events)
      SELECT $1::text, '00000000-0000-0000-0000-000000000000'::uuid, '',
        now(), '-infinity', f.fence, f.fence, f.n
      FROM (SELECT GREATEST(
          (SELECT max(fence) FROM ${events} WHERE resource = $1::text),
          (SELECT max(fence) FROM ${holders} WHERE resource = $1::text),
          0) AS fence,
        COALESCE((SELECT max(n) FROM ${events} WHERE resource = $1::text),
          0) AS n) AS f
      ON CONFLICT (resource) DO UPDATE SET events = t.events`,
    // $1 resource: every live holder, lowest fence first.
    holders: allHolders,
    // $1 resource, $2 id, $3 principal, $4 host, $5 reason, $6 link,
    // $7 ttl, $8 history, $9 history_age, $10 the events channel (the
    // count of notified makes the notify run), $11 and $12 the waiters'
    // names' bounds, $13 the limit. Runs after lock, once admits() let
    // the acquire in: unless others wait, drops the expired holders
    // (recording "expired" at their expiry), bumps the fence counter and
    // takes the row when it is free, else adds a holder beside it.
    // Returns the new holder, or the first waiter.
    acquire: `
      WITH old AS (
        SELECT * FROM ${table} WHERE resource = $1::text FOR UPDATE
      ), waiting AS (
        SELECT * FROM ${table}
        WHERE $11::text IS NOT NULL
          AND resource COLLATE "C" > $11::text
          AND resource COLLATE "C" < $12::text AND expires > now()
      ), gone AS (
        DELETE FROM ${holders}
        WHERE resource = $1::text AND expires <= now()
          AND NOT EXISTS (SELECT 1 FROM waiting)
        RETURNING *
      ), base AS (
        SELECT GREATEST(old.fence, old.top_fence) AS fence, old.events AS n,
          old.expires <= now() AS free,
          (old.expires > '-infinity' AND old.expires <= now()
            AND $8::integer > 1) AS lapsed,
          (SELECT count(*) FROM gone) AS pruned
        FROM old
      ), upd AS (
        UPDATE ${table} AS t SET lease = $2::uuid, principal = $3::text,
          host = $4::text, reason = $5::text, link = $6::text,
          fence = base.fence + 1, top_fence = base.fence + 1,
          events = base.n + base.lapsed::integer + base.pruned + 1,
          detail_lease = $2::uuid, created = now(), expires = ${later("$7")},
          holder_limit = $13::integer
        FROM base
        WHERE t.resource = $1::text AND base.free
          AND NOT EXISTS (SELECT 1 FROM waiting)
        RETURNING t.*
      ), bump AS (
        UPDATE ${table} AS t SET top_fence = base.fence + 1,
          events = base.n + base.pruned + 1
        FROM base
        WHERE t.resource = $1::text AND NOT base.free
          AND NOT EXISTS (SELECT 1 FROM waiting)
        RETURNING t.top_fence, t.events
      ), ins AS (
        INSERT INTO ${holders} (resource, lease, principal, host, reason,
          link, fence, created, expires, holder_limit)
        SELECT $1::text, $2::uuid, $3::text, $4::text, $5::text, $6::text,
          bump.top_fence, now(), ${later("$7")}, $13::integer
        FROM bump
        RETURNING *
      ), won AS (
        SELECT ${leaseColumns("upd")}, upd.events FROM upd
        UNION ALL
        SELECT ${holderColumns("ins")}, bump.events FROM ins, bump
      ), lapsed AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT o.resource, base.n + 1, 'expired', o.expires, o.lease::uuid,
          o.principal, o.host, o.reason, o.link, o.fence, o.created,
          o.expires, NULL, NULL, NULL, o.holder_limit
        FROM (SELECT ${leaseColumns("old")} FROM old) o, base
        WHERE base.lapsed AND EXISTS (SELECT 1 FROM won)
      ), pruned AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT g.resource,
          base.n + base.lapsed::integer + row_number() OVER (ORDER BY g.fence),
          'expired', g.expires, g.lease, g.principal, g.host, g.reason,
          g.link, g.fence, g.created, g.expires, NULL, NULL, NULL,
          g.holder_limit
        FROM gone g, base
      ), acquired AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT resource, events, 'acquired', now(), lease::uuid, principal,
          host, reason, link, fence, created, expires, NULL, NULL, NULL,
          holder_limit
        FROM won
      ), ${trim(events, "SELECT events FROM won", "$8", "$9")},
      ${notify("$10", "won")}
      SELECT true AS won, ${names("won")}, 0 AS waiting
      FROM won, (SELECT count(*) FROM notified) AS n
      UNION ALL
      SELECT false, ${leaseColumns("w")}, (SELECT count(*) FROM waiting)
      FROM (SELECT * FROM waiting ORDER BY resource COLLATE "C" LIMIT 1) w`,
    // $1 resource, $2 id, $3 kind, $4-$6 breaker, $7 history, $8 age,
    // $9 the events channel, $10 true to end it only if its TTL has
    // passed (recording it at its expiry), else only if it is live. Ends
    // holder $2 in either table; when it was the row's, the live holder
    // with the lowest fence moves into the row, else the row is free.
    end: `
      WITH ${
      mine((a) =>
        `CASE WHEN $10::boolean
          THEN ${a}.expires <= now() AND ${a}.expires > '-infinity'
          ELSE ${a}.expires > now() END`
      )
    }, dropped AS (
        DELETE FROM ${holders} AS x USING mine
        WHERE NOT mine.first AND x.resource = $1::text AND x.lease = $2::uuid
      ), next AS (
        SELECT x.* FROM ${holders} AS x, mine
        WHERE mine.first AND x.resource = $1::text AND x.expires > now()
        ORDER BY x.fence LIMIT 1
      ), moved AS (
        DELETE FROM ${holders} AS x USING next
        WHERE x.resource = next.resource AND x.lease = next.lease
        RETURNING x.*
      ), ended AS (
        UPDATE ${table} AS t SET events = t.events + 1,
          lease = COALESCE(p.lease, t.lease),
          principal = COALESCE(p.principal, t.principal),
          host = CASE WHEN p.lease IS NULL THEN t.host ELSE p.host END,
          reason = CASE WHEN p.lease IS NULL THEN t.reason ELSE p.reason END,
          link = CASE WHEN p.lease IS NULL THEN t.link ELSE p.link END,
          fence = COALESCE(p.fence, t.fence),
          created = COALESCE(p.created, t.created),
          holder_limit = COALESCE(p.holder_limit, t.holder_limit),
          detail_lease = COALESCE(p.lease, t.detail_lease),
          expires = CASE WHEN p.lease IS NOT NULL THEN p.expires
            WHEN mine.first THEN '-infinity' ELSE t.expires END
        FROM mine LEFT JOIN moved AS p ON mine.first
        WHERE t.resource = $1::text
        RETURNING t.events
      ), recorded AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT mine.resource, ended.events, $3::text,
          CASE WHEN $10::boolean THEN mine.expires ELSE now() END,
          mine.lease::uuid, mine.principal, mine.host, mine.reason,
          mine.link, mine.fence, mine.created, mine.expires, $4::text,
          $5::text, $6::text, mine.holder_limit
        FROM mine, ended
      ), ${trim(events, "SELECT events FROM ended", "$7", "$8")},
      ${notify("$9", "ended")}
      SELECT ${names("mine")}
      FROM mine, ended, (SELECT count(*) FROM notified) AS n`,
    // $1 resource, $2 id, $3 ttl, $4 new reason or null, $5 history,
    // $6 age. Renews holder $2 in either table.
    renew: `
      WITH ${mine(alive)}, extended AS (
        UPDATE ${holders} AS x SET expires = ${later("$3")},
          reason = COALESCE($4::text, x.reason)
        FROM mine
        WHERE NOT mine.first AND x.resource = $1::text AND x.lease = $2::uuid
        RETURNING x.*
      ), upd AS (
        UPDATE ${table} AS t SET events = t.events + 1,
          expires = CASE WHEN mine.first THEN ${later("$3")}
            ELSE t.expires END,
          reason = CASE WHEN mine.first THEN COALESCE($4::text, t.reason)
            ELSE t.reason END
        FROM mine WHERE t.resource = $1::text
        RETURNING t.*
      ), renewed AS (
        SELECT r.*, upd.events,
          CASE WHEN $4::text IS DISTINCT FROM mine.reason
            AND $4::text IS NOT NULL
            THEN 'reason-changed' ELSE 'renewed' END AS kind
        FROM (SELECT ${leaseColumns("upd")} FROM upd, mine WHERE mine.first
          UNION ALL
          SELECT ${holderColumns("extended")} FROM extended) AS r, upd, mine
      ), recorded AS (
        INSERT INTO ${events} ${EVENT_COLUMNS}
        SELECT resource, events, kind, now(), lease::uuid, principal, host,
          reason, link, fence, created, expires, NULL, NULL, NULL,
          holder_limit
        FROM renewed
      ), ${trim(events, "SELECT events FROM renewed", "$5", "$6")}
      SELECT * FROM renewed`,
    current: `${allHolders} LIMIT 1`,
    isHeld: `SELECT 1 FROM ${table}
      WHERE resource = $1::text AND lease = $2::uuid AND expires > now()
      UNION ALL
      SELECT 1 FROM ${holders}
      WHERE resource = $1::text AND lease = $2::uuid AND expires > now()`,
    // Names under a prefix sort between it and its successor in code point
    // order, which the "C" collation of the key follows.
    list: listed(),
    listBelow: listed("$2"),
    // $1 prefix, $2 epoch ms: resources with an event since then.
    recent: `SELECT DISTINCT resource FROM ${events}
      WHERE at >= to_timestamp($2::bigint / 1000.0)
        AND left(resource, char_length($1::text)) = $1::text`,
    history: `SELECT resource, kind, at, lease::text AS lease, principal,
        host, reason, link, fence, created, expires, by_principal, by_host,
        by_reason, holder_limit FROM ${events}
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
        holder_limit integer     NOT NULL DEFAULT 1,
        PRIMARY KEY (resource, n)
      )`,
    upgradeEvents: `ALTER TABLE ${events}
      ADD COLUMN IF NOT EXISTS holder_limit integer NOT NULL DEFAULT 1`,
    createHolders: `CREATE TABLE IF NOT EXISTS ${holders} (
        resource     text COLLATE "C" NOT NULL,
        lease        uuid        NOT NULL,
        principal    text        NOT NULL,
        host         text,
        reason       text,
        link         text,
        fence        bigint      NOT NULL,
        created      timestamptz NOT NULL,
        expires      timestamptz NOT NULL,
        holder_limit integer     NOT NULL,
        PRIMARY KEY (resource, lease)
      )`,
    check: `SELECT resource, lease, principal, host, reason, link, fence,
        events, detail_lease, created, expires, top_fence, holder_limit
      FROM ${table} LIMIT 0`,
    checkEvents: `SELECT resource, n, kind, at, lease, principal, host,
        reason, link, fence, created, expires, by_principal, by_host,
        by_reason, holder_limit FROM ${events} LIMIT 0`,
    checkHolders: `SELECT resource, lease, principal, host, reason, link,
        fence, created, expires, holder_limit FROM ${holders} LIMIT 0`,
  };
}
