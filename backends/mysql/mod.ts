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
import mysql from "mysql2";
import type { Connection, ExecuteValues } from "mysql2";
import { Buffer } from "node:buffer";
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

/** The table used when the config names none (the original's too). */
export const DEFAULT_TABLE = "stormlock";
/** The events table's name is the table's with this suffix. */
const EVENTS_SUFFIX = "_events";
/** The expiry that marks a row free: before any lease could end. */
const FREE = "1970-01-01 00:00:00.000";
/** Acquire runs again when the row it needed was made meanwhile. */
const ACQUIRE_ATTEMPTS = 5;
/**
 * The longest resource name, in UTF-8 bytes: InnoDB keys hold at most
 * 3072 bytes, and the events table's key adds an 8-byte number.
 */
const MAX_NAME_BYTES = 3000;
/** Runs of a transaction that InnoDB chose as a deadlock's victim. */
const DEADLOCK_ATTEMPTS = 5;
/** Idle connections a store keeps for its next operations. */
const IDLE_CONNECTIONS = 4;
/**
 * Connections a store uses at once; more operations wait their turn, so a
 * burst of calls can't use up the server's `max_connections`.
 */
const MAX_CONNECTIONS = 8;

/** A lease's columns as the statements return them. */
interface Row {
  resource: Uint8Array | string;
  lease: string;
  principal: string;
  host: string | null;
  reason: string | null;
  link: string | null;
  fence: string | number;
  events: string | number;
  created: Date;
  expires: Date;
  live?: number;
  used?: number;
  /** The server's clock, read with the row lock. */
  now?: Date;
}

interface EventRow extends Row {
  kind: LeaseEventKind;
  at: Date;
  by_principal: string | null;
  by_host: string | null;
  by_reason: string | null;
}

/** A lease's columns, lease id as lowercase hex; `T` is the table alias. */
const LEASE_COLUMNS = `T.resource, LOWER(HEX(T.lease)) AS lease, T.principal,
  T.host, T.reason, T.link, T.fence, T.events, T.created, T.expires`;

/** The columns the original Stormlock made; init checks them. */
const CORE_COLUMNS: Record<string, string[]> = {
  resource: ["varchar", "varbinary", "char", "binary"],
  lease: ["binary"],
  principal: ["varchar", "text", "char"],
  created: ["timestamp", "datetime"],
  expires: ["timestamp", "datetime"],
};

/** Columns the original's table lacks, added by init. */
const ADDED_COLUMNS: Record<string, string> = {
  host: "TEXT NULL",
  reason: "TEXT NULL",
  link: "TEXT NULL",
  fence: "BIGINT NOT NULL DEFAULT 0",
  events: "BIGINT NOT NULL DEFAULT 0",
};

