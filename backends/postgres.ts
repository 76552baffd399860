/**
 * The PostgreSQL backend: one row per resource in a table, with expiry on
 * the server's clock (`now()`). Acquire is a single
 * `INSERT … ON CONFLICT … DO UPDATE … WHERE expired` statement, so the
 * check-and-set is atomic on the server.
 *
 * @module
 */
import postgres from "postgres";
import net from "node:net";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../lib/kit/errors.ts";
import { deniedPermission } from "../lib/kit/permissions.ts";
import { resolveConfigPath } from "../lib/config.ts";
import { DeadlineError, withDeadline } from "../lib/kit/deadline.ts";
import {
  booleanOption,
  formatTimeout,
  optionError,
  textOption,
  timeoutOption,
} from "../lib/kit/options.ts";
import { newLeaseId } from "../lib/kit/lease.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Lease,
} from "../lib/kit/types.ts";

/**
 * Options of `[backend.postgres]`. `connection` is the original
 * Stormlock's name for `url`, kept so its config files still work.
 */
export const optionNames = [
  "url",
  "connection",
  "table",
  "timeout",
  "create_table",
] as const;

/** The table used when the config names none. */
export const DEFAULT_TABLE = "stormlock";
const DEFAULT_TIMEOUT_MS = 3000;
/** How long close() lets a healthy connection say goodbye. */
const CLOSE_GRACE_SECONDS = 0.5;
/** Acquire re-reads when the holder vanishes between its two statements. */
const ACQUIRE_ATTEMPTS = 5;

type Sql = postgres.Sql;

/** Settings parsed from the options; see {@linkcode createBackend}. */
export interface PostgresSettings {
  /** The connection URI, without the `ssl*` parameters handled here. */
  url: string;
  /** `host:port/database`, the only part of the URL messages may show. */
  where: string;
  /** The unix socket, when the URL's host is a folder. */
  path?: string;
  /** The password from the URL, masked out of any client message. */
  password: string;
  /** The table, optionally `schema.table`. */
  table: string;
  /** Bound on each operation, connecting included. */
  timeoutMs: number;
  /** Whether a missing table is created on first use. */
  createTable: boolean;
  /** postgres.js's `ssl` option, from `sslmode` and friends. */
  ssl: boolean | "prefer" | "require" | Record<string, unknown>;
  /** The config section, for messages. */
  section: string;
}

interface Row {
  resource: string;
  lease: string;
  principal: string;
  created: Date;
  expires: Date;
}

function toLease(row: Row): Lease {
  return {
    resource: row.resource,
    // uuid columns read back with dashes; our ids have none.
    id: row.lease.replaceAll("-", ""),
    principal: row.principal,
    created: row.created,
    expires: row.expires,
  };
}

/** SQLSTATEs that mean the table exists but is not shaped like ours. */
const WRONG_SHAPE = new Set(["42703", "42P10", "42804", "42883"]);

/** A lock store in one PostgreSQL table. Expiry uses the server's clock. */
export class PostgresBackend implements Backend {
  readonly #settings: PostgresSettings;
  #sql: Sql | undefined;
  /** The current client's gate; see openSocket. */
  #gate: Gate = { mayConnect: true };
  #closed = false;

  /**
   * Makes the backend; nothing connects until the first operation.
   * @param settings Parsed options, as {@linkcode createBackend} makes them.
   */
  constructor(settings: PostgresSettings) {
    this.#settings = settings;
  }

