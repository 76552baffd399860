/**
 * The embedded default backend: a SQLite file shared by every process on
 * one host. Every change runs inside `BEGIN IMMEDIATE`, so concurrent
 * processes serialize on SQLite's write lock (the busy timeout makes them
 * wait for it), and its history event is written in the same transaction.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { dirname, join } from "node:path";
import { defineBackend } from "../../lib/kit/define.ts";
import type {
  Ending,
  LeaseRecord,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { admits } from "../../lib/kit/holders.ts";
import { classifySqliteError } from "./errors.ts";
import { defaultDatabasePath, options } from "./options.ts";

export { defaultDatabasePath };
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";
import type { KitContext } from "../../lib/kit/contract.ts";

interface Row {
  resource: string;
  lease_id: string;
  principal: string;
  host: string | null;
  reason: string | null;
  link: string | null;
  fence: number;
  created_ms: number;
  expires_ms: number;
  /** 1 exclusive, N slots, 0 shared (lib/kit/holders.ts). */
  holder_limit: number;
}

/** Which table a holder's row is in (see SCHEMA). */
type Table = "leases" | "holders";

interface EventRow extends Row {
  kind: LeaseEventKind;
  at_ms: number;
  by_principal: string | null;
  by_host: string | null;
  by_reason: string | null;
}

// Version 1 (Stormlock 0.1) had only the leases table, without host,
// reason, link and fence; version 2 had no holders table and no
// holder_limit; opening upgrades both in place. A lock's first holder
// stays in `leases`, one row per resource as ever, so a single-holder lock
// is stored exactly as before; further holders of a lock with slots or
// shared holds are rows of `holders`. When the `leases` row ends, the
// oldest live holder moves into it.
const SCHEMA_VERSION = 3;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS leases (
    resource   TEXT PRIMARY KEY,
    lease_id   TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires_ms);
  CREATE TABLE IF NOT EXISTS holders (
    resource     TEXT NOT NULL,
    lease_id     TEXT NOT NULL,
    principal    TEXT NOT NULL,
    host         TEXT,
    reason       TEXT,
    link         TEXT,
    fence        INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    holder_limit INTEGER NOT NULL,
    PRIMARY KEY (resource, lease_id)
  );
  CREATE TABLE IF NOT EXISTS fences (
    resource TEXT PRIMARY KEY,
    last     INTEGER NOT NULL
  );
  CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    resource     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    lease_id     TEXT NOT NULL,
    principal    TEXT NOT NULL,
    host         TEXT,
    reason       TEXT,
    link         TEXT,
    fence        INTEGER NOT NULL,
    created_ms   INTEGER NOT NULL,
    expires_ms   INTEGER NOT NULL,
    by_principal TEXT,
    by_host      TEXT,
    by_reason    TEXT
  );
  CREATE INDEX IF NOT EXISTS events_resource ON events (resource, seq);
