/**
 * A store's one subscriber connection, fanning change events out to its
 * watchers. Stores that push changes (Redis `SUBSCRIBE`, PostgreSQL
 * `LISTEN`) open one connection per store on the first watch, subscribe to
 * a topic once however many watches want it, and unsubscribe when the
 * last of them ends. There is no reconnecting: once the connection drops,
 * its watches hear nothing more (their waiters poll), and the next watch
 * opens a new one. When an operation's deadline passes while it
 * subscribes, the connection is dropped: its state is unknown.
 *
 * @example
 * ```ts
 * import { Subscriber } from "./subscriber.ts";
 * import { within } from "./deadline.ts";
 * let deliver = (_key: string) => {};
 * const subscriber = new Subscriber({
 *   open: (onMessage) => (deliver = onMessage, {}),
 *   subscribe: () => Promise.resolve(),
 *   unsubscribe: () => Promise.resolve(),
 *   close: () => {},
 *   answered: () => false,
 *   closedError: () => new Error("the connection closed"),
 * });
 * const stop = new AbortController();
 * await within(1000, (op) =>
 *   subscriber.watch(
 *     { topic: "changes", keys: ["deploy"] },
 *     () => console.log("deploy changed"),
 *     stop.signal,
 *     op,
 *   ));
 * deliver("deploy"); // deploy changed
 * stop.abort();
 * await subscriber.close();
 * ```
 *
 * @module
 */
import type { Bound } from "./deadline.ts";

/** What a store's subscriber does on its connection. */
export interface SubscriberHooks<C> {
  /**
   * Opens the connection. It calls `onMessage` with the key of each change
   * it hears, and `onClose` (with the cause, when known) when it drops.
   */
  open(
    onMessage: (key: string) => void,
    onClose: (cause?: unknown) => void,
  ): Promise<C> | C;
  /** Starts hearing `topic`'s messages. */
  subscribe(connection: C, topic: string): Promise<unknown>;
  /** Stops hearing them. A failure drops the connection. */
  unsubscribe(connection: C, topic: string): Promise<unknown>;
  /** Ends the connection, waiting up to `graceSeconds` for a goodbye. */
  close(connection: C, graceSeconds: number): Promise<void> | void;
  /**
   * Whether a failure is the server's answer, leaving the connection
   * usable; any other failure drops it.
   */
  answered(error: unknown): boolean;
  /** The error for a watch whose connection dropped as it subscribed. */
  closedError(): Error;
}

/** What one watch listens for. */
export interface Subscription {
  /** The topic (channel) to subscribe to. */
  topic: string;
  /** The message keys that mean a change for this watch. */
  keys: readonly string[];
}

/** One connection's life: its topics and its watches by message key. */
interface Line<C> {
  ready: Promise<C>;
  connection?: C;
  /** Per topic: its watches, and the subscribe that serves them. */
  topics: Map<string, { count: number; subscribed?: Promise<unknown> }>;
  watches: Map<string, Set<() => void>>;
  /** Why it dropped, when known. */
  cause?: unknown;
  dead: boolean;
}

/** One store's subscriber connection, shared by every watch of the store. */
export class Subscriber<C> {
  readonly #hooks: SubscriberHooks<C>;
  #line?: Line<C>;

  /** @param hooks How to connect, subscribe and tell failures apart. */
  constructor(hooks: SubscriberHooks<C>) {
    this.#hooks = hooks;
  }

  /** The live connection, opening one when needed. */
  #live(): Line<C> {
    const live = this.#line;
    if (live && !live.dead) return live;
    // Its ready promise is set just below.
    const line = {
      topics: new Map(),
      watches: new Map(),
      dead: false,
    } as unknown as Line<C>;
    const onMessage = (key: string) => {
      for (const watch of line.watches.get(key) ?? []) {
        try {
          watch();
        } catch { /* a watcher's failure is its own */ }
      }
    };
    const onClose = (cause?: unknown) => {
      line.cause ??= cause;
      this.#drop(line);
    };
    line.ready = Promise.resolve()
      .then(() => this.#hooks.open(onMessage, onClose))
      .then((connection) => {
        line.connection = connection;
        if (line.dead) {
          // Dropped while it connected.
          this.#hooks.close(connection, 0);
          throw line.cause ?? this.#hooks.closedError();
        }
        return connection;
      }, (error) => {
        line.cause ??= error;
        this.#drop(line);
        throw error;
      });
    this.#line = line;
    return line;
  }

  /** Ends a connection at once (or within `grace` s); its watches go quiet. */
  #drop(line: Line<C> | undefined, grace = 0): Promise<void> {
    if (!line) return Promise.resolve();
    if (this.#line === line) this.#line = undefined;
    if (line.dead) return Promise.resolve();
    line.dead = true;
    line.topics.clear();
    line.watches.clear();
    line.ready.catch(() => {});
    if (line.connection === undefined) return Promise.resolve();
    return Promise.resolve(this.#hooks.close(line.connection, grace))
      .catch(() => {});
  }

  /**
   * Calls `onChange` on each message with one of `subscription.keys`,
   * until `signal` aborts. Resolves once the subscription is in place.
   *
   * @throws what the connection or the subscribe failed with.
   */
  async watch(
    subscription: Subscription,
    onChange: () => void,
    signal: AbortSignal,
    op: Bound,
  ): Promise<void> {
    if (signal.aborted) return;
    const { topic, keys } = subscription;
    const line = this.#live();
    let settled = false;
    op.onExpire(() => {
      if (!settled) this.#drop(line);
    });
    // Its own function, so the same onChange may watch twice.
    const watch = () => onChange();
    for (const key of keys) {
      const watches = line.watches.get(key) ?? new Set();
      line.watches.set(key, watches.add(watch));
    }
    let entry = line.topics.get(topic);
    if (!entry) line.topics.set(topic, entry = { count: 0 });
    entry.count++;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      for (const key of keys) {
        const watches = line.watches.get(key);
        watches?.delete(watch);
        if (watches?.size === 0) line.watches.delete(key);
      }
      if (--entry.count > 0 || line.dead) return;
      if (line.topics.get(topic) === entry) line.topics.delete(topic);
      if (entry.subscribed && line.connection !== undefined) {
        this.#hooks.unsubscribe(line.connection, topic).catch(() =>
          this.#drop(line)
        );
      }
    };
    signal.addEventListener("abort", leave, { once: true });
    try {
      const connection = await line.ready;
      if (signal.aborted) return;
      const subscribed = entry.subscribed ??= this.#hooks.subscribe(
        connection,
        topic,
      );
      try {
        await subscribed;
      } catch (error) {
        if (entry.subscribed === subscribed) entry.subscribed = undefined;
        throw error;
      }
      if (line.dead) {
        // Dropped as it subscribed: this watch would hear nothing.
        throw line.cause ?? this.#hooks.closedError();
      }
    } catch (error) {
      // A connection that failed is dropped before leaving, which would
      // unsubscribe on it.
      if (!this.#hooks.answered(error)) this.#drop(line);
      signal.removeEventListener("abort", leave);
      leave();
      throw line.dead && line.cause !== undefined ? line.cause : error;
    } finally {
      settled = true;
    }
  }

  /** Ends the connection, waiting up to `graceSeconds` for a goodbye. */
  close(graceSeconds = 0): Promise<void> {
    return this.#drop(this.#line, graceSeconds);
  }
}