  #connection(): Sql {
    if (this.#sql) return this.#sql;
    const { url, timeoutMs, ssl, path } = this.#settings;
    // Each client gets its own gate, so a discarded one can't use the next's.
    const gate: Gate = { mayConnect: true };
    this.#gate = gate;
    this.#sql = postgres(url, {
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
    } as postgres.Options<Record<string, never>>);
    return this.#sql;
  }

  /** Ends the connection at once, so the next operation starts afresh. */
  #discard(): void {
    const sql = this.#sql;
    this.#sql = undefined;
    sql?.end({ timeout: 0 }).catch(() => {});
  }

  /** Hides the password, should a client message ever carry it. */
  #mask(text: string): string {
    const { password } = this.#settings;
    if (!password) return text;
    return text.replaceAll(password, "***")
      .replaceAll(encodeURIComponent(password), "***");
  }

  /** The one place that turns client errors into Stormlock's. */
  #translate(error: unknown, action: string): Error {
    if (error instanceof StormlockError) return error;
    const { where, table, section, timeoutMs, path } = this.#settings;
    const at = `PostgreSQL at ${where}`;
    const cause = { cause: error };
    const timedOut = () =>
      new BackendUnavailableError(
        `${at} did not answer within ${
          formatTimeout(timeoutMs)
        }; check that it is up and reachable, or raise timeout in [${section}]`,
        cause,
      );
    const denied = deniedPermission(error);
    if (denied) {
      return new ConfigError(
        `No permission to reach ${at}: Deno needs ${denied.need}${
          path ? " for the unix socket" : ""
        }; run main.ts with ${denied.flag}`,
        cause,
      );
    }
    if (error instanceof DeadlineError) return timedOut();
    if (error instanceof postgres.PostgresError) {
      const message = this.#mask(error.message);
      switch (error.code) {
        case "42P01":
          return new ConfigError(
            `Table ${table} does not exist in ${at}; run \`stormlock init RESOURCE\` or set create_table = true in [${section}]`,
            cause,
          );
        case "3F000":
          return new ConfigError(
            `${at}: ${message}; create the schema of table ${table} first`,
            cause,
          );
        case "3D000":
          return new ConfigError(
            `${at}: ${message}; create it, or fix the url in [${section}]`,
            cause,
          );
        case "42501":
          return new ConfigError(
            `${at}: ${message}; grant the role SELECT, INSERT, UPDATE and DELETE on ${table} (and CREATE for init)`,
            cause,
          );
        case "28P01":
        case "28000":
          return new BackendUnavailableError(
            `${at} refused the login: ${message}; check the user and password in the url in [${section}]`,
            cause,
          );
        case "57014":
          return timedOut();
        case "54000":
          return new UsageError(
            `${message}; PostgreSQL indexes keys of up to about 2,700 bytes, so use a shorter resource name`,
            cause,
          );
        case "22P02":
          return new UsageError(
            `${message}; check the lease id (the 32 hex digits printed by "stormlock acquire") and the TTL`,
            cause,
          );
      }
      if (WRONG_SHAPE.has(error.code)) {
        return new ConfigError(
          `Table ${table} in ${at} is not a Stormlock table (${message}); set table in [${section}] to another name, or drop it and run \`stormlock init RESOURCE\``,
          cause,
        );
      }
      return new BackendUnavailableError(
        `${at} failed to ${action}: ${message} (SQLSTATE ${error.code}); fix what the server names, or retry if it was transient`,
        cause,
      );
    }
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code !== "string") return error as Error; // A bug: exit 70.
    const detail = this.#mask((error as Error).message ?? code);
    switch (code) {
      case "CONNECT_TIMEOUT":
        return timedOut();
      case "ECONNREFUSED":
        return new BackendUnavailableError(
          `${at} refused the connection; check that the server is up and the url's host and port in [${section}] are right`,
          cause,
        );
      case "ENOTFOUND":
      case "EAI_AGAIN":
        return new BackendUnavailableError(
          `${at}: the host name was not found; check the host in the url in [${section}]`,
          cause,
        );
      case "STORMLOCK_CLOSED_EARLY":
        return new BackendUnavailableError(
          `${at} closed the connection during startup; check that it is a PostgreSQL server and that sslmode in the url matches what it expects`,
          cause,
        );
    }
    if (/CERT|TLS|SSL/.test(code)) {
      return new BackendUnavailableError(
        `${at}: TLS failed: ${detail}; check sslmode and sslrootcert in the url`,
        cause,
      );
    }
    return new BackendUnavailableError(
      `${at} failed to ${action}: ${detail}; check that the server is up and reachable, then retry`,
      cause,
    );
  }

  /**
   * Runs one operation within the timeout, connecting if needed, creating
   * the table on first use when allowed, and translating errors.
   */
  async #run<T>(action: string, body: (sql: Sql) => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new UsageError("The postgres backend is closed; open a new one");
    }
    let gate = this.#gate;
    try {
      const sql = this.#connection();
      gate = this.#gate;
      const attempt = async () => {
        try {
          return await body(sql);
        } catch (error) {
          if (
            !this.#settings.createTable ||
            !(error instanceof postgres.PostgresError) ||
            error.code !== "42P01"
          ) throw error;
          await this.#create(sql);
          return await body(sql);
        }
      };
      const result = await withDeadline(this.#settings.timeoutMs, attempt);
      gate.mayConnect = true;
      return result;
    } catch (error) {
      // The server answered, so a later reconnect is no startup loop.
      if (
        error instanceof StormlockError ||
        error instanceof postgres.PostgresError
      ) gate.mayConnect = true;
      const translated = this.#translate(error, action);
      // The connection may be stuck or broken; never reuse it.
      if (translated instanceof BackendUnavailableError) this.#discard();
      throw translated;
    }
  }

  /** CREATE TABLE IF NOT EXISTS, tolerating a racing creator. */
  async #create(sql: Sql): Promise<void> {
    try {
      await sql`
        CREATE TABLE IF NOT EXISTS ${sql(this.#settings.table)} (
          resource  text        PRIMARY KEY,
          lease     uuid        NOT NULL,
          principal text        NOT NULL,
          created   timestamptz NOT NULL,
          expires   timestamptz NOT NULL
        )`;
    } catch (error) {
      // Two creators at once: one wins, and the other may trip over the
      // new table, its row type or the catalog's unique index instead of
      // seeing the table.
      const code = (error as { code?: string }).code ?? "";
      if (!["42P07", "42710", "23505"].includes(code)) throw error;
    }
  }

  /**
   * Creates the table if it is missing, then checks that it has the
   * columns Stormlock uses. Idempotent.
   */
  init(): Promise<void> {
    return this.#run("create its table", async (sql) => {
      await this.#create(sql);
      await sql`
        SELECT resource, lease, principal, created, expires
        FROM ${sql(this.#settings.table)} LIMIT 0`;
    });
  }

  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease> {
    return this.#run("acquire", async (sql) => {
      const table = sql(this.#settings.table);
      for (let attempt = 0; attempt < ACQUIRE_ATTEMPTS; attempt++) {
        // Takes the row when absent or expired; a live row is left alone
        // and nothing is returned.
        const [won] = await sql<Row[]>`
          INSERT INTO ${table} AS held
            (resource, lease, principal, created, expires)
          VALUES (${resource}::text, ${newLeaseId()}::uuid,
            ${principal}::text, now(),
            now() + ${ttlSeconds}::integer * interval '1 second')
          ON CONFLICT (resource) DO UPDATE
            SET lease = excluded.lease, principal = excluded.principal,
              created = excluded.created, expires = excluded.expires
            WHERE held.expires <= now()
          RETURNING resource, lease::text, principal, created, expires`;
        if (won) return toLease(won);
        const [holder] = await sql<Row[]>`
          SELECT resource, lease::text, principal, created, expires
          FROM ${table}
          WHERE resource = ${resource}::text AND expires > now()`;
        if (holder) throw new LockHeldError(toLease(holder));
        // The holder let go between the two statements: try again.
      }
      throw new BackendUnavailableError(
        `Lock "${resource}" in PostgreSQL at ${this.#settings.where} changed hands ${ACQUIRE_ATTEMPTS} times during one acquire; try again`,
      );
    });
  }

  release(resource: string, leaseId: string): Promise<void> {
    return this.#run("release", async (sql) => {
      const { count } = await sql`
        DELETE FROM ${sql(this.#settings.table)}
        WHERE resource = ${resource}::text AND lease = ${leaseId}::uuid
          AND expires > now()`;
      if (count === 0) throw new LeaseNotHeldError(resource, leaseId);
    });
  }

  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease> {
    return this.#run("renew", async (sql) => {
      const [row] = await sql<Row[]>`
        UPDATE ${sql(this.#settings.table)}
        SET expires = now() + ${ttlSeconds}::integer * interval '1 second'
        WHERE resource = ${resource}::text AND lease = ${leaseId}::uuid
          AND expires > now()
        RETURNING resource, lease::text, principal, created, expires`;
      if (!row) throw new LeaseNotHeldError(resource, leaseId);
      return toLease(row);
    });
  }

  current(resource: string): Promise<Lease | null> {
    return this.#run("read", async (sql) => {
      const [row] = await sql<Row[]>`
        SELECT resource, lease::text, principal, created, expires
        FROM ${sql(this.#settings.table)}
        WHERE resource = ${resource}::text AND expires > now()`;
      return row ? toLease(row) : null;
    });
  }

  isHeld(resource: string, leaseId: string): Promise<boolean> {
    return this.#run("read", async (sql) => {
      const rows = await sql`
        SELECT 1 FROM ${sql(this.#settings.table)}
        WHERE resource = ${resource}::text AND lease = ${leaseId}::uuid
          AND expires > now()`;
      return rows.length > 0;
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    const sql = this.#sql;
    this.#sql = undefined;
    // end() waits for the server's goodbye; the timeout caps that wait.
    await sql?.end({ timeout: CLOSE_GRACE_SECONDS }).catch(() => {});
  }
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

