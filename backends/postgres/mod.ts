/**
 * The PostgreSQL backend: one row per resource in a table, expiry on the
 * server's clock (`now()`), and a `<table>_events` table for history.
 * Every change is one statement whose CTEs lock the row, write it, record
 * the event and trim history, so the check-and-set and its event are
 * atomic on the server and cost one round trip.
 *
 * A resource's row is kept when its lease ends (marked free with
 * `expires = '-infinity'`), so the fence counter on it is never reset.
 *
 * Change events: the acquiring, releasing and breaking statements call
 * `pg_notify` on one channel per table (see `eventsChannel`) with the
 * resource as payload, so watchers hear of a change when, and only if, it
 * commits. `watch` LISTENs on one connection of its own per store.
 *
 * @module
 */
import postgres from "postgres";
import net from "node:net";
import { createHash } from "node:crypto";
import type {
  AcquireRequest,
  Classified,
  Ending,
  FailedOperation,
  KitContext,
  LeaseRecord,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { StormlockError, UsageError } from "../../lib/kit/errors.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

/** The table used when the config names none. */
export const DEFAULT_TABLE = "stormlock";
/** The events table's name is the table's with this suffix. */
const EVENTS_SUFFIX = "_events";
/** How long close() lets a healthy connection say goodbye. */
const CLOSE_GRACE_SECONDS = 0.5;
/** Acquire runs again when a racing creator of the row won the insert. */
const ACQUIRE_ATTEMPTS = 5;
/**
 * A notification's payload must be shorter than 8000 bytes: a longer name
 * is announced as this mark and the MD5 of its UTF-8 bytes in hex.
 */
const HASHED_MARK = "md5:";
/** Names at least this long (UTF-8) may be announced by their hash. */
const HASHED_FROM = 2000;

type Sql = postgres.Sql;

/** The columns of a lease as the statements return them. */
interface Row {
  resource: string;
  lease: string;
  principal: string;
  host: string | null;
  reason: string | null;
  link: string | null;
  fence: string | number;
  created: Date;
  expires: Date;
}

interface EventRow extends Row {
  kind: LeaseEventKind;
  at: Date;
  by_principal: string | null;
  by_host: string | null;
  by_reason: string | null;
}

/** The columns Stormlock 0.1 made, with their types; init checks them. */
const CORE_COLUMNS: Record<string, string> = {
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
const ADDED_COLUMNS = [
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
 * and, on one write in 256, past `age` seconds (history() never shows
 * those anyway). Two deletes, so each is one index range or none.
 */
function trim(events: string, last: string, keep: string, age: string) {
  return `trimmed AS (
        DELETE FROM ${events} WHERE resource = $1::text
          AND (${last}) > ${keep}::integer AND n <= (${last}) - ${keep}::integer
      ), aged AS (
        DELETE FROM ${events} WHERE resource = $1::text
          AND (SELECT random()) < 1.0 / 256 AND (${last}) IS NOT NULL
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
function statements(table: string, events: string) {
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

/**
 * The channel a table's changes are announced on: `<table>_events`, as
 * configured (schema included), or the table's name without its schema
 * and with that suffix when that is over PostgreSQL's 63 bytes.
 */
export function eventsChannel(table: string): string {
  const channel = table + EVENTS_SUFFIX;
  return new TextEncoder().encode(channel).length <= 63
    ? channel
    : table.split(".").at(-1) + EVENTS_SUFFIX;
}

/** The payloads a change of `resource` may be announced with. */
function payloads(resource: string): string[] {
  if (new TextEncoder().encode(resource).length < HASHED_FROM) {
    return [resource];
  }
  const hash = createHash("md5").update(resource, "utf8").digest("hex");
  return [resource, HASHED_MARK + hash];
}

/** Quotes `NAME` or `SCHEMA.NAME` as an identifier. */
function quoteName(name: string): string {
  return name.split(".").map((part) => `"${part.replaceAll('"', '""')}"`)
    .join(".");
}

/**
 * The smallest text above every name that starts with `prefix`, in code
 * point order; `undefined` when there is none.
 */
function prefixEnd(prefix: string): string | undefined {
  const points = [...prefix].map((char) => char.codePointAt(0)!);
  while (points.length > 0 && points[points.length - 1] === 0x10ffff) {
    points.pop();
  }
  if (points.length === 0) return undefined;
  let last = points.pop()! + 1;
  if (last === 0xd800) last = 0xe000; // Surrogates are not characters.
  return String.fromCodePoint(...points, last);
}

/** What messages may say of the connection, and what they must not. */
interface Place {
  /** `host:port/database`: never the URL, which may hold a password. */
  where: string;
  /** The table, as configured. */
  table: string;
  /** The config section, e.g. `backend.postgres`. */
  section: string;
}

/**
 * A client failure, with what `classify` needs to name the remedy. Its
 * message has the password masked.
 */
class PostgresFailure extends Error {
  constructor(
    readonly error: unknown,
    readonly place: Place,
    password: string,
  ) {
    const text = String((error as Error)?.message ?? error);
    super(mask(text, password), { cause: error });
    this.name = "PostgresFailure";
  }

  /** The SQLSTATE, or the client's own error code. */
  get code(): string | undefined {
    const code = (this.error as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : undefined;
  }
}

function mask(text: string, password: string): string {
  if (!password) return text;
  return text.replaceAll(password, "***")
    .replaceAll(encodeURIComponent(password), "***");
}

/** What postgres.js passes to a `socket` factory. */
interface SocketOptions {
  host: string[];
  port: number[];
  path?: string | false;
}

/** Whether a client may open a socket: once, then again after a success. */
interface Gate {
  mayConnect: boolean;
}

/**
 * Opens the TCP (or unix) socket for postgres.js. When a server closes the
 * connection during startup, postgres.js reconnects at once, forever;
 * refusing a second socket before any query succeeded ends that loop.
 */
function openSocket(options: SocketOptions, gate: Gate): net.Socket {
  if (!gate.mayConnect) {
    throw Object.assign(
      new Error("the server closed the connection during startup"),
      { code: "STORMLOCK_CLOSED_EARLY" },
    );
  }
  gate.mayConnect = false;
  if (options.path) return net.connect({ path: options.path });
  const [host, port] = [options.host[0], options.port[0]];
  const socket = net.connect({ host, port });
  // postgres.js reads these for TLS's server name and its messages.
  Object.assign(socket, { host, port });
  return socket;
}

/** A postgres.js client and the gate of its socket. */
interface Client {
  sql: Sql;
  gate: Gate;
}

/**
 * The store's listener: a connection of its own that LISTENs while any
 * watch is on, and the watches by the payload that announces their
 * resource. Once its connection drops it is dead: its watches hear
 * nothing more (waiters poll), and the next watch opens a new one.
 */
interface Listener {
  client: Client;
  watches: Map<string, Set<() => void>>;
  /** Watches on, or on their way. */
  count: number;
  /** Settles when the LISTEN is in place; unset while none is wanted. */
  listening?: Promise<unknown>;
  dead: boolean;
}

/** How the store connects, from the options. */
interface Connection {
  url: string;
  path?: string;
  ssl: SslOption;
  timeoutMs: number;
}

/** A lock store in one PostgreSQL table. Expiry uses the server's clock. */
class PostgresStore implements Store {
  readonly label: string;
  readonly #connection: Connection;
  readonly #place: Place;
  /** Masked out of every client message. */
  readonly #password: string;
  readonly #createTable: boolean;
  readonly #keep: number;
  readonly #age: number;
  readonly #context: KitContext;
  readonly #sql: ReturnType<typeof statements>;
  readonly #quoted: string;
  readonly #channel: string;
  #client: Client | undefined;
  #listener: Listener | undefined;

  constructor(
    connection: Connection,
    place: Place & { password: string },
    options: { createTable: boolean; keep: number; age: number },
    context: KitContext,
  ) {
    this.label = `PostgreSQL at ${place.where}`;
    this.#connection = connection;
    const { password, ...shown } = place;
    this.#place = shown;
    this.#password = password;
    this.#createTable = options.createTable;
    this.#keep = options.keep;
    this.#age = options.age;
    this.#context = context;
    this.#quoted = quoteName(place.table);
    this.#channel = eventsChannel(place.table);
    this.#sql = statements(
      this.#quoted,
      quoteName(place.table + EVENTS_SUFFIX),
    );
  }

  #connect(): Client {
    this.#client ??= this.#newClient();
    return this.#client;
  }

  /** A client of one connection, made when first used. */
  #newClient(more: Record<string, unknown> = {}): Client {
    const { url, timeoutMs, ssl, path } = this.#connection;
    // Each client gets its own gate, so a discarded one can't use the next's.
    const gate: Gate = { mayConnect: true };
    const sql = postgres(url, {
      max: 1,
      connect_timeout: timeoutMs / 1000,
      fetch_types: false,
      onnotice: () => {},
      ssl,
      path,
      connection: {
        application_name: "stormlock",
        // The server stops a statement stuck on a row lock by itself.
        statement_timeout: timeoutMs,
      },
      // Not in postgres.js's types, but supported: see openSocket.
      socket: (options: SocketOptions) => openSocket(options, gate),
      ...more,
    } as postgres.Options<Record<string, never>>);
    return { sql, gate };
  }

  /** Ends a client at once, so the next operation starts afresh. */
  #discard(client: Client): void {
    if (this.#client === client) this.#client = undefined;
    client.sql.end({ timeout: 0 }).catch(() => {});
  }

  /**
   * Runs one operation's statements, creating or upgrading the tables on
   * first use when allowed. A client that timed out or broke is dropped.
   */
  async #run<T>(op: Operation, body: (sql: Sql) => Promise<T>): Promise<T> {
    const client = this.#connect();
    const drop = () => this.#discard(client);
    op.signal.addEventListener("abort", drop, { once: true });
    try {
      let result: T;
      try {
        result = await body(client.sql);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (!this.#createTable || (code !== "42P01" && code !== "42703")) {
          throw error;
        }
        await this.#init(client.sql);
        result = await body(client.sql);
      }
      client.gate.mayConnect = true;
      return result;
    } catch (error) {
      const answered = error instanceof StormlockError ||
        error instanceof postgres.PostgresError;
      // The server answered, so a later reconnect is no startup loop; any
      // other failure may have left the connection stuck or broken.
      if (answered) client.gate.mayConnect = true;
      else drop();
      if (error instanceof StormlockError) throw error;
      throw new PostgresFailure(error, this.#place, this.#password);
    } finally {
      op.signal.removeEventListener("abort", drop);
    }
  }

  #lease(row: Row): Lease {
    return this.#context.leaseFromRecord(row.resource, toRecord(row));
  }

  /** Creates or upgrades both tables, one initializer at a time. */
  async #init(sql: Sql): Promise<void> {
    const s = this.#sql;
    await sql.begin(async (tx) => {
      await tx.unsafe("SELECT pg_advisory_xact_lock(hashtext($1::text))", [
        `stormlock init ${this.#quoted}`,
      ]);
      const columns = await tx.unsafe<
        { name: string; type: string; collation: string | null }[]
      >(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
           c.collname AS collation
         FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
         WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0
           AND NOT a.attisdropped`,
        [this.#quoted],
      );
      if (columns.length === 0) {
        await tx.unsafe(s.createTable);
      } else {
        const types = new Map(columns.map((c) => [c.name, c.type]));
        // The original Stormlock's times had no zone; they read in the
        // server's TimeZone, as the original wrote them.
        const zoneless = ["created", "expires"].filter((name) =>
          types.get(name) === "timestamp without time zone"
        );
        const wrong = Object.entries(CORE_COLUMNS).filter(([name, type]) =>
          types.get(name) !== type && !zoneless.includes(name)
        ).map(([name, type]) => `${name} ${type}`);
        if (wrong.length > 0) {
          const { table, section } = this.#place;
          throw new this.#context.errors.ConfigError(
            `Table ${table} in ${this.label} is not a Stormlock table (it lacks ${
              wrong.join(", ")
            }); set table in [${section}] to another name`,
          );
        }
        if (zoneless.length > 0) {
          await tx.unsafe(
            `ALTER TABLE ${this.#quoted} ${
              zoneless.map((name) => `ALTER COLUMN ${name} TYPE timestamptz`)
                .join(", ")
            }`,
          );
        }
        if (ADDED_COLUMNS.some((c) => !types.has(c.split(" ")[0]))) {
          await tx.unsafe(s.upgrade);
        }
        const resource = columns.find((c) => c.name === "resource");
        if (resource?.collation !== "C") await tx.unsafe(s.collate);
      }
      await tx.unsafe(s.createEvents);
      await tx.unsafe(s.check);
      await tx.unsafe(s.checkEvents);
    });
  }

  init(op: Operation): Promise<void> {
    return this.#run(op, (sql) => this.#init(sql));
  }

  acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    const { resource } = request;
    return this.#run(op, async (sql) => {
      for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
        const [row] = await sql.unsafe<
          (Row & { won: boolean; waiting: number | string })[]
        >(
          this.#sql.acquire,
          [
            resource,
            request.id,
            request.principal,
            request.host ?? null,
            request.reason ?? null,
            request.link ?? null,
            request.ttlSeconds,
            this.#keep,
            this.#age,
            this.#channel,
            request.waiters ?? null,
            // Above every name under the prefix, in "C" (byte) order.
            request.waiters ? `${request.waiters}\u{10ffff}` : null,
          ],
          { prepare: true },
        );
        if (row?.won) return this.#lease(row);
        if (row && Number(row.waiting) > 0) {
          // The first waiter's registration, as a lease of this lock.
          throw new this.#context.errors.LockHeldError(
            this.#lease({ ...row, resource }),
            { waiting: Number(row.waiting), queued: true },
          );
        }
        if (row) throw new this.#context.errors.LockHeldError(this.#lease(row));
        // A racing creator inserted the row first: read it afresh.
      }
      throw new this.#context.errors.BackendUnavailableError(
        `Lock "${resource}" in ${this.label} changed hands ${ACQUIRE_ATTEMPTS} times during one acquire; try again`,
      );
    });
  }

  /** Ends the live lease `leaseId`, recording `kind`; or throws. */
  #end(
    resource: string,
    leaseId: string,
    op: Operation,
    kind: "released" | "broken",
    by?: Breaker,
  ): Promise<Lease> {
    return this.#run(op, async (sql) => {
      const [row] = await sql.unsafe<Row[]>(this.#sql.end, [
        resource,
        leaseId,
        kind,
        by?.principal ?? null,
        by?.host ?? null,
        by?.reason ?? null,
        this.#keep,
        this.#age,
        this.#channel,
      ], { prepare: true });
      if (!row) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(row);
    });
  }

  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(resource, leaseId, op, ending.kind, ending.by);
  }

  recentResources(
    prefix: string,
    sinceMs: number,
    op: Operation,
  ): Promise<string[]> {
    return this.#run(op, async (sql) => {
      const rows = await sql.unsafe<{ resource: string }[]>(
        this.#sql.recent,
        [prefix, sinceMs],
        { prepare: true },
      );
      return rows.map((row) => row.resource);
    });
  }

  expire(resource: string, leaseId: string, op: Operation): Promise<boolean> {
    return this.#run(op, async (sql) => {
      const [row] = await sql.unsafe<{ ended: number }[]>(this.#sql.expire, [
        resource,
        leaseId,
        this.#keep,
        this.#age,
        this.#channel,
      ], { prepare: true });
      return Number(row?.ended ?? 0) > 0;
    });
  }

  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    return this.#run(op, async (sql) => {
      const [row] = await sql.unsafe<Row[]>(this.#sql.renew, [
        resource,
        leaseId,
        ttlSeconds,
        change.reason ?? null,
        this.#keep,
        this.#age,
      ], { prepare: true });
      if (!row) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(row);
    });
  }

  current(resource: string, op: Operation): Promise<Lease | null> {
    return this.#run(op, async (sql) => {
      const [row] = await sql.unsafe<Row[]>(this.#sql.current, [resource], {
        prepare: true,
      });
      return row ? this.#lease(row) : null;
    });
  }

  isHeld(resource: string, leaseId: string, op: Operation): Promise<boolean> {
    return this.#run(op, async (sql) => {
      const rows = await sql.unsafe(this.#sql.isHeld, [resource, leaseId], {
        prepare: true,
      });
      return rows.length > 0;
    });
  }

  list(prefix: string, op: Operation): Promise<Lease[]> {
    const end = prefixEnd(prefix);
    return this.#run(op, async (sql) => {
      const rows = await sql.unsafe<Row[]>(
        end === undefined ? this.#sql.list : this.#sql.listBelow,
        end === undefined ? [prefix] : [prefix, end],
        { prepare: true },
      );
      return rows.map((row) => this.#lease(row));
    });
  }

  history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    return this.#run(op, async (sql) => {
      const rows = await sql.unsafe<EventRow[]>(
        this.#sql.history,
        [resource, limit, this.#age],
        { prepare: true },
      );
      return rows.map((row) => {
        const event: LeaseEvent = {
          ...this.#lease(row),
          kind: row.kind,
          at: row.at,
        };
        if (row.by_principal !== null) {
          event.by = {
            principal: row.by_principal,
            reason: row.by_reason ?? "",
            ...(row.by_host !== null ? { host: row.by_host } : {}),
          };
        }
        return event;
      });
    });
  }

  /** The live listener, opening one (connected lazily) when needed. */
  #listen(): Listener {
    const live = this.#listener;
    if (live && !live.dead) return live;
    const listener: Listener = {
      client: undefined!,
      watches: new Map(),
      count: 0,
      dead: false,
    };
    listener.client = this.#newClient({
      // It idles between notifications; postgres.js would recycle it.
      max_lifetime: null,
      // Not in postgres.js's types, but what its own listen() uses.
      onnotify: (channel: string, payload: string) => {
        if (channel !== this.#channel) return;
        for (const watch of listener.watches.get(payload) ?? []) {
          try {
            watch();
          } catch { /* a watcher's failure is its own */ }
        }
      },
      // No reconnecting: its watches go quiet, and their waiters poll.
      onclose: () => this.#dropListener(listener),
    });
    this.#listener = listener;
    return listener;
  }

  /** Ends a listener at once; its watches hear nothing more. */
  #dropListener(listener: Listener | undefined, grace = 0): Promise<void> {
    if (!listener || listener.dead) return Promise.resolve();
    if (this.#listener === listener) this.#listener = undefined;
    listener.dead = true;
    listener.watches.clear();
    return listener.client.sql.end({ timeout: grace }).catch(() => {});
  }

  /**
   * Listens on the table's channel, on the store's listener, which every
   * watch of this store shares; UNLISTENs when the last watch ends. When
   * the deadline passes first, the listener is dropped: its state is
   * unknown.
   */
  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    if (signal.aborted) return;
    const listener = this.#listen();
    const { sql } = listener.client;
    const channel = `"${this.#channel.replaceAll('"', '""')}"`;
    let settled = false;
    op.onExpire(() => {
      if (!settled) this.#dropListener(listener);
    });
    // Its own function, so the same onChange may watch twice.
    const watch = () => onChange();
    const keys = payloads(resource);
    for (const key of keys) {
      const watches = listener.watches.get(key) ?? new Set();
      listener.watches.set(key, watches.add(watch));
    }
    listener.count++;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      for (const key of keys) {
        const watches = listener.watches.get(key);
        watches?.delete(watch);
        if (watches?.size === 0) listener.watches.delete(key);
      }
      if (--listener.count > 0 || listener.dead) return;
      listener.listening = undefined;
      sql.unsafe(`UNLISTEN ${channel}`).catch(() =>
        this.#dropListener(listener)
      );
    };
    signal.addEventListener("abort", leave, { once: true });
    try {
      const listening = listener.listening ??= sql.unsafe(`LISTEN ${channel}`);
      try {
        await listening;
      } catch (error) {
        if (listener.listening === listening) listener.listening = undefined;
        throw error;
      }
      if (listener.dead) {
        // Dropped as it listened: this watch would hear nothing.
        throw Object.assign(new Error("the connection closed"), {
          code: "CONNECTION_CLOSED",
        });
      }
    } catch (error) {
      // A connection that failed is dropped before leaving, which would
      // send UNLISTEN on it.
      if (
        !(error instanceof StormlockError) &&
        !(error instanceof postgres.PostgresError)
      ) {
        this.#dropListener(listener);
      }
      signal.removeEventListener("abort", leave);
      leave();
      if (error instanceof StormlockError) throw error;
      throw new PostgresFailure(error, this.#place, this.#password);
    } finally {
      settled = true;
    }
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    // end() waits for the server's goodbye; the timeout caps that wait.
    await Promise.all([
      client?.sql.end({ timeout: CLOSE_GRACE_SECONDS }).catch(() => {}),
      this.#dropListener(this.#listener, CLOSE_GRACE_SECONDS),
    ]);
  }
}

function toRecord(row: Row): LeaseRecord {
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

type SslOption = boolean | "prefer" | Record<string, unknown>;

const SSL_MODES = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/**
 * Maps libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` URL
 * parameters onto postgres.js's `ssl` option, which knows only sslmode.
 * Each file must be a readable PEM file.
 */
function parseSsl(params: URLSearchParams, context: KitContext): SslOption {
  const mode = params.get("sslmode") ?? "disable";
  if (!SSL_MODES.includes(mode)) {
    throw context.optionError(
      "url",
      `sslmode "${mode}" is not one of ${SSL_MODES.join(", ")}`,
    );
  }
  const read = (key: string) => {
    const path = params.get(key);
    if (path === null || (key === "sslrootcert" && path === "system")) {
      return undefined;
    }
    const file = context.resolvePath(path);
    let pem: string;
    try {
      pem = Deno.readTextFileSync(file);
    } catch (error) {
      throw context.optionError(
        "url",
        `cannot read ${key} file ${file}: ${(error as Error).message}`,
      );
    }
    if (!/-----BEGIN [A-Z0-9 ]+-----/.test(pem)) {
      throw context.optionError(
        "url",
        `${key} file ${file} is not a PEM file (no "-----BEGIN …-----" line)`,
      );
    }
    return pem;
  };
  const ca = read("sslrootcert");
  const files: Record<string, string | undefined> = {
    ca,
    cert: read("sslcert"),
    key: read("sslkey"),
  };
  if ((files.cert === undefined) !== (files.key === undefined)) {
    throw context.optionError(
      "url",
      "set both sslcert and sslkey, or neither",
    );
  }
  for (const key of Object.keys(files)) {
    if (files[key] === undefined) delete files[key];
  }
  if (mode === "disable") return false;
  if (mode === "allow" || mode === "prefer") return "prefer";
  // As in libpq, sslmode=require with a root certificate verifies the CA.
  if (mode === "verify-ca" || (mode === "require" && ca !== undefined)) {
    return { ...files, checkServerIdentity: () => undefined };
  }
  if (mode === "require") return { ...files, rejectUnauthorized: false };
  return { ...files, rejectUnauthorized: true };
}

const URL_FORM = "postgres://USER:PASSWORD@HOST:PORT/DATABASE";

/** Splits the URL into what connects and what messages may show. */
function parseUrl(
  given: URL,
  key: string,
  context: KitContext,
): Omit<Connection, "timeoutMs"> & { where: string; password: string } {
  const url = new URL(given.href);
  let host: string, database: string, password: string;
  try {
    // postgres.js decodes these too, and throws on a stray "%".
    decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
    host = decodeURIComponent(url.hostname) || "localhost";
    database = decodeURIComponent(url.pathname.slice(1));
  } catch {
    throw context.optionError(
      key,
      'has a "%" that starts no %XX escape; write a literal % as %25',
    );
  }
  const ssl = parseSsl(url.searchParams, context);
  for (const param of ["sslmode", "sslrootcert", "sslcert", "sslkey"]) {
    url.searchParams.delete(param);
  }
  const port = url.port || "5432";
  return {
    url: url.href,
    where: `${host}:${port}${database ? `/${database}` : ""}`,
    password,
    ssl,
    // As in libpq, a host that is a folder (percent-encoded) means a unix
    // socket in it; postgres.js would look the folder up in DNS.
    path: host.startsWith("/") ? `${host}/.s.PGSQL.${port}` : undefined,
  };
}

/** libpq's conninfo keys that map onto the URL, and what each becomes. */
const CONNINFO_KEYS = [
  "host",
  "hostaddr",
  "port",
  "dbname",
  "user",
  "password",
  "sslmode",
  "sslrootcert",
  "sslcert",
  "sslkey",
  "application_name",
  "connect_timeout",
];

/** Where libpq (as Debian builds it) looks for the server's socket. */
const DEFAULT_SOCKET_DIR = "/var/run/postgresql";

/**
 * The original's `connection`: a URL, or libpq's `key=value …` conninfo
 * (values may be single-quoted, with `\'` and `\\` inside), as a URL.
 * `connect_timeout` is dropped: `timeout` bounds connecting.
 */
function connectionUrl(text: string, context: KitContext): URL {
  const fail = (why: string) => context.optionError("connection", why);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text.trim())) {
    let url: URL;
    try {
      url = new URL(text.trim());
    } catch {
      throw fail(`not a URL; use ${URL_FORM} or host=… dbname=…`);
    }
    if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
      throw fail(`the scheme is "${url.protocol}"; use postgres://`);
    }
    return url;
  }
  const pairs = new Map<string, string>();
  const pair = /\s*([a-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|([^\s']*))/y;
  let rest = text.trim();
  while (rest !== "") {
    pair.lastIndex = 0;
    const match = pair.exec(rest);
    if (!match) {
      throw fail(
        `cannot read "${
          rest.split(/\s/)[0].replace(/=.*/, "=…")
        }"; write key=value pairs such as host=db dbname=ops, or a URL`,
      );
    }
    const [all, key, quoted, bare] = match;
    if (!CONNINFO_KEYS.includes(key)) {
      throw fail(
        `"${key}" is not a connection key Stormlock reads; use ${
          CONNINFO_KEYS.join(", ")
        }`,
      );
    }
    pairs.set(key, quoted?.replace(/\\(.)/g, "$1") ?? bare);
    rest = rest.slice(all.length).trim();
  }
  const host = pairs.get("hostaddr") || pairs.get("host") ||
    DEFAULT_SOCKET_DIR;
  const url = new URL("postgres://localhost");
  url.hostname = host.startsWith("/") ? encodeURIComponent(host) : host;
  if (host.includes(":") && !host.startsWith("/")) url.hostname = `[${host}]`;
  if (pairs.get("port")) url.port = pairs.get("port")!;
  url.username = encodeURIComponent(pairs.get("user") ?? "");
  url.password = encodeURIComponent(pairs.get("password") ?? "");
  url.pathname = `/${encodeURIComponent(pairs.get("dbname") ?? "")}`;
  for (const key of ["sslmode", "sslrootcert", "sslcert", "sslkey"]) {
    if (pairs.has(key)) url.searchParams.set(key, pairs.get(key)!);
  }
  if (pairs.has("application_name")) {
    url.searchParams.set("application_name", pairs.get("application_name")!);
  }
  return url;
}

/** Checks `table` or `schema.table`; each part is quoted when used. */
function checkTable(table: string, context: KitContext): string {
  const parts = table.split(".");
  const encoder = new TextEncoder();
  // Room for the events table's suffix within PostgreSQL's 63 bytes.
  const most = 63 - EVENTS_SUFFIX.length;
  if (
    parts.length > 2 || table.includes("\0") ||
    parts.some((part) => part === "" || encoder.encode(part).length > 63) ||
    encoder.encode(parts[parts.length - 1]).length > most
  ) {
    throw context.optionError(
      "table",
      `"${table}" is not a table name; use NAME or SCHEMA.NAME, the schema at most 63 bytes and the name at most ${most} (room for its ${EVENTS_SUFFIX} table)`,
    );
  }
  return table;
}

/** What to do about a server error, by SQLSTATE; `undefined` for the default. */
function serverRemedy(
  code: string,
  message: string,
  failure: PostgresFailure,
): Classified | undefined {
  const { table, section } = failure.place;
  const events = `${table}${EVENTS_SUFFIX}`;
  const urlSetting = /parameter/i.test(message);
  switch (code) {
    case "42P01":
      return {
        config:
          `has no table ${table} (${message}); run "stormlock init" or set create_table = true in [${section}]`,
      };
    case "42703":
    case "42P10":
    case "42804":
    case "42883":
      return {
        config:
          `has a table ${table} not shaped like this Stormlock's (${message}); if Stormlock 0.1 made it, run "stormlock init" to upgrade it (or set create_table = true in [${section}]); else set table in [${section}] to another name`,
      };
    case "3F000":
      return { config: `${message}; create the schema of table ${table}` };
    case "3D000":
      return {
        config: `${message}; create it, or fix the url in [${section}]`,
      };
    case "42501":
      return urlSetting
        ? {
          config:
            `${message}; remove that setting from the url in [${section}]`,
        }
        : {
          config:
            `${message}; grant the role SELECT, INSERT, UPDATE and DELETE on ${table} and ${events} (and CREATE on the schema for init)`,
        };
    case "42704":
    case "22023":
    case "55P02":
      if (!urlSetting) return undefined;
      return {
        config:
          `rejected a server setting in the url: ${message}; fix or remove that parameter in the url in [${section}]`,
      };
    case "28P01":
    case "28000":
      return {
        unavailable:
          `refused the login: ${message}; check the user and password in the url in [${section}]`,
      };
    case "57014":
      return "timeout";
    case "54000":
      return new UsageError(
        `The resource name is too long for ${failure.place.where}: its index entry would take more than PostgreSQL's 2704 bytes even compressed (${message}); names of up to 2,684 bytes always fit, so use a shorter one`,
        { cause: failure },
      );
    case "22021":
      return new UsageError(
        `PostgreSQL can't store this text (${message}): resource names and reasons must not contain NUL characters`,
        { cause: failure },
      );
    case "22P02":
      return new UsageError(
        `${message}; check the lease id (the 32 hex digits printed by "stormlock acquire") and the TTL`,
        { cause: failure },
      );
    case "25006":
      return {
        unavailable:
          `is read-only (${message}); point the url in [${section}] at the primary`,
      };
    case "53300":
      return {
        unavailable:
          `has no free connection (${message}); retry, or raise its max_connections`,
      };
  }
  return undefined;
}

/** Turns a postgres.js failure into the remedy users see. */
function classify(error: unknown, failed: FailedOperation): Classified {
  if (!(error instanceof PostgresFailure)) {
    return {
      unavailable: `failed to ${failed.action}: ${
        String((error as Error)?.message ?? error)
      }`,
    };
  }
  const code = error.code ?? "";
  const { message } = error;
  const { section } = error.place;
  if (error.error instanceof postgres.PostgresError) {
    return serverRemedy(code, message, error) ?? {
      unavailable:
        `failed to ${failed.action}: ${message} (SQLSTATE ${code}); fix what the server names, or retry if it was transient`,
    };
  }
  switch (code) {
    case "CONNECT_TIMEOUT":
      return "timeout";
    case "ECONNREFUSED":
      return {
        unavailable:
          `refused the connection; check that the server is up and the url's host and port in [${section}] are right`,
      };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return {
        unavailable:
          `is not a host name that resolves; check the host in the url in [${section}]`,
      };
    case "STORMLOCK_CLOSED_EARLY":
      return {
        unavailable:
          "closed the connection during startup; check that it is a PostgreSQL server and that sslmode in the url matches what it expects",
      };
  }
  if (/CERT|TLS|SSL/.test(code)) {
    return {
      unavailable:
        `failed TLS: ${message}; check sslmode and sslrootcert in the url in [${section}]`,
    };
  }
  return {
    unavailable:
      `failed to ${failed.action}: ${message}; check that the server is up and reachable, then retry`,
  };
}

/**
 * The `postgres` backend: a table on a PostgreSQL server, shared by every
 * host that reaches it. `url` takes libpq's `sslmode`, `sslrootcert`,
 * `sslcert` and `sslkey` parameters; other parameters are server settings
 * for the session. Nothing connects until first use.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend(
 *   { url: "postgres://ann:secret@db:5432/ops", create_table: "true" },
 *   { name: "postgres", section: "backend.postgres" },
 * );
 * ```
 */
export const backend = defineBackend({
  name: "postgres",
  options: {
    url: {
      kind: "url",
      schemes: ["postgres:", "postgresql:"],
      pemParams: ["sslrootcert", "sslcert", "sslkey"],
      pemKeywords: ["system"],
      doc:
        `The server, as ${URL_FORM}; \`sslmode\`, \`sslrootcert\`, \`sslcert\` and \`sslkey\` work as in libpq, and a percent-encoded folder as the host means its unix socket. Required.`,
    },
    connection: {
      kind: "text",
      preferred: "url",
      insteadOf: "url",
      doc:
        "The original Stormlock's name for `url`; also takes libpq's `key=value` form (`host=db dbname=ops user=ann`; no host means the socket in /var/run/postgresql). Set one of them.",
    },
    table: {
      kind: "text",
      default: DEFAULT_TABLE,
      doc:
        "The table, optionally `schema.table`; history goes in `<table>_events`.",
    },
    timeout: {
      kind: "duration",
      default: "3s",
      doc: "Bound on each operation, connecting included.",
    },
    create_table: {
      kind: "boolean",
      default: false,
      doc: "Create or upgrade the tables on first use, as `init` does.",
    },
  },
  capabilities: {
    clock: "server",
    init: true,
    list: true,
    history: true,
    fencing: true,
    events: true,
    queue: true,
  },
  open(settings, context) {
    if (settings.url && settings.connection) {
      throw context.optionError(
        "connection",
        "set url or connection (its old name), not both",
      );
    }
    const key = settings.connection ? "connection" : "url";
    const url = settings.connection
      ? connectionUrl(settings.connection, context)
      : settings.url;
    if (!url) {
      throw context.optionError("url", `required; set it to ${URL_FORM}`);
    }
    const { where, password, ...connection } = parseUrl(url, key, context);
    return new PostgresStore(
      { ...connection, timeoutMs: settings.timeout },
      {
        where,
        password,
        table: checkTable(settings.table, context),
        section: context.section,
      },
      {
        createTable: settings.create_table,
        keep: settings.history,
        age: settings.history_age,
      },
      context,
    );
  },
  classify,
});
