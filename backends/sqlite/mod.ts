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
}

interface EventRow extends Row {
  kind: LeaseEventKind;
  at_ms: number;
  by_principal: string | null;
  by_host: string | null;
  by_reason: string | null;
}

// Version 1 (Stormlock 0.1) had only the leases table, without host,
// reason, link and fence; opening upgrades it in place.
const SCHEMA_VERSION = 2;
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS leases (
    resource   TEXT PRIMARY KEY,
    lease_id   TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires_ms);
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
const ADDED_COLUMNS = [
  "host TEXT",
  "reason TEXT",
  "link TEXT",
  "fence INTEGER NOT NULL DEFAULT 0",
];

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
      const columns = new Set(
        (this.#db.prepare("PRAGMA table_info(leases)").all() as {
          name: string;
        }[]).map((column) => column.name),
      );
      for (const column of ADDED_COLUMNS) {
        if (!columns.has(column.split(" ")[0])) {
          this.#db.exec(`ALTER TABLE leases ADD COLUMN ${column}`);
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

  #live(resource: string, now: number): Row | undefined {
    return this.#sql(
      "SELECT * FROM leases WHERE resource = ? AND expires_ms > ?",
    ).get(resource, now) as Row | undefined;
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
         by_reason)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
      const { old, waiting } = this.#rows(resource, request.waiters, now);
      if (old && old.expires_ms > now) {
        throw new this.#context.errors.LockHeldError(this.#lease(old));
      }
      if (waiting.length > 0) {
        // Free, but others wait: name the first, as a lease of this lock.
        throw new this.#context.errors.LockHeldError(
          this.#lease({ ...waiting[0], resource }),
          { waiting: waiting.length, queued: true },
        );
      }
      if (old) {
        this.#record("expired", old, old.expires_ms);
        this.#sql("DELETE FROM leases WHERE resource = ?").run(resource);
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
      };
      this.#sql(
        `INSERT INTO leases (resource, lease_id, principal, host, reason,
           link, fence, created_ms, expires_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
      );
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
      const row = this.#sql(
        `DELETE FROM leases
         WHERE resource = ? AND lease_id = ? AND expires_ms > ?
         RETURNING *`,
      ).get(resource, leaseId, now) as Row | undefined;
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
      const row = this.#sql(
        `DELETE FROM leases
         WHERE resource = ? AND lease_id = ? AND expires_ms <= ?
         RETURNING *`,
      ).get(resource, leaseId, Date.now()) as Row | undefined;
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
      const before = this.#live(resource, now);
      if (before?.lease_id !== leaseId) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const row = this.#sql(
        `UPDATE leases SET expires_ms = ?, reason = ?
         WHERE resource = ? RETURNING *`,
      ).get(
        now + ttlSeconds * 1000,
        change.reason ?? before.reason,
        resource,
      ) as unknown as Row;
      const changed = change.reason !== undefined &&
        change.reason !== (before.reason ?? undefined);
      this.#record(changed ? "reason-changed" : "renewed", row, now);
      return this.#lease(row);
    }));
  }

  current(resource: string): Promise<Lease | null> {
    const row = this.#live(resource, Date.now());
    return Promise.resolve(row ? this.#lease(row) : null);
  }

  list(prefix: string): Promise<Lease[]> {
    // Every name that starts with the prefix sorts between it and it
    // followed by the highest code point, so the primary key serves.
    const rows = this.#sql(
      `SELECT * FROM leases
       WHERE resource >= ?1 AND resource < ?1 || char(1114111)
         AND expires_ms > ?2
       ORDER BY resource`,
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
