/**
 * The author's contract: what a backend author implements and declares.
 * A backend gives its option schema, its capabilities, how to open its
 * store, the store's primitives, and a classifier for its own client's
 * failures; the kit writes the frame around every operation once
 * ({@link ./frame.ts}).
 *
 * @module
 */
import type {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "./errors.ts";
import type { Bound } from "./deadline.ts";
import type { OptionSchema, OptionSpec, SettingsOf } from "./options.ts";
import type {
  AcquireDetails,
  Backend,
  BackendContext,
  BackendOptions,
  Breaker,
  Capabilities,
  Lease,
  LeaseEvent,
} from "./types.ts";

/**
 * What each primitive gets besides its arguments: a signal aborted when
 * the operation's deadline passes, and the deadline itself.
 *
 * @example
 * ```ts ignore
 * const reply = await fetch(url, { signal: op.signal });
 * ```
 */
export interface Operation extends Bound {
  /**
   * Set when `resource` is a waiter's registration in a lock's waiting
   * queue: the lock it waits for. A store with the `queue` capability
   * keeps registrations where that lock's acquire sees them; others
   * ignore it. The queue's naming is its own: a store reads this, never
   * the name.
   */
  readonly waitsFor?: string;
}

/**
 * A request for a new lease. The kit makes the id, so it is known even
 * when the store's answer is lost.
 *
 * @example
 * ```ts
 * import type { AcquireRequest } from "./contract.ts";
 * const request: AcquireRequest = {
 *   resource: "deploy", id: "0".repeat(32), principal: "ann@host", ttlSeconds: 60,
 * };
 * ```
 */
export interface AcquireRequest extends AcquireDetails {
  /** The resource to lock. */
  resource: string;
  /** The new lease's id. */
  id: string;
  /** Who takes it. */
  principal: string;
  /** Its TTL in whole seconds. */
  ttlSeconds: number;
}

/**
 * How a lease ends through {@linkcode Store.end}: released by its holder,
 * or broken by someone else (`by`), which history records as `broken`.
 *
 * @example
 * ```ts
 * import type { Ending } from "./contract.ts";
 * const ending: Ending = { kind: "broken", by: { principal: "ops", reason: "stuck" } };
 * ```
 */
export type Ending =
  | { readonly kind: "released"; readonly by?: undefined }
  | { readonly kind: "broken"; readonly by: Breaker };

/**
 * A backend's store, as its `open` returns it: the primitives only. Each
 * is atomic on the store and touches only the lease it names.
 *
 * @example A store that keeps leases in memory (one process only)
 * ```ts ignore
 * const store: Store = {
 *   label: "memory",
 *   acquire(request) { … },
 *   end(resource, id, ending) { … },
 *   renew(resource, id, ttlSeconds) { … },
 *   current(resource) { … },
 *   close() {},
 * };
 * ```
 */
export interface Store {
  /** How messages name the store, e.g. `Redis at 127.0.0.1:6379`. */
  readonly label: string;
  /**
   * Takes the lock if it is free or its lease expired, as `request.id`.
   * @throws {LockHeldError} with the holder's lease when it is held.
   */
  acquire(request: AcquireRequest, op: Operation): Promise<Lease> | Lease;
  /**
   * Ends the live lease `leaseId` in one compare-and-delete, recording
   * `ending.kind`: `released` by its holder, or `broken` by `ending.by`.
   * The kit makes both `release` and `breakLease` of it. Returns the
   * ended lease; a release may return nothing.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease | void> | Lease | void;
  /**
   * Extends the live lease `leaseId`, keeping its fence; changes its
   * reason when `change.reason` is given.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> | Lease;
  /** The live lease, or `null`. */
  current(
    resource: string,
    op: Operation,
  ): Promise<Lease | null> | Lease | null;
  /** Optional: faster than `current` where the store can do better. */
  isHeld?(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> | boolean;
  /** With the `list` capability: live leases under `prefix`. */
  list?(prefix: string, op: Operation): Promise<Lease[]> | Lease[];
  /** With the `history` capability: events, newest first. */
  history?(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> | LeaseEvent[];
  /**
   * Optional: ends the lease `leaseId` only if its TTL has passed,
   * recording `expired` with the lease's expiry as its time, in one atomic
   * step. Returns whether it ended it; a renewed or vanished lease is left
   * alone and gives `false`.
   */
  expire?(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> | boolean;
  /**
   * Optional, with the `history` capability: the resources under `prefix`
   * with an event at or after `sinceMs` (epoch ms), in any order.
   */
  recentResources?(
    prefix: string,
    sinceMs: number,
    op: Operation,
  ): Promise<string[]> | string[];
  /**
   * With the `events` capability: subscribes to changes of the resource's
   * lock, calling `onChange` soon after it is released, broken or taken.
   * Resolves once the subscription is in place (within `op`'s deadline);
   * the subscription lasts until `signal` aborts. Expiry needs no event:
   * waiters also wake at the holder's expiry.
   */
  watch?(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void>;
  /** With the `init` capability: creates tables and the like. */
  init?(op: Operation): Promise<void> | void;
  /**
   * Optional, run by `init`: what is wrong with the server's own settings
   * for Stormlock (such as a Redis that evicts keys), one warning each.
   */
  checkSetup?(op: Operation): Promise<string[]> | string[];
  /** Closes connections; may be synchronous. */
  close(): void | Promise<void>;
}

/**
 * What a classifier makes of a client failure: a Stormlock error as it
 * is, `"timeout"` for the kit's one timeout wording, or text that the kit
 * puts after the store's label. `missing` says the store's table (or its
 * shape) is missing: where {@linkcode BackendDefinition.createMissing}
 * allows, the kit runs the store's `init` and retries the operation once;
 * else it is a config error with this text.
 *
 * @example
 * ```ts
 * import type { Classified } from "./contract.ts";
 * const refused: Classified = { unavailable: "refused the credentials; check the password" };
 * ```
 */
export type Classified =
  | StormlockError
  | "timeout"
  | { unavailable: string }
  | { config: string }
  | { missing: string };

/**
 * What the classifier is told about the failed operation.
 * @example
 * ```ts
 * import type { FailedOperation } from "./contract.ts";
 * const failed: FailedOperation = { action: "acquire", resource: "deploy", label: "Redis at 127.0.0.1:6379" };
 * ```
 */
export interface FailedOperation {
  /** `open`, `acquire`, `release`, `renew`, `read`, `list`, … */
  action: string;
  /** The resource, when the operation has one. */
  resource?: string;
  /** The store's label (the backend's name before it opened). */
  label: string;
}

/**
 * What `open` gets besides the settings: where the options came from, and
 * tools so that a plugin needs no imports.
 *
 * @example
 * ```ts ignore
 * export const backend = {
 *   open(settings, context) {
 *     const file = context.resolvePath(settings.path);
 *     …
 *   },
 * };
 * ```
 */
export interface KitContext extends BackendContext {
  /** Stormlock's error classes, for a plugin to throw. */
  errors: {
    LockHeldError: typeof LockHeldError;
    LeaseNotHeldError: typeof LeaseNotHeldError;
    BackendUnavailableError: typeof BackendUnavailableError;
    ConfigError: typeof ConfigError;
    UsageError: typeof UsageError;
  };
  /** Makes a lease id (128 random bits). */
  newLeaseId(): string;
  /** Resolves a path against the config file's folder. */
  resolvePath(path: string): string;
  /** A config error naming the file, section and `key`. */
  optionError(key: string, why: string): ConfigError;
  /**
   * Checks a record read from the store and makes it a lease; a record
   * Stormlock did not write is rejected the same way on every backend.
   */
  leaseFromRecord(resource: string, record: LeaseRecord): Lease;
  /** Stormlock's version. */
  version: string;
}

/**
 * A lease as a store keeps it. Times may be `Date`s, epoch milliseconds
 * (as numbers or digit strings), or ISO 8601 text.
 *
 * @example
 * ```ts
 * import type { LeaseRecord } from "./contract.ts";
 * const record: LeaseRecord = { id: "0".repeat(32), principal: "ann@host", created: "1700000000000", expires: 1700000060000 };
 * ```
 */
export interface LeaseRecord {
  /** The lease id. */
  id: unknown;
  /** Who holds it. */
  principal: unknown;
  /** The holder's host. */
  host?: unknown;
  /** Why. */
  reason?: unknown;
  /** A link. */
  link?: unknown;
  /** The fencing token; absent on leases written by Stormlock 0.1. */
  fence?: unknown;
  /** When it was taken. */
  created: unknown;
  /** When it expires. */
  expires: unknown;
}

/**
 * Settings every backend with the `history` capability also gets.
 * @example
 * ```ts
 * import type { HistorySettings } from "./contract.ts";
 * const settings: HistorySettings = { history: 1000, history_age: 30 * 86400 };
 * ```
 */
export interface HistorySettings {
  /** Events kept per resource. */
  history: number;
  /** Seconds an event is kept. */
  history_age: number;
}

/**
 * A backend, declared once: its options, capabilities, how to open its
 * store, and how to read its client's failures.
 *
 * @example
 * ```ts ignore
 * export const backend = defineBackend({
 *   name: "memory",
 *   options: { timeout: { kind: "duration", default: "1s", doc: "Bound on each operation" } },
 *   capabilities: { clock: "host" },
 *   open: (settings, context) => new MemoryStore(settings.timeout),
 * });
 * ```
 */
export interface BackendDefinition<
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
> {
  /** The backend's kind, for messages: `redis`, `json-file`. */
  name: string;
  /**
   * Its `[backend.NAME]` options. A `timeout` duration bounds every
   * operation.
   */
  options: O;
  /** Pairs of options that must both be set, or neither. */
  together?: readonly (readonly [string, string])[];
  /** What it supports; unnamed capabilities are off. */
  capabilities: Partial<Capabilities> & Pick<Capabilities, "clock">;
  /** How messages name the store before it opens, from its settings. */
  label?(settings: SettingsOf<O> & HistorySettings): string;
  /** Opens the store; it may connect lazily. */
  open(
    settings: SettingsOf<O> & HistorySettings,
    context: KitContext,
  ): Store | Promise<Store>;
  /**
   * With the `init` capability: whether the settings allow creating what
   * is missing on first use (such as a `create_table` option). Then a
   * failure classified `missing` runs the store's `init` and retries the
   * operation once, within its deadline.
   */
  createMissing?(settings: SettingsOf<O> & HistorySettings): boolean;
  /** Reads the client's own failures; the kit handles the rest. */
  classify?(error: unknown, failed: FailedOperation): Classified | undefined;
}

/**
 * A defined backend: its declaration, the option names, and the factory
 * that builds a framed {@linkcode Backend}.
 *
 * @example
 * ```ts ignore
 * const backend = await definition.createBackend({ path: "/tmp/x" }, context);
 * ```
 */
export interface DefinedBackend extends BackendDefinition {
  /** Every option name the backend reads. */
  readonly optionNames: readonly string[];
  /** The schema the options are parsed by. */
  readonly schema: OptionSchema;
  /** Parses the options, opens the store, and frames it. */
  createBackend(
    options: BackendOptions,
    context: BackendContext,
    how?: CreateOptions,
  ): Promise<Backend>;
}

/**
 * How {@linkcode DefinedBackend.createBackend} reports and names things.
 * @example
 * ```ts
 * import type { CreateOptions } from "./contract.ts";
 * const how: CreateOptions = { plugin: "module ./mine.js", warn: console.warn };
 * ```
 */
export interface CreateOptions {
  /** Set for a plugin: how messages name it, e.g. `module ./mine.js`. */
  plugin?: string;
  /** Receives warnings such as unknown keys. */
  warn?: (message: string) => void;
}