const SSL_MODES = [
  "disable",
  "allow",
  "prefer",
  "require",
  "verify-ca",
  "verify-full",
];

/** Checks `table` or `schema.table`; postgres.js quotes each part. */
function parseTable(options: BackendOptions, context: BackendContext) {
  const table = textOption(options, "table") ?? DEFAULT_TABLE;
  const parts = table.split(".");
  const encoder = new TextEncoder();
  if (
    parts.length > 2 ||
    parts.some((part) => part === "" || encoder.encode(part).length > 63) ||
    table.includes("\0")
  ) {
    throw optionError(
      context,
      "table",
      `"${table}" is not a table name; use NAME or SCHEMA.NAME, each at most 63 bytes`,
    );
  }
  return table;
}

/**
 * Maps libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` URL
 * parameters onto postgres.js's `ssl` option, which knows only sslmode.
 */
function parseSsl(
  params: URLSearchParams,
  context: BackendContext,
): PostgresSettings["ssl"] {
  const mode = params.get("sslmode") ?? "disable";
  if (!SSL_MODES.includes(mode)) {
    throw optionError(
      context,
      "url",
      `sslmode "${mode}" is not one of ${SSL_MODES.join(", ")}`,
    );
  }
  const read = (key: string) => {
    const path = params.get(key);
    if (path === null || (key === "sslrootcert" && path === "system")) {
      return undefined;
    }
    const file = resolveConfigPath(path, context);
    try {
      return Deno.readTextFileSync(file);
    } catch (error) {
      throw optionError(
        context,
        "url",
        `cannot read ${key} file ${file}: ${(error as Error).message}`,
      );
    }
  };
  const ca = read("sslrootcert");
  const files = { ca, cert: read("sslcert"), key: read("sslkey") };
  for (const key of Object.keys(files) as (keyof typeof files)[]) {
    if (files[key] === undefined) delete files[key];
  }
  if (mode === "disable") return false;
  if (mode === "allow" || mode === "prefer") return "prefer";
  // As in libpq, sslmode=require with a root certificate verifies the CA.
  if (mode === "verify-ca" || (mode === "require" && ca !== undefined)) {
    return { ...files, checkServerIdentity: () => undefined };
  }
  if (mode === "require") {
    return { ...files, rejectUnauthorized: false };
  }
  return { ...files, rejectUnauthorized: true };
}

