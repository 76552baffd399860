/**
 * The MySQL backend (MySQL 8 and MariaDB 10.5 or later): one row per
 * resource in an InnoDB table, expiry on the server's clock
 * (`UTC_TIMESTAMP(3)`), and a `<table>_events` table for history.
 *
 * Every change is one transaction that locks the resource's row with
 * `SELECT … FOR UPDATE`, writes it and records its event, so check-and-set
 * and history commit together. A resource's row is kept when its lease
 * ends (marked free by an expiry in 1970), so its fence counter is never
 * reset and the row lock always has a row to lock; a resource seen for the
 * first time gets its row from an `INSERT IGNORE` outside the transaction.
 *
 * No `GET_LOCK`: a named lock belongs to one connection and is exclusive
 * only, while a lease must outlive the connection that took it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type {
  AcquireRequest,
  Ending,
  KitContext,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { StormlockError, UsageError } from "../../lib/kit/errors.ts";
import {
  AGE_PRUNE_CHANCE,
  eventFromRow,
  EVENTS_SUFFIX,
  quoteName,
  recordFromRow,
  type SqlPlace,
} from "../../lib/kit/sql.ts";
import type { Lease, LeaseEvent } from "../../lib/kit/types.ts";
import {
  type Connection,
  type ConnectOptions,
  exec,
  plain,
  Pool,
} from "./client.ts";
import { classify, MysqlFailure } from "./errors.ts";
import { checkTable, DEFAULT_TABLE, options, where } from "./options.ts";
import {
  ADDED_COLUMNS,
  CORE_COLUMNS,
  type EventRow,
  MAX_NAME_BYTES,
  type Row,
  statements,
} from "./statements.ts";

/** The table used when the config names none. */
export { DEFAULT_TABLE };

/** Acquire runs again when the row it needed was made meanwhile. */
const ACQUIRE_ATTEMPTS = 5;
/** Runs of a transaction that InnoDB chose as a deadlock's victim. */
const DEADLOCK_ATTEMPTS = 5;

/**
 * A name's UTF-8 bytes, as the key columns hold them.
 * @throws {UsageError} when they don't fit the key.
 */
function nameBytes(resource: string): Buffer {
  const bytes = Buffer.from(resource, "utf8");
  if (bytes.length > MAX_NAME_BYTES) {
    throw new UsageError(
      `The resource name has ${bytes.length} bytes of UTF-8, more than the ${MAX_NAME_BYTES} bytes a MySQL key holds; use a shorter one`,
    );
  }
  return bytes;
}

/** The bytes just above every name that starts with `prefix`, if any. */
function prefixEnd(prefix: Buffer): Buffer | undefined {
  // UTF-8 has no 0xff byte, so the last byte can always go up by one.
  if (prefix.length === 0) return undefined;
  const end = Buffer.from(prefix);
  end[end.length - 1]++;
  return end;
}

function nameOf(value: Uint8Array | string): string {
  return typeof value === "string"
    ? value
    : new TextDecoder().decode(value as Uint8Array);
}

/** A lock store in one MySQL or MariaDB table, on the server's clock. */
class MysqlStore implements Store {
  readonly label: string;
  readonly #pool: Pool;
  readonly #place: SqlPlace;
  readonly #password: string;
  readonly #keep: number;
  readonly #age: number;
  readonly #context: KitContext;
  readonly #sql: ReturnType<typeof statements>;
  /** The table's database (if named) and bare name, for information_schema. */
  readonly #schema: [string | null, string];

