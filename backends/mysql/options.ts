/**
 * The mysql backend's options (the original Stormlock's names, which were
 * MySQL Connector/Python's), and the checks the schema can't make.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSpec } from "../../lib/kit/options.ts";
import { EVENTS_SUFFIX } from "../../lib/kit/sql.ts";

/** The table used when the config names none (the original's too). */
export const DEFAULT_TABLE = "stormlock";

/** The `[backend.mysql]` options. */
export const options = {
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
} satisfies Record<string, OptionSpec>;

/** Checks `table` or `database.table`; each part is quoted when used. */
export function checkTable(table: string, context: KitContext): string {
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

/** `host:port/database` (or the socket), for messages. */
export function where(
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