/**
 * Parses the URL without ever echoing it, since it may hold a password.
 */
function parseUrl(
  options: BackendOptions,
  context: BackendContext,
): Pick<PostgresSettings, "url" | "where" | "password" | "ssl" | "path"> {
  if (options.url !== undefined && options.connection !== undefined) {
    throw optionError(
      context,
      "connection",
      "set url or connection (its old name), not both",
    );
  }
  const key = options.connection !== undefined ? "connection" : "url";
  const text = textOption(options, key);
  if (text === undefined) {
    throw optionError(
      context,
      "url",
      "missing; set it to postgres://USER:PASSWORD@HOST:PORT/DATABASE",
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw optionError(
      context,
      key,
      "not a URL; use postgres://USER:PASSWORD@HOST:PORT/DATABASE (one host; percent-encode special characters in the password)",
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw optionError(
      context,
      key,
      "must start with postgres:// or postgresql://",
    );
  }
  let host: string, database: string, password: string;
  try {
    // postgres.js decodes these too, and throws on a stray "%".
    decodeURIComponent(url.username);
    password = decodeURIComponent(url.password);
    host = decodeURIComponent(url.hostname) || "localhost";
    database = decodeURIComponent(url.pathname.slice(1));
  } catch {
    throw optionError(
      context,
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

/**
 * Builds the backend from `[backend.postgres]`: `url` (required; `sslmode`,
 * `sslrootcert`, `sslcert` and `sslkey` work as in libpq), `table` (default
 * `stormlock`, may be `schema.table`), `timeout` (default 3s, bounds every
 * operation, connecting included) and `create_table` (default false:
 * create the table on first use). Nothing connects until first use.
 *
 * @throws {ConfigError} for a missing or bad option. Messages never show
 * the URL, only `host:port/database`.
 */
export function createBackend(
  options: BackendOptions,
  context: BackendContext,
): Backend {
  return new PostgresBackend({
    ...parseUrl(options, context),
    table: parseTable(options, context),
    timeoutMs: timeoutOption(options, context, DEFAULT_TIMEOUT_MS),
    createTable: booleanOption(options, context, "create_table", false),
    section: context.section,
  });
}
