/**
 * The embedded default backend: a SQLite file shared by every process on
 * one host. Check-and-set runs inside `BEGIN IMMEDIATE`, so concurrent
 * processes serialize on SQLite's write lock; the busy timeout makes them
 * wait for it instead of failing.
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { dirname, join } from "node:path";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../lib/errors.ts";
import { deniedPermission } from "../lib/permissions.ts";
import { expandHome, homeDir, resolveConfigPath } from "../lib/config.ts";
import { timeoutOption } from "../lib/options.ts";
import { newLeaseId } from "../lib/lease.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Lease,
} from "../lib/types.ts";

/** Options of `[backend.sqlite]`. */
export const optionNames = ["path", "timeout"] as const;

interface Row {
  resource: string;
  lease_id: string;
  principal: string;
  created_ms: number;
  expires_ms: number;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS leases (
    resource   TEXT PRIMARY KEY,
    lease_id   TEXT NOT NULL,
    principal  TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS leases_expires ON leases (expires_ms);
`;

function toLease(row: Row): Lease {
  return {
    resource: row.resource,
    id: row.lease_id,
    principal: row.principal,
    created: new Date(row.created_ms),
    expires: new Date(row.expires_ms),
  };
}

/** The default database: `$XDG_STATE_HOME/stormlock/locks.db`. */
export function defaultDatabasePath(): string {
  const state = Deno.env.get("XDG_STATE_HOME") ||
    join(homeDir() ?? ".", ".local", "state");
  return join(expandHome(state), "stormlock", "locks.db");
}

/** A lock store in one SQLite file. Expiry uses this host's clock. */
export class SqliteBackend implements Backend {
  readonly #db: DatabaseSync;
  readonly #path: string;

  /**
   * Opens (and creates) the database.
   * @param path The database file.
   * @param timeoutMs How long to wait for another process's write lock.
   */
  constructor(path: string, timeoutMs = 5000) {
    this.#path = path;
    try {
      Deno.mkdirSync(dirname(path), { recursive: true });
      this.#db = new DatabaseSync(path, { timeout: timeoutMs });
      this.#db.exec("PRAGMA journal_mode = WAL");
      this.#db.exec(SCHEMA);
    } catch (error) {
      throw this.#translate(error, "open");
    }
  }

  #translate(error: unknown, action: string): Error {
    if (error instanceof StormlockError) return error;
    const denied = error instanceof Deno.errors.NotCapable
      ? deniedPermission(error)
      : undefined;
    if (denied) {
      // SQLite also writes PATH-wal and PATH-shm, so grant the folder.
      const folder = dirname(this.#path);
      return new ConfigError(
        `No permission to use the SQLite database ${this.#path}: Deno needs ${denied.need}; keep it under $XDG_STATE_HOME/stormlock, or run main.ts with --allow-read=${folder} --allow-write=${folder}`,
        { cause: error },
      );
    }
    const message = (error as Error)?.message ?? String(error);
    return new BackendUnavailableError(
      `SQLite database ${this.#path} failed to ${action}: ${message}; ${
        sqliteRemedy(message)
      }`,
      { cause: error },
    );
  }

  /** Runs a synchronous statement as a promise, translating errors. */
  #run<T>(action: string, body: () => T): Promise<T> {
    try {
      if (!this.#db.isOpen) {
        throw new UsageError("The sqlite backend is closed; open a new one");
      }
      return Promise.resolve(body());
    } catch (error) {
      return Promise.reject(this.#translate(error, action));
    }
  }

  #live(resource: string, now: number): Row | undefined {
    return this.#db.prepare(
      "SELECT * FROM leases WHERE resource = ? AND expires_ms > ?",
    ).get(resource, now) as Row | undefined;
  }

  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease> {
    return this.#run("acquire", () => {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const now = Date.now();
        const holder = this.#live(resource, now);
        if (holder) throw new LockHeldError(toLease(holder));
        this.#db.prepare("DELETE FROM leases WHERE expires_ms <= ?").run(now);
        const row: Row = {
          resource,
          lease_id: newLeaseId(),
          principal,
          created_ms: now,
          expires_ms: now + ttlSeconds * 1000,
        };
        this.#db.prepare(
          `INSERT INTO leases (resource, lease_id, principal, created_ms, expires_ms)
           VALUES (?, ?, ?, ?, ?)`,
        ).run(
          row.resource,
          row.lease_id,
          row.principal,
          row.created_ms,
          row.expires_ms,
        );
        this.#db.exec("COMMIT");
        return toLease(row);
      } catch (error) {
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw error;
      }
    });
  }

  release(resource: string, leaseId: string): Promise<void> {
    return this.#run("release", () => {
      const { changes } = this.#db.prepare(
        "DELETE FROM leases WHERE resource = ? AND lease_id = ? AND expires_ms > ?",
      ).run(resource, leaseId, Date.now());
      if (changes === 0) throw new LeaseNotHeldError(resource, leaseId);
    });
  }

  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease> {
    return this.#run("renew", () => {
      const now = Date.now();
      const row = this.#db.prepare(
        `UPDATE leases SET expires_ms = ?
         WHERE resource = ? AND lease_id = ? AND expires_ms > ?
         RETURNING *`,
      ).get(now + ttlSeconds * 1000, resource, leaseId, now) as
        | Row
        | undefined;
      if (!row) throw new LeaseNotHeldError(resource, leaseId);
      return toLease(row);
    });
  }

  current(resource: string): Promise<Lease | null> {
    return this.#run("read", () => {
      const row = this.#live(resource, Date.now());
      return row ? toLease(row) : null;
    });
  }

  isHeld(resource: string, leaseId: string): Promise<boolean> {
    return this.#run("read", () => {
      return this.#live(resource, Date.now())?.lease_id === leaseId;
    });
  }

  close(): Promise<void> {
    if (this.#db.isOpen) this.#db.close();
    return Promise.resolve();
  }
}

/**
 * Builds the backend from `[backend.sqlite]`: `path` (default
 * `$XDG_STATE_HOME/stormlock/locks.db`, relative to the config file's
 * folder) and `timeout` (default 5s, the wait for another process).
 */
export function createBackend(
  options: BackendOptions,
  context: BackendContext,
): Backend {
  const timeoutMs = timeoutOption(options, context, 5000);
  const path = options.path
    ? resolveConfigPath(options.path, context)
    : defaultDatabasePath();
  return new SqliteBackend(path, timeoutMs);
}

/** What to do about an SQLite error, by its message. */
function sqliteRemedy(message: string): string {
  if (/file is not a database|malformed|file is encrypted/i.test(message)) {
    return "move the file aside (a new one is created) or fix path in [backend.sqlite]";
  }
  if (/database is locked|busy/i.test(message)) {
    return "another process held it too long; retry, or raise timeout in [backend.sqlite]";
  }
  if (
    /readonly|read-only|unable to open|permission denied|EACCES/i.test(message)
  ) {
    return "check that you can read and write the file and its folder, or fix path in [backend.sqlite]";
  }
  if (/disk is full|disk I\/O|ENOSPC/i.test(message)) {
    return "free space on its disk, or move path in [backend.sqlite] elsewhere";
  }
  return "check the file and its folder, or fix path in [backend.sqlite]";
}