`;
const ADDED_COLUMNS: Record<string, string[]> = {
  leases: [
    "host TEXT",
    "reason TEXT",
    "link TEXT",
    "fence INTEGER NOT NULL DEFAULT 0",
    "holder_limit INTEGER NOT NULL DEFAULT 1",
  ],
  events: ["holder_limit INTEGER NOT NULL DEFAULT 1"],
};
/** A holder's columns, in the order both tables are read. */
const COLUMNS =
  "resource, lease_id, principal, host, reason, link, fence, created_ms, expires_ms, holder_limit";

function toRecord(row: Row): LeaseRecord {
  return {
    id: row.lease_id,
    principal: row.principal,
    host: row.host,
    reason: row.reason,
    link: row.link,
    fence: row.fence,
    created: row.created_ms,
    expires: row.expires_ms,
    limit: row.holder_limit,
  };
}

/** Whether `path` is an existing folder (not an error if it can't be read). */
function isFolder(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/** A lock store in one SQLite file. Expiry uses this host's clock. */
class SqliteStore implements Store {
  readonly label: string;
  readonly #db: DatabaseSync;
  readonly #context: KitContext;
  readonly #keep: number;
  readonly #keepMs: number;
  readonly #statements = new Map<string, StatementSync>();

  constructor(
    path: string,
    timeoutMs: number,
    history: { keep: number; keepMs: number },
    context: KitContext,
  ) {
    this.label = `SQLite database ${path}`;
    this.#context = context;
    this.#keep = history.keep;
    this.#keepMs = history.keepMs;
    if (isFolder(path)) {
      throw context.optionError(
        "path",
        `${path} is a folder; name a database file in it, e.g. ${
          join(path, "locks.db")
        }`,
      );
    }
    Deno.mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path, { timeout: timeoutMs });
    this.#db.exec("PRAGMA journal_mode = WAL");
    this.#migrate();
  }

  #migrate(): void {
    const version = this.#db.prepare("PRAGMA user_version").get() as {
      user_version: number;
    };
    if (version.user_version >= SCHEMA_VERSION) return;
    this.#transaction(() => {
      this.#db.exec(SCHEMA);
      for (const [table, added] of Object.entries(ADDED_COLUMNS)) {
        const columns = new Set(
          (this.#db.prepare(`PRAGMA table_info(${table})`).all() as {
            name: string;
          }[]).map((column) => column.name),
        );
        for (const column of added) {
          if (!columns.has(column.split(" ")[0])) {
            this.#db.exec(`ALTER TABLE ${table} ADD COLUMN ${column}`);
          }
        }
      }
      this.#db.exec(`PRAGMA user_version = ${SCHEMA_VERSION}`);
    });
  }

  /** A cached prepared statement. */
  #sql(text: string): StatementSync {
    let statement = this.#statements.get(text);
    if (!statement) {
      statement = this.#db.prepare(text);
      this.#statements.set(text, statement);
    }
    return statement;
  }

  #transaction<T>(body: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = body();
      this.#db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  #lease(row: Row): Lease {
    return this.#context.leaseFromRecord(row.resource, toRecord(row));
  }

  /** The live holders of `resource`, lowest fence first. */
  #live(resource: string, now: number): Row[] {
    return this.#sql(
      `SELECT ${COLUMNS} FROM leases WHERE resource = ?1 AND expires_ms > ?2
       UNION ALL
       SELECT ${COLUMNS} FROM holders WHERE resource = ?1 AND expires_ms > ?2
       ORDER BY fence`,
    ).all(resource, now) as unknown as Row[];
  }

  /** The live holder `leaseId` of `resource`, and its table. */
  #find(
    resource: string,
    leaseId: string,
    now: number,
  ): { row: Row; table: Table } | undefined {
    for (const table of ["leases", "holders"] as const) {
      const row = this.#sql(
        `SELECT ${COLUMNS} FROM ${table}
         WHERE resource = ? AND lease_id = ? AND expires_ms > ?`,
      ).get(resource, leaseId, now) as Row | undefined;
      if (row) return { row, table };
    }
    return undefined;
  }

  /**
   * Deletes holder `leaseId` from `table` when `live` says so (or when
   * expired otherwise); when it was the `leases` row, the oldest live
   * other holder moves into it.
   */
  #remove(
    table: Table,
    resource: string,
    leaseId: string,
    now: number,
    live: boolean,
  ): Row | undefined {
    const row = this.#sql(
      `DELETE FROM ${table}
       WHERE resource = ? AND lease_id = ? AND expires_ms ${
        live ? ">" : "<="
      } ? RETURNING ${COLUMNS}`,
    ).get(resource, leaseId, now) as Row | undefined;
    if (row && table === "leases") this.#promote(resource, now);
    return row;
  }

  /** Moves the oldest live row of `holders` into the empty `leases` row. */
  #promote(resource: string, now: number): void {
    const next = this.#sql(
      `DELETE FROM holders WHERE rowid = (
         SELECT rowid FROM holders WHERE resource = ? AND expires_ms > ?
         ORDER BY fence LIMIT 1)
       RETURNING ${COLUMNS}`,
    ).get(resource, now) as Row | undefined;
    if (next) this.#insert("leases", next);
  }

  #insert(table: Table, row: Row): void {
    this.#sql(
      `INSERT INTO ${table} (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.resource,
      row.lease_id,
      row.principal,
      row.host,
      row.reason,
      row.link,
      row.fence,
      row.created_ms,
      row.expires_ms,
      row.holder_limit,
    );
  }

  /** Records an event and trims the resource's history to its bounds. */
  #record(
    kind: LeaseEventKind,
    row: Row,
    at: number,
    by?: Breaker,
  ): void {
    this.#sql(
      `INSERT INTO events (resource, kind, at_ms, lease_id, principal, host,
         reason, link, fence, created_ms, expires_ms, by_principal, by_host,
         by_reason, holder_limit)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      row.resource,
      kind,
      at,
      row.lease_id,
      row.principal,
      row.host,
      row.reason,
      row.link,
      row.fence,
      row.created_ms,
      row.expires_ms,
      by?.principal ?? null,
      by?.host ?? null,
      by?.reason ?? null,
      row.holder_limit ?? 1,
    );
    this.#sql(
      `DELETE FROM events WHERE resource = ?1 AND (at_ms < ?2 OR seq <= (
         SELECT seq FROM events WHERE resource = ?1
         ORDER BY seq DESC LIMIT 1 OFFSET ?3))`,
    ).run(row.resource, at - this.#keepMs, this.#keep);
  }

  /**
   * The lease row of `resource`, and the live waiter registrations under
   * `waiters` (first come first) when given: one statement, as the lock's
   * name sorts before its waiters' names.
   */
  #rows(
    resource: string,
    waiters: string | undefined,
    now: number,
  ): { old?: Row; waiting: Row[] } {
    if (waiters === undefined) {
      const old = this.#sql("SELECT * FROM leases WHERE resource = ?")
        .get(resource) as Row | undefined;
      return { old, waiting: [] };
    }
    const rows = this.#sql(
      `SELECT * FROM leases WHERE resource = ?
         OR (resource > ? AND resource < ? AND expires_ms > ?)
       ORDER BY resource`,
    ).all(resource, waiters, `${waiters}\u{10ffff}`, now) as unknown as Row[];
    const old = rows[0]?.resource === resource ? rows.shift() : undefined;
    return { old, waiting: rows };
  }

  acquire(
    request: Parameters<Store["acquire"]>[0],
    _op: Operation,
  ): Promise<Lease> {
    return Promise.resolve(this.#transaction(() => {
      const now = Date.now();
      const { resource } = request;
      const limit = request.limit ?? 1;
      const { old, waiting } = this.#rows(resource, request.waiters, now);
      const others = this.#sql(
        `SELECT ${COLUMNS} FROM holders WHERE resource = ?`,
      ).all(resource) as unknown as Row[];
      const rows = old ? [old, ...others] : others;
      const live = rows.filter((row) => row.expires_ms > now)
        .sort((a, b) => a.fence - b.fence);
      const limits = live.map((row) => ({ limit: row.holder_limit }));
      if (!admits(limits, limit)) {
        throw new this.#context.errors.LockHeldError(this.#lease(live[0]), {
          holders: live.length,
        });
      }
      if (waiting.length > 0) {
        // Free to this acquire, but others wait: name the first, as a
        // lease of this lock.
        throw new this.#context.errors.LockHeldError(
          this.#lease({ ...waiting[0], resource }),
          { waiting: waiting.length, queued: true },
        );
      }
      for (const row of rows) {
        if (row.expires_ms > now) continue;
        this.#record("expired", row, row.expires_ms);
        const table = row === old ? "leases" : "holders";
        this.#sql(`DELETE FROM ${table} WHERE resource = ? AND lease_id = ?`)
          .run(resource, row.lease_id);
      }
      const { last } = this.#sql(
        `INSERT INTO fences (resource, last) VALUES (?, 1)
         ON CONFLICT (resource) DO UPDATE SET last = last + 1
         RETURNING last`,
      ).get(resource) as { last: number };
      const row: Row = {
        resource,
        lease_id: request.id,
        principal: request.principal,
        host: request.host ?? null,
        reason: request.reason ?? null,
        link: request.link ?? null,
        fence: last,
        created_ms: now,
        expires_ms: now + request.ttlSeconds * 1000,
        holder_limit: limit,
      };
      // The first holder takes the lock's one row in `leases`, as ever.
      const first = !old || old.expires_ms <= now;
      this.#insert(first ? "leases" : "holders", row);
      this.#record("acquired", row, now);
      return this.#lease(row);
    }));
  }

  /** Deletes the live lease `leaseId`, recording `kind`; or throws. */
  #end(
    resource: string,
    leaseId: string,
    kind: "released" | "broken",
    by?: Breaker,
  ): Lease {
    return this.#transaction(() => {
      const now = Date.now();
      // The lock's first holder (the only one, mostly) is one statement.
      const row = this.#remove("leases", resource, leaseId, now, true) ??
        this.#remove("holders", resource, leaseId, now, true);
      if (!row) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      this.#record(kind, row, now, by);
      return this.#lease(row);
    });
  }

  end(resource: string, leaseId: string, ending: Ending): Promise<Lease> {
    return Promise.resolve(
      this.#end(resource, leaseId, ending.kind, ending.by),
    );
  }

  expire(resource: string, leaseId: string): Promise<boolean> {
    return Promise.resolve(this.#transaction(() => {
      const now = Date.now();
      const row = this.#remove("leases", resource, leaseId, now, false) ??
        this.#remove("holders", resource, leaseId, now, false);
      if (row) this.#record("expired", row, row.expires_ms);
      return row !== undefined;
    }));
  }

  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    _op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    return Promise.resolve(this.#transaction(() => {
      const now = Date.now();
      const found = this.#find(resource, leaseId, now);
      if (!found) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const before = found.row;
      const row = this.#sql(
        `UPDATE ${found.table} SET expires_ms = ?, reason = ?
         WHERE resource = ? AND lease_id = ? RETURNING ${COLUMNS}`,
      ).get(
        now + ttlSeconds * 1000,
        change.reason ?? before.reason,
        resource,
        leaseId,
      ) as unknown as Row;
      const changed = change.reason !== undefined &&
        change.reason !== (before.reason ?? undefined);
      this.#record(changed ? "reason-changed" : "renewed", row, now);
      return this.#lease(row);
    }));
  }

  current(resource: string): Promise<Lease | null> {
    const [row] = this.#live(resource, Date.now());
    return Promise.resolve(row ? this.#lease(row) : null);
  }

  holders(resource: string): Lease[] {
    return this.#live(resource, Date.now()).map((row) => this.#lease(row));
  }

  isHeld(resource: string, leaseId: string): boolean {
    return this.#find(resource, leaseId, Date.now()) !== undefined;
  }

  list(prefix: string): Promise<Lease[]> {
    // Every name that starts with the prefix sorts between it and it
    // followed by the highest code point, so the primary key serves.
    const rows = this.#sql(
      `SELECT ${COLUMNS} FROM leases
       WHERE resource >= ?1 AND resource < ?1 || char(1114111)
         AND expires_ms > ?2
       UNION ALL
       SELECT ${COLUMNS} FROM holders
       WHERE resource >= ?1 AND resource < ?1 || char(1114111)
         AND expires_ms > ?2
       ORDER BY resource, fence`,
    ).all(prefix, Date.now()) as unknown as Row[];
    return Promise.resolve(rows.map((row) => this.#lease(row)));
  }

  recentResources(prefix: string, sinceMs: number): string[] {
    const rows = this.#sql(
      `SELECT DISTINCT resource FROM events
       WHERE at_ms >= ?2 AND resource >= ?1 AND resource < ?1 || char(1114111)`,
    ).all(prefix, sinceMs) as { resource: string }[];
    return rows.map((row) => row.resource);
  }

  history(resource: string, limit: number): Promise<LeaseEvent[]> {
    const rows = this.#sql(
      `SELECT * FROM events WHERE resource = ? AND at_ms >= ?
       ORDER BY seq DESC LIMIT ?`,
    ).all(resource, Date.now() - this.#keepMs, limit) as unknown as EventRow[];
    return Promise.resolve(rows.map((row) => {
      const event: LeaseEvent = {
        ...this.#lease(row),
        kind: row.kind,
        at: new Date(row.at_ms),
      };
      if (row.by_principal !== null) {
        event.by = {
          principal: row.by_principal,
          reason: row.by_reason ?? "",
          ...(row.by_host !== null ? { host: row.by_host } : {}),
        };
      }
      return event;
    }));
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

/**
 * The `sqlite` backend: one file, many processes on one host.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend({ path: "/tmp/locks.db" }, { name: "sqlite", section: "backend.sqlite" });
 * ```
 */
export const backend = defineBackend({
  name: "sqlite",
  options,
  capabilities: {
    clock: "host",
    list: true,
    history: true,
    fencing: true,
    queue: true,
    holders: true,
  },
  label: (settings) =>
    `SQLite database ${settings.path ?? defaultDatabasePath()}`,
  open(settings, context) {
    return new SqliteStore(
      settings.path ?? defaultDatabasePath(),
      settings.timeout,
      { keep: settings.history, keepMs: settings.history_age * 1000 },
      context,
    );
  },
  classify: classifySqliteError,
});
