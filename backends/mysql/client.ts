/**
 * The mysql backend's client: statements over mysql2 connections, and a
 * small pool of them per store that bounds how many it uses at once.
 *
 * @module
 */
import mysql from "mysql2";
import type { Connection, ExecuteValues } from "mysql2";

/** Idle connections a store keeps for its next operations. */
const IDLE_CONNECTIONS = 4;
/**
 * Connections a store uses at once; more operations wait their turn, so a
 * burst of calls can't use up the server's `max_connections`.
 */
const MAX_CONNECTIONS = 8;

/** A mysql2 connection. */
export type { Connection };

/** How the store connects, from the options. */
export interface ConnectOptions {
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
export function exec<T>(
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
export function plain<T>(connection: Connection, sql: string): Promise<T> {
  return new Promise((resolve, reject) => {
    connection.query(sql, (error, rows) => {
      if (error) reject(error);
      else resolve(rows as T);
    });
  });
}

/**
 * A store's connections: idle ones kept for the next operations, and
 * turns that bound how many are in use at once.
 */
export class Pool {
  readonly #options: ConnectOptions;
  readonly #idle: Connection[] = [];
  readonly #busy = new Set<Connection>();
  /** Free turns of the MAX_CONNECTIONS, and the operations waiting for one. */
  #turns = MAX_CONNECTIONS;
  readonly #waiting: (() => void)[] = [];

  /** @param options How to connect. */
  constructor(options: ConnectOptions) {
    this.#options = options;
  }

  /** An idle connection, or a new one; new ones bound their lock waits. */
  async take(): Promise<Connection> {
    const idle = this.#idle.pop();
    if (idle) {
      this.#busy.add(idle);
      return idle;
    }
    const { timeoutMs, ...rest } = this.#options;
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
    connection.on("error", () => this.drop(connection));
    // Nor is an idle connection the server closed (wait_timeout) reused.
    connection.on("end", () => this.drop(connection));
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
      this.drop(connection);
      throw error;
    }
    return connection;
  }

  /**
   * Keeps a connection an operation is done with for the next one, unless
   * enough are idle or its operation outlived its deadline.
   */
  keep(connection: Connection, expired: boolean): void {
    this.#busy.delete(connection);
    if (this.#idle.length < IDLE_CONNECTIONS && !expired) {
      this.#idle.push(connection);
    } else connection.destroy();
  }

  /** Ends a connection at once; the server rolls back what it had open. */
  drop(connection: Connection): void {
    this.#busy.delete(connection);
    const at = this.#idle.indexOf(connection);
    if (at >= 0) this.#idle.splice(at, 1);
    try {
      connection.destroy();
    } catch { /* already gone */ }
  }

  /** Waits for a turn to use a connection, or until `signal` aborts. */
  turn(signal: AbortSignal): Promise<void> {
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
  endTurn(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#turns++;
  }

  /** Ends every connection. */
  close(): void {
    for (const connection of [...this.#idle, ...this.#busy]) {
      this.drop(connection);
    }
  }
}
