/**
 * The postgres backend's client: a postgres.js client of one connection,
 * whose socket refuses postgres.js's endless reconnects during startup.
 *
 * @module
 */
import postgres from "postgres";
import net from "node:net";
import type { Connection } from "./options.ts";

/** A postgres.js client. */
export type Sql = postgres.Sql;

/** What postgres.js passes to a `socket` factory. */
interface SocketOptions {
  host: string[];
  port: number[];
  path?: string | false;
}

/** Whether a client may open a socket: once, then again after a success. */
export interface Gate {
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
export interface Client {
  sql: Sql;
  gate: Gate;
}

/**
 * A client of one connection to `connection`, which connects when first
 * used; `more` adds to or overrides postgres.js's options.
 */
export function newClient(
  connection: Connection,
  more: Record<string, unknown> = {},
): Client {
  const { url, timeoutMs, ssl, path } = connection;
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