/** The statements, for one table; identifiers are quoted once. */
function statements(table: string, events: string) {
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

/** Quotes `NAME` or `DATABASE.NAME` as an identifier. */
function quoteName(name: string): string {
  return name.split(".").map((part) => `\`${part.replaceAll("`", "``")}\``)
    .join(".");
}

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

function toRecord(row: Row): LeaseRecord {
  return {
    id: row.lease,
    principal: row.principal,
    host: row.host,
    reason: row.reason,
    link: row.link,
    fence: row.fence,
    created: row.created,
    expires: row.expires,
  };
}

/** What messages may say of the connection, and what they must not. */
interface Place {
  /** `host:port/database`, never the password. */
  where: string;
  /** The table, as configured. */
  table: string;
  /** The config section, e.g. `backend.mysql`. */
  section: string;
}

/** A client failure, with the password masked out of its message. */
class MysqlFailure extends Error {
  constructor(readonly error: unknown, readonly place: Place, secret: string) {
    const text = String((error as Error)?.message ?? error);
    super(secret ? text.replaceAll(secret, "***") : text, { cause: error });
    this.name = "MysqlFailure";
  }

  /** The client's error code: `ER_…` from the server, or a socket's. */
  get code(): string {
    const code = (this.error as { code?: unknown } | null)?.code;
    return typeof code === "string" ? code : "";
  }

  /** Whether the server answered (an `ER_…` error with a SQLSTATE). */
  get fromServer(): boolean {
    return typeof (this.error as { sqlState?: unknown })?.sqlState ===
        "string" && this.code.startsWith("ER_");
  }
}

/** How the store connects, from the options. */
interface ConnectOptions {
  host: string;
  port: number;
  socketPath?: string;
  user?: string;
  password?: string;
  database?: string;
  ssl?: Record<string, unknown>;
  timeoutMs: number;
}

/** Runs one statement on a connection, with its parameters. */
function exec<T>(
  connection: Connection,
  sql: string,
  params: unknown[] = [],
): Promise<T> {
  return new Promise((resolve, reject) => {
    connection.execute(sql, params as ExecuteValues, (error, rows) => {
      if (error) reject(error);
      else resolve(rows as T);
    });
  });
}

/** Runs a statement that takes no parameters (DDL, transactions). */
function plain<T>(connection: Connection, sql: string): Promise<T> {
  return new Promise((resolve, reject) => {
    connection.query(sql, (error, rows) => {
      if (error) reject(error);
      else resolve(rows as T);
    });
  });
}

/** A lock store in one MySQL or MariaDB table, on the server's clock. */
class MysqlStore implements Store {
  readonly label: string;
  readonly #connect: ConnectOptions;
  readonly #place: Place;
  readonly #password: string;
  readonly #createTable: boolean;
  readonly #keep: number;
  readonly #age: number;
  readonly #context: KitContext;
  readonly #sql: ReturnType<typeof statements>;
  /** The table's database (if named) and bare name, for information_schema. */
  readonly #schema: [string | null, string];
  readonly #idle: Connection[] = [];
  readonly #busy = new Set<Connection>();
  /** Free turns of the MAX_CONNECTIONS, and the operations waiting for one. */
  #turns = MAX_CONNECTIONS;
  readonly #waiting: (() => void)[] = [];

  constructor(
    connect: ConnectOptions,
    place: Place,
    options: { createTable: boolean; keep: number; age: number },
    context: KitContext,
  ) {
    this.label = `MySQL at ${place.where}`;
    this.#connect = connect;
    this.#place = place;
    this.#password = connect.password ?? "";
    this.#createTable = options.createTable;
    this.#keep = options.keep;
    this.#age = options.age;
    this.#context = context;
    const parts = place.table.split(".");
    this.#schema = parts.length === 2 ? [parts[0], parts[1]] : [null, parts[0]];
    this.#sql = statements(
      quoteName(place.table),
      quoteName(place.table + EVENTS_SUFFIX),
    );
  }

  /** An idle connection, or a new one; new ones bound their lock waits. */
  async #take(): Promise<Connection> {
    const idle = this.#idle.pop();
    if (idle) return idle;
    const { timeoutMs, ...rest } = this.#connect;
    const connection = mysql.createConnection({
      ...rest,
      connectTimeout: timeoutMs,
      // DATETIME values are UTC: the statements only use UTC_TIMESTAMP().
      timezone: "Z",
      supportBigNumbers: true,
      // A server may not ask for a local file (LOAD DATA LOCAL).
      flags: ["-LOCAL_FILES"],
    });
    // A failure with no statement waiting (an idle connection the server
    // closed) would otherwise be an uncaught error event.
    connection.on("error", () => this.#drop(connection));
    // Nor is an idle connection the server closed (wait_timeout) reused.
    connection.on("end", () => this.#drop(connection));
    this.#busy.add(connection);
    try {
      // A wait for another transaction's row lock ends on the server too.
      // A whole number we computed: the server refuses a parameter here.
      const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
      await plain(
        connection,
        `SET SESSION innodb_lock_wait_timeout = ${seconds}`,
      );
    } catch (error) {
      this.#drop(connection);
      throw error;
    }
    return connection;
  }

  /** Ends a connection at once; the server rolls back what it had open. */
  #drop(connection: Connection): void {
    this.#busy.delete(connection);
    const at = this.#idle.indexOf(connection);
    if (at >= 0) this.#idle.splice(at, 1);
    try {
      connection.destroy();
    } catch { /* already gone */ }
  }

  /** Waits for a turn to use a connection, or until `signal` aborts. */
  #turn(signal: AbortSignal): Promise<void> {
    if (this.#turns > 0) {
      this.#turns--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const go = () => {
        signal.removeEventListener("abort", quit);
        resolve();
      };
      const quit = () => {
        const at = this.#waiting.indexOf(go);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(signal.reason);
      };
      this.#waiting.push(go);
      signal.addEventListener("abort", quit, { once: true });
    });
  }

  /** Hands a turn to the next waiting operation, or frees it. */
  #endTurn(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#turns++;
  }

  /**
   * Runs one operation on a connection of its own, creating the tables on
   * first use when allowed. A connection that failed or outlived the
   * deadline is dropped; a healthy one is kept for the next operation.
   */
  async #run<T>(
    op: Operation,
    body: (connection: Connection) => Promise<T>,
  ): Promise<T> {
    await this.#turn(op.signal);
    let connection: Connection | undefined;
    const drop = () => connection && this.#drop(connection);
    op.signal.addEventListener("abort", drop, { once: true });
    try {
      connection = await this.#take();
      this.#busy.add(connection);
      if (op.signal.aborted) throw op.signal.reason;
      let result: T;
      try {
        result = await body(connection);
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (
          !this.#createTable ||
          (code !== "ER_NO_SUCH_TABLE" && code !== "ER_BAD_FIELD_ERROR")
        ) throw error;
        await this.#init(connection);
        result = await body(connection);
      }
      this.#busy.delete(connection);
      if (this.#idle.length < IDLE_CONNECTIONS && !op.signal.aborted) {
        this.#idle.push(connection);
      } else connection.destroy();
      return result;
    } catch (error) {
      if (connection) {
        const answered = error instanceof StormlockError ||
          new MysqlFailure(error, this.#place, "").fromServer;
        if (answered) {
          // Leaves no transaction open on a connection kept for later.
          await plain(connection, "ROLLBACK").catch(() => drop());
          this.#busy.delete(connection);
          if (this.#idle.length < IDLE_CONNECTIONS && !op.signal.aborted) {
            this.#idle.push(connection);
          } else drop();
        } else drop();
      }
      if (error instanceof StormlockError) throw error;
      throw new MysqlFailure(error, this.#place, this.#password);
    } finally {
      op.signal.removeEventListener("abort", drop);
      this.#endTurn();
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
    return this.#context.leaseFromRecord(resource, toRecord(row));
  }

  /** Trims a resource's history after event number `last` was added. */
  async #trim(connection: Connection, key: Buffer, last: number) {
    if (last > this.#keep) {
      await exec(connection, this.#sql.trim, [key, last - this.#keep]);
    }
    // Old events are never shown; deleting them now and then is enough.
    if (Math.random() < 1 / 256) {
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
        `ALTER TABLE ${quoteName(this.#place.table)} ${changes.join(", ")}`,
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

  /** Ends the live lease `leaseId`, recording `kind`; or throws. */
  #end(
    resource: string,
    leaseId: string,
    op: Operation,
    kind: "released" | "broken",
    by?: Breaker,
  ): Promise<Lease> {
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

  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(resource, leaseId, op, ending.kind, ending.by);
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
      return rows.map((row) => {
        const event: LeaseEvent = {
          ...this.#lease(row, resource),
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

  close(): void {
    for (const connection of [...this.#idle, ...this.#busy]) {
      this.#drop(connection);
    }
  }
}

/** Checks `table` or `database.table`; each part is quoted when used. */
function checkTable(table: string, context: KitContext): string {
  const parts = table.split(".");
  // MySQL names are at most 64 characters; leave room for the suffix.
  const most = 64 - EVENTS_SUFFIX.length;
  if (
    parts.length > 2 || table.includes("\0") ||
    parts.some((part) => part === "" || [...part].length > 64) ||
    [...parts[parts.length - 1]].length > most || / $/.test(table)
  ) {
    throw context.optionError(
      "table",
      `"${table}" is not a table name; use NAME or DATABASE.NAME, the name at most ${most} characters (room for its ${EVENTS_SUFFIX} table)`,
    );
  }
  return table;
}

/** What to do about a server error, by its code; `undefined` for the default. */
function serverRemedy(failure: MysqlFailure): Classified | undefined {
  const { table, section, where } = failure.place;
  const { message } = failure;
  switch (failure.code) {
    case "ER_NO_SUCH_TABLE":
      return {
        config:
          `has no table ${table} (${message}); run "stormlock init" or set create_table = true in [${section}]`,
      };
    case "ER_BAD_FIELD_ERROR":
      return {
        config:
          `has a table ${table} not shaped like this Stormlock's (${message}); if the original Stormlock made it, run "stormlock init" to upgrade it; else set table in [${section}] to another name`,
      };
    case "ER_BAD_DB_ERROR":
    case "ER_NO_DB_ERROR":
      return {
        config:
          `${message}; create the database, or fix database in [${section}]`,
      };
    case "ER_ACCESS_DENIED_ERROR":
    case "ER_ACCESS_DENIED_NO_PASSWORD_ERROR":
    case "ER_HOST_NOT_PRIVILEGED":
      return {
        unavailable:
          `refused the login: ${message}; check user and password in [${section}]`,
      };
    case "ER_DBACCESS_DENIED_ERROR":
      // The server says this too when the database does not exist.
      return {
        config:
          `${message}; check database in [${section}] (it may not exist), or grant the user its rights there`,
      };
    case "ER_TABLEACCESS_DENIED_ERROR":
    case "ER_COLUMNACCESS_DENIED_ERROR":
    case "ER_SPECIFIC_ACCESS_DENIED_ERROR":
      return {
        config:
          `${message}; grant the user SELECT, INSERT, UPDATE and DELETE on ${table} and ${table}${EVENTS_SUFFIX} (and CREATE and ALTER for init)`,
      };
    case "ER_LOCK_WAIT_TIMEOUT":
    case "ER_QUERY_TIMEOUT":
    case "ER_STATEMENT_TIMEOUT":
      return "timeout";
    case "ER_LOCK_DEADLOCK":
      return { unavailable: `${message}; retry` };
    case "ER_DATA_TOO_LONG":
    case "ER_TOO_LONG_KEY":
      return new UsageError(
        `The resource name or a detail is too long for ${where} (${message}); resource names may have at most ${MAX_NAME_BYTES} bytes of UTF-8`,
        { cause: failure },
      );
    case "ER_OPTION_PREVENTS_STATEMENT":
    case "ER_READ_ONLY_MODE":
      return {
        unavailable:
          `is read-only (${message}); point host in [${section}] at the primary`,
      };
    case "ER_CON_COUNT_ERROR":
    case "ER_TOO_MANY_USER_CONNECTIONS":
      return {
        unavailable:
          `has no free connection (${message}); retry, or raise its max_connections`,
      };
  }
  return undefined;
}

/** Turns a mysql2 failure into the remedy users see. */
function classify(error: unknown, failed: FailedOperation): Classified {
  if (!(error instanceof MysqlFailure)) {
    return {
      unavailable: `failed to ${failed.action}: ${
        String((error as Error)?.message ?? error)
      }`,
    };
  }
  const { code, message } = error;
  const { section } = error.place;
  if (error.fromServer) {
    return serverRemedy(error) ?? {
      unavailable:
        `failed to ${failed.action}: ${message} (${code}); fix what the server names, or retry if it was transient`,
    };
  }
  switch (code) {
    case "ETIMEDOUT":
      return "timeout";
    case "ECONNREFUSED":
      return {
        unavailable:
          `refused the connection; check that the server is up and host and port in [${section}] are right`,
      };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return {
        unavailable:
          `is not a host name that resolves; check host in [${section}]`,
      };
    case "ENOENT":
      return {
        unavailable: `has no socket there; check unix_socket in [${section}]`,
      };
    case "HANDSHAKE_NO_SSL_SUPPORT":
      return {
        unavailable:
          `does not offer TLS; turn TLS on at the server, or remove ssl_ca and tls from [${section}]`,
      };
    case "PROTOCOL_CONNECTION_LOST":
    case "ECONNRESET":
    case "EPIPE":
      return {
        unavailable:
          `closed the connection during ${failed.action}; check that the server is up and is MySQL or MariaDB, then retry`,
      };
  }
  if (/CERT|TLS|SSL|SELF_SIGNED|VERIFY/.test(code)) {
    return {
      unavailable:
        `failed TLS (${code}): ${message}; check ssl_ca and ssl_verify_identity in [${section}]`,
    };
  }
  return {
    unavailable:
      `failed to ${failed.action}: ${message}; check that the server is up and reachable, then retry`,
  };
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
  options: {
    host: {
      kind: "text",
      default: "127.0.0.1",
      doc: "The server's host name or address.",
    },
    port: { kind: "port", default: 3306, doc: "The server's port." },
    unix_socket: {
      kind: "path",
      doc: "A unix socket to connect through instead of host and port.",
    },
    user: {
      kind: "text",
      doc: "The user to log in as.",
    },
    password: {
      kind: "text",
      secret: true,
      doc: "That user's password. Never printed.",
    },
    database: {
      kind: "text",
      doc: "The database holding the table (or write `table = DB.NAME`).",
    },
    table: {
      kind: "text",
      default: DEFAULT_TABLE,
      doc:
        "The table, optionally `database.table`; history goes in `<table>_events`.",
    },
    ssl_ca: {
      kind: "pem",
      doc:
        "PEM file of the CA that signed the server's certificate. Setting it turns TLS on.",
    },
    ssl_cert: {
      kind: "pem",
      doc: "PEM client certificate, for users that `REQUIRE X509`.",
    },
    ssl_key: { kind: "pem", doc: "PEM private key of `ssl_cert`." },
    ssl_verify_identity: {
      kind: "boolean",
      default: true,
      doc:
        "Check that the server's certificate names `host`; turn off only for certificates that name no host.",
    },
    tls: {
      kind: "boolean",
      default: false,
      doc: "Use TLS with the system's CAs (implied by `ssl_ca`, `ssl_cert`).",
    },
    timeout: {
      kind: "duration",
      default: "3s",
      doc: "Bound on each operation, connecting and row-lock waits included.",
    },
    create_table: {
      kind: "boolean",
      default: false,
      doc: "Create or upgrade the tables on first use, as `init` does.",
    },
  },
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
        createTable: settings.create_table,
        keep: settings.history,
        age: settings.history_age,
      },
      context,
    );
  },
  classify,
});

/** `host:port/database` (or the socket), for messages. */
function where(
  settings: {
    host: string;
    port: number;
    unix_socket?: string;
    database?: string;
  },
): string {
  const at = settings.unix_socket ?? `${settings.host}:${settings.port}`;
  return settings.database ? `${at}/${settings.database}` : at;
}
