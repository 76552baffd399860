/**
 * The postgres backend's options: the schema, the URL or libpq conninfo
 * they name, its TLS parameters, and the table's name.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSpec } from "../../lib/kit/options.ts";
import { EVENTS_SUFFIX } from "../../lib/kit/sql.ts";

/** The table used when the config names none. */
export const DEFAULT_TABLE = "stormlock";

/** The URL form, for messages and docs. */
export const URL_FORM = "postgres://USER:PASSWORD@HOST:PORT/DATABASE";

/** The `[backend.postgres]` options. */
export const options = {
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
} satisfies Record<string, OptionSpec>;

/** postgres.js's `ssl` option, as libpq's sslmode maps onto it. */
export type SslOption = boolean | "prefer" | Record<string, unknown>;

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
export function parseSsl(
  params: URLSearchParams,
  context: KitContext,
): SslOption {
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

/** Splits the URL into what connects and what messages may show. */
export function parseUrl(
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
export function connectionUrl(text: string, context: KitContext): URL {
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
export function checkTable(table: string, context: KitContext): string {
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

/** How the store connects, from the options. */
export interface Connection {
  url: string;
  path?: string;
  ssl: SslOption;
  timeoutMs: number;
}
