/**
 * One lazy connection per store, dropped when an operation's deadline
 * passes. A store that talks to its server over one connection (redis,
 * postgres; etcd's gateway calls can too) opens it on first use, shares it
 * between operations, and must never reuse one whose state is unknown: an
 * operation that outlived its deadline may have left a reply in flight.
 *
 * @example
 * ```ts
 * import { LazyConnection } from "./connection.ts";
 * import { within } from "./deadline.ts";
 * const connection = new LazyConnection({
 *   open: () => ({ closed: false }),
 *   close: (socket) => (socket.closed = true),
 *   isOpen: (socket) => !socket.closed,
 * });
 * const socket = await within(1000, (op) => connection.use(op));
 * console.log(socket.closed); // false
 * connection.close();
 * ```
 *
 * @module
 */
import type { Bound } from "./deadline.ts";

/** How to open and close one store's connection. */
export interface ConnectionHooks<C> {
  /** Opens (and logs in) a fresh connection. */
  open(): Promise<C> | C;
  /** Ends a connection at once, even one to a server that never answers. */
  close(connection: C): void;
  /** Whether a connection is still usable; always, when left out. */
  isOpen?(connection: C): boolean;
}

/**
 * A store's one connection, opened on first use. Callers that ask while it
 * opens share that attempt; a broken or dropped connection is never
 * reused, and the next caller opens a fresh one.
 */
export class LazyConnection<C> {
  readonly #hooks: ConnectionHooks<C>;
  #current?: C;
  #opening?: Promise<C>;

  /** @param hooks How to open and close a connection. */
  constructor(hooks: ConnectionHooks<C>) {
    this.#hooks = hooks;
  }

  /** The open connection, opening one first when there is none. */
  get(): Promise<C> {
    const current = this.#current;
    if (current !== undefined && (this.#hooks.isOpen?.(current) ?? true)) {
      return Promise.resolve(current);
    }
    if (!this.#opening) {
      const opening = Promise.resolve().then(() => this.#hooks.open()).then(
        (connection) => {
          if (this.#opening === opening) this.#current = connection;
          else this.#hooks.close(connection); // dropped while it opened
          return connection;
        },
      ).finally(() => {
        if (this.#opening === opening) this.#opening = undefined;
      });
      this.#opening = opening;
    }
    return this.#opening;
  }

  /**
   * The connection for operation `op`: if `op`'s deadline passes before it
   * ends, the connection it used (or the one still opening) is dropped.
   */
  async use(op: Bound): Promise<C> {
    const used: { connection?: C } = {};
    op.onExpire(() =>
      used.connection === undefined
        ? this.close()
        : this.discard(used.connection)
    );
    return used.connection = await this.get();
  }

  /** Drops `connection`; the next caller opens a fresh one. */
  discard(connection: C): void {
    if (this.#current === connection) this.#current = undefined;
    this.#hooks.close(connection);
  }

  /**
   * Detaches the current connection without closing it, for a caller that
   * ends it gently (store close); a connection still opening is dropped.
   */
  detach(): C | undefined {
    const current = this.#current;
    this.#current = undefined;
    // One still opening sees it is no longer wanted, and closes itself.
    this.#opening = undefined;
    return current;
  }

  /** Drops the connection at once, and one still opening. */
  close(): void {
    const current = this.detach();
    if (current !== undefined) this.#hooks.close(current);
  }
}