  constructor(
    connect: ConnectOptions,
    place: SqlPlace,
    options: { keep: number; age: number },
    context: KitContext,
  ) {
    this.label = `MySQL at ${place.where}`;
    this.#pool = new Pool(connect);
    this.#place = place;
    this.#password = connect.password ?? "";
    this.#keep = options.keep;
    this.#age = options.age;
    this.#context = context;
    const parts = place.table.split(".");
    this.#schema = parts.length === 2 ? [parts[0], parts[1]] : [null, parts[0]];
    this.#sql = statements(
      quoteName(place.table, "`"),
      quoteName(place.table + EVENTS_SUFFIX, "`"),
    );
  }

  /**
   * Runs one operation on a connection of its own. A connection that
   * failed or outlived the deadline is dropped; a healthy one is kept for
   * the next operation. (A missing table is the kit's: see createMissing.)
   */
  async #run<T>(
    op: Operation,
    body: (connection: Connection) => Promise<T>,
  ): Promise<T> {
    await this.#pool.turn(op.signal);
    let connection: Connection | undefined;
    const drop = () => connection && this.#pool.drop(connection);
    op.signal.addEventListener("abort", drop, { once: true });
    try {
      connection = await this.#pool.take();
      if (op.signal.aborted) throw op.signal.reason;
      const result = await body(connection);
      this.#pool.keep(connection, op.signal.aborted);
      return result;
    } catch (error) {
      if (connection) {
        const answered = error instanceof StormlockError ||
          new MysqlFailure(error, this.#place, "").fromServer;
        if (answered) {
          // Leaves no transaction open on a connection kept for later.
          await plain(connection, "ROLLBACK").catch(() => drop());
          this.#pool.keep(connection, op.signal.aborted);
        } else drop();
      }
      if (error instanceof StormlockError) throw error;
      throw new MysqlFailure(error, this.#place, this.#password);
    } finally {
      op.signal.removeEventListener("abort", drop);
      this.#pool.endTurn();
    }
  }

  /**
   * Runs `body` in a transaction, committing what it did. InnoDB ends one
   * side of a deadlock (gap locks of neighbouring history rows can meet),
   * rolling it back; that side runs again, as InnoDB advises.
   */
  async #transaction<T>(
    connection: Connection,
    body: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1;; attempt++) {
      await plain(connection, "START TRANSACTION");
      try {
        const result = await body();
        await plain(connection, "COMMIT");
        return result;
      } catch (error) {
        await plain(connection, "ROLLBACK").catch(() => {});
        const code = (error as { code?: unknown }).code;
        if (code !== "ER_LOCK_DEADLOCK" || attempt >= DEADLOCK_ATTEMPTS) {
          throw error;
        }
      }
    }
  }

  #lease(row: Row, resource = nameOf(row.resource)): Lease {
    return this.#context.leaseFromRecord(resource, recordFromRow(row));
  }

  /** Trims a resource's history after event number `last` was added. */
  async #trim(connection: Connection, key: Buffer, last: number) {
    if (last > this.#keep) {
      await exec(connection, this.#sql.trim, [key, last - this.#keep]);
    }
    // Old events are never shown; deleting them now and then is enough.
    if (Math.random() < AGE_PRUNE_CHANCE) {
      await exec(connection, this.#sql.age, [key, this.#age]);
    }
  }

  /** Creates both tables, or upgrades a table the original made. */
  async #init(connection: Connection): Promise<void> {
    const s = this.#sql;
    // Converting the original's TIMESTAMP columns reads them in UTC.
    await plain(connection, "SET SESSION time_zone = '+00:00'");
    await plain(connection, s.createTable);
    const columns = await exec<{ name: string; type: string }[]>(
      connection,
      s.columns,
      this.#schema,
    );
    const types = new Map(
      columns.map((c) => [String(c.name).toLowerCase(), String(c.type)]),
    );
    const wrong = Object.entries(CORE_COLUMNS).filter(([name, allowed]) =>
      !allowed.includes(types.get(name)?.toLowerCase() ?? "")
    ).map(([name]) => name);
    if (wrong.length > 0) {
      const { table, section } = this.#place;
      throw new this.#context.errors.ConfigError(
        `Table ${table} in ${this.label} is not a Stormlock table (its ${
          wrong.join(", ")
        } column${
          wrong.length > 1 ? "s are" : " is"
        } missing or of another type); set table in [${section}] to another name`,
      );
    }
    const changes: string[] = [];
    if (types.get("resource") !== "varbinary") {
      changes.push(
        `MODIFY resource VARBINARY(${MAX_NAME_BYTES}) NOT NULL`,
      );
    }
    for (const name of ["created", "expires"]) {
      if (types.get(name) !== "datetime") {
        changes.push(`MODIFY ${name} DATETIME(3) NOT NULL`);
      }
    }
    if (types.get("principal") !== "text") {
      changes.push("MODIFY principal TEXT NOT NULL");
    }
    for (const [name, type] of Object.entries(ADDED_COLUMNS)) {
      if (!types.has(name)) changes.push(`ADD COLUMN ${name} ${type}`);
    }
    if (changes.length > 0) {
      await plain(
        connection,
        `ALTER TABLE ${quoteName(this.#place.table, "`")} ${
          changes.join(", ")
        }`,
      );
    }
    await plain(connection, s.createEvents);
  }

  init(op: Operation): Promise<void> {
    return this.#run(op, (connection) => this.#init(connection));
  }

  acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    const { resource } = request;
    const key = nameBytes(resource);
    return this.#run(op, async (connection) => {
      // A held lock is refused on a plain read, so contenders that lose
      // never queue for the row lock the holder's next change needs.
      const [seen] = await exec<Row[]>(connection, this.#sql.live, [key]);
      if (seen) {
        throw new this.#context.errors.LockHeldError(
          this.#lease(seen, resource),
        );
      }
      for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
        const lease = await this.#transaction(connection, async () => {
          const [old] = await exec<Row[]>(connection, this.#sql.lock, [key]);
          if (!old) return undefined;
          if (Number(old.live)) {
            throw new this.#context.errors.LockHeldError(
              this.#lease(old, resource),
            );
          }
          let n = Number(old.events);
          let fence = Number(old.fence);
          if (n === 0) {
            const [counts] = await exec<Row[]>(connection, this.#sql.counts, [
              key,
            ]);
            n = Number(counts.events);
            fence = Math.max(fence, Number(counts.fence));
          }
          if (Number(old.used)) {
            // The lease that lapsed is recorded at its expiry, first.
            n++;
            await exec(connection, this.#sql.recordOld, [
              n,
              "expired",
              old.expires,
              null,
              null,
              null,
              key,
            ]);
          }
          n++;
          await exec(connection, this.#sql.take, [
            request.id,
            request.principal,
            request.host ?? null,
            request.reason ?? null,
            request.link ?? null,
            fence + 1,
            n,
            old.now,
            old.now,
            request.ttlSeconds,
            key,
          ]);
          await exec(connection, this.#sql.recordRow, [
            "acquired",
            null,
            null,
            null,
            null,
            key,
          ]);
          await this.#trim(connection, key, n);
          return this.#lease({
            ...old,
            lease: request.id,
            principal: request.principal,
            host: request.host ?? null,
            reason: request.reason ?? null,
            link: request.link ?? null,
            fence: fence + 1,
            created: old.now!,
            expires: new Date(old.now!.getTime() + request.ttlSeconds * 1000),
          }, resource);
        });
        if (lease) return lease;
        // First use of this resource: make its row, then lock it.
        await exec(connection, this.#sql.makeRow, [key]);
      }
      throw new this.#context.errors.BackendUnavailableError(
        `Lock "${resource}" in ${this.label} was not there to lock ${ACQUIRE_ATTEMPTS} times during one acquire; try again`,
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
    const key = nameBytes(resource);
    return this.#run(
      op,
      (connection) =>
        this.#transaction(connection, async () => {
          const [row] = await exec<Row[]>(connection, this.#sql.liveLease, [
            key,
            leaseId,
          ]);
          if (!row) {
            throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
          }
          const n = Number(row.events) + 1;
          await exec(connection, this.#sql.recordOld, [
            n,
            kind,
            null,
            by?.principal ?? null,
            by?.host ?? null,
            by?.reason ?? null,
            key,
          ]);
          await exec(connection, this.#sql.end, [key]);
          await this.#trim(connection, key, n);
          return this.#lease(row, resource);
        }),
    );
  }

  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const key = nameBytes(resource);
    return this.#run(
      op,
      (connection) =>
        this.#transaction(connection, async () => {
          const [before] = await exec<Row[]>(connection, this.#sql.liveLease, [
            key,
            leaseId,
          ]);
          if (!before) {
            throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
          }
          await exec(connection, this.#sql.renew, [
            before.now,
            ttlSeconds,
            change.reason ?? null,
            key,
          ]);
          const changed = change.reason !== undefined &&
            change.reason !== (before.reason ?? undefined);
          await exec(connection, this.#sql.recordRow, [
            changed ? "reason-changed" : "renewed",
            null,
            null,
            null,
            null,
            key,
          ]);
          const n = Number(before.events) + 1;
          await this.#trim(connection, key, n);
          return this.#lease({
            ...before,
            reason: change.reason ?? before.reason,
            expires: new Date(before.now!.getTime() + ttlSeconds * 1000),
          }, resource);
        }),
    );
  }

  current(resource: string, op: Operation): Promise<Lease | null> {
    return this.#run(op, async (connection) => {
      const [row] = await exec<Row[]>(connection, this.#sql.live, [
        nameBytes(resource),
      ]);
      return row ? this.#lease(row, resource) : null;
    });
  }

  isHeld(resource: string, leaseId: string, op: Operation): Promise<boolean> {
    return this.#run(op, async (connection) => {
      const rows = await exec<unknown[]>(connection, this.#sql.isHeld, [
        nameBytes(resource),
        leaseId,
      ]);
      return rows.length > 0;
    });
  }

  list(prefix: string, op: Operation): Promise<Lease[]> {
    const start = nameBytes(prefix);
    const end = prefixEnd(start);
    return this.#run(op, async (connection) => {
      const rows = end
        ? await exec<Row[]>(connection, this.#sql.listBelow, [start, end])
        : await exec<Row[]>(connection, this.#sql.list, [start]);
      return rows.map((row) => this.#lease(row));
    });
  }

  history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    return this.#run(op, async (connection) => {
      // LIMIT takes a whole number as text: some servers refuse a
      // floating-point parameter there.
      const rows = await exec<EventRow[]>(connection, this.#sql.history, [
        nameBytes(resource),
        this.#age,
        String(Math.max(0, Math.trunc(limit))),
      ]);
      return rows.map((row) => eventFromRow(this.#lease(row, resource), row));
    });
  }

  close(): void {
    this.#pool.close();
  }
}

/**
 * The `mysql` backend: a table on a MySQL or MariaDB server, shared by
 * every host that reaches it. Its options keep the original Stormlock's
 * names, which were MySQL Connector/Python's. Nothing connects until
 * first use.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend(
 *   { host: "db", user: "ops", password: "secret", database: "ops" },
 *   { name: "mysql", section: "backend.mysql" },
 * );
 * ```
 */
export const backend = defineBackend({
  name: "mysql",
  options,
  together: [["ssl_cert", "ssl_key"]],
  capabilities: {
    clock: "server",
    init: true,
    list: true,
    history: true,
    fencing: true,
  },
  label(settings) {
    return `MySQL at ${where(settings)}`;
  },
  open(settings, context) {
    const table = checkTable(settings.table, context);
    if (!settings.database && !table.includes(".")) {
      throw context.optionError(
        "database",
        "required; name the database that holds the table (or write table = DATABASE.NAME)",
      );
    }
    const useTls = settings.tls || settings.ssl_ca !== undefined ||
      settings.ssl_cert !== undefined;
    const ssl = useTls
      ? {
        ...(settings.ssl_ca ? { ca: settings.ssl_ca } : {}),
        ...(settings.ssl_cert
          ? { cert: settings.ssl_cert, key: settings.ssl_key }
          : {}),
        rejectUnauthorized: true,
        ...(settings.ssl_verify_identity
          ? {}
          : { checkServerIdentity: () => undefined }),
      }
      : undefined;
    return new MysqlStore(
      {
        host: settings.host,
        port: settings.port,
        socketPath: settings.unix_socket,
        user: settings.user,
        password: settings.password,
        database: settings.database,
        ssl,
        timeoutMs: settings.timeout,
      },
      { where: where(settings), table, section: context.section },
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
