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
import { createHash } from "node:crypto";
import type {
  AcquireRequest,
  Ending,
  KitContext,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { LazyConnection } from "../../lib/kit/connection.ts";
import { StormlockError } from "../../lib/kit/errors.ts";
import {
  eventFromRow,
  EVENTS_SUFFIX,
  quoteName,
  recordFromRow,
  type SqlPlace,
} from "../../lib/kit/sql.ts";
import { Subscriber } from "../../lib/kit/subscriber.ts";
import type { Lease, LeaseEvent } from "../../lib/kit/types.ts";
import { type Client, newClient, type Sql } from "./client.ts";
import { classify, PostgresFailure } from "./errors.ts";
import {
  checkTable,
  type Connection,
  connectionUrl,
  DEFAULT_TABLE,
  options,
  parseUrl,
  URL_FORM,
} from "./options.ts";
import {
  ADDED_COLUMNS,
  CORE_COLUMNS,
  type EventRow,
  HASHED_MARK,
  type Row,
  statements,
} from "./statements.ts";

/** The table used when the config names none. */
export { DEFAULT_TABLE };

/** How long close() lets a healthy connection say goodbye. */
const CLOSE_GRACE_SECONDS = 0.5;
/** Acquire runs again when a racing creator of the row won the insert. */
const ACQUIRE_ATTEMPTS = 5;
/** Names at least this long (UTF-8) may be announced by their hash. */
const HASHED_FROM = 2000;

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

/** A channel as one identifier, dots and all. */
function quoteChannel(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`;
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

/** A lock store in one PostgreSQL table. Expiry uses the server's clock. */
class PostgresStore implements Store {
  readonly label: string;
  readonly #target: Connection;
  readonly #place: SqlPlace;
  /** Masked out of every client message. */
  readonly #password: string;
  readonly #keep: number;
  readonly #age: number;
  readonly #context: KitContext;
  readonly #sql: ReturnType<typeof statements>;
  readonly #quoted: string;
  readonly #channel: string;
  readonly #connection = new LazyConnection<Client>({
    open: () => newClient(this.#target),
    close: (client) => void client.sql.end({ timeout: 0 }).catch(() => {}),
  });
  /** LISTENs on the table's channel, for every watch of the store. */
  readonly #subscriber = new Subscriber<Client>({
    open: (onMessage, onClose) =>
      newClient(this.#target, {
        // It idles between notifications; postgres.js would recycle it.
        max_lifetime: null,
        // Not in postgres.js's types, but what its own listen() uses.
        onnotify: (channel: string, payload: string) => {
          if (channel === this.#channel) onMessage(payload);
        },
        // No reconnecting: its watches go quiet, and their waiters poll.
        onclose: () => onClose(),
      }),
    subscribe: (client, channel) =>
      client.sql.unsafe(`LISTEN ${quoteChannel(channel)}`),
    unsubscribe: (client, channel) =>
      client.sql.unsafe(`UNLISTEN ${quoteChannel(channel)}`),
    close: (client, grace) => client.sql.end({ timeout: grace }),
    answered: (error) =>
      error instanceof StormlockError ||
      error instanceof postgres.PostgresError,
    closedError: () =>
      Object.assign(new Error("the connection closed"), {
        code: "CONNECTION_CLOSED",
      }),
  });

  constructor(
    connection: Connection,
    place: SqlPlace & { password: string },
    options: { keep: number; age: number },
    context: KitContext,
  ) {
    this.label = `PostgreSQL at ${place.where}`;
    this.#target = connection;
    const { password, ...shown } = place;
    this.#place = shown;
    this.#password = password;
    this.#keep = options.keep;
    this.#age = options.age;
    this.#context = context;
    this.#quoted = quoteName(place.table, '"');
    this.#channel = eventsChannel(place.table);
    this.#sql = statements(
      this.#quoted,
      quoteName(place.table + EVENTS_SUFFIX, '"'),
    );
  }

  /**
   * Runs one operation's statements. A client that timed out or broke is
   * dropped. (A missing table is the kit's: see createMissing.)
   */
  async #run<T>(op: Operation, body: (sql: Sql) => Promise<T>): Promise<T> {
    const client = await this.#connection.use(op);
    try {
      const result = await body(client.sql);
      client.gate.mayConnect = true;
      return result;
    } catch (error) {
      const answered = error instanceof StormlockError ||
        error instanceof postgres.PostgresError;
      // The server answered, so a later reconnect is no startup loop; any
      // other failure may have left the connection stuck or broken.
      if (answered) client.gate.mayConnect = true;
      else this.#connection.discard(client);
      if (error instanceof StormlockError) throw error;
      throw new PostgresFailure(error, this.#place, this.#password);
    }
  }

  #lease(row: Row): Lease {
    return this.#context.leaseFromRecord(row.resource, recordFromRow(row));
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

  /** Ends the live lease `leaseId` as `ending` says; or throws. */
  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    const { kind, by } = ending;
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
      return rows.map((row) => eventFromRow(this.#lease(row), row));
    });
  }

  /**
   * Listens on the table's channel, on the store's subscriber, which every
   * watch of this store shares; UNLISTENs when the last watch ends.
   */
  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    try {
      await this.#subscriber.watch(
        { topic: this.#channel, keys: payloads(resource) },
        onChange,
        signal,
        op,
      );
    } catch (error) {
      if (error instanceof StormlockError) throw error;
      throw new PostgresFailure(error, this.#place, this.#password);
    }
  }

  async close(): Promise<void> {
    const client = this.#connection.detach();
    // end() waits for the server's goodbye; the timeout caps that wait.
    await Promise.all([
      client?.sql.end({ timeout: CLOSE_GRACE_SECONDS }).catch(() => {}),
      this.#subscriber.close(CLOSE_GRACE_SECONDS),
    ]);
  }
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
  options,
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
        keep: settings.history,
        age: settings.history_age,
      },
      context,
    );
  },
  createMissing: (settings) => settings.create_table,
  classify,
});
