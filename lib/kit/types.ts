/**
 * The types every backend and caller share.
 *
 * @module
 */

/**
 * A held lease on a resource's lock.
 *
 * @example
 * ```ts
 * import type { Lease } from "@stormlock/stormlock";
 * const lease: Lease = {
 *   resource: "deploy-prod",
 *   id: "9f1c2e0b7a6d4c3e8f5a1b2c3d4e5f60",
 *   principal: "ann@build-1",
 *   host: "build-1",
 *   reason: "release 4.2",
 *   fence: 7,
 *   created: new Date(),
 *   expires: new Date(Date.now() + 3_600_000),
 * };
 * ```
 */
export interface Lease {
  /** The resource the lock protects. */
  resource: string;
  /** The lease id: 32 lowercase hex digits (128 random bits). */
  id: string;
  /** Who holds the lease. */
  principal: string;
  /** The host the lease was taken from, when known. */
  host?: string;
  /** Why the lock is held, as its holder said. */
  reason?: string;
  /** A link for more: a CI run, a ticket. */
  link?: string;
  /**
   * The fencing token: strictly increases with every new lease on the
   * resource, and is never reused. `0` when the store keeps none (a lease
   * taken by Stormlock 0.1, or a backend without fencing).
   */
  fence: number;
  /** When the lease was acquired. */
  created: Date;
  /** When the lease expires unless renewed. */
  expires: Date;
  /**
   * How many holders the lock admits, as its first holder set it: absent
   * (or `1`) for an exclusive lock, N for N slots, `0` for shared holds
   * with no limit. Every live holder of a lock carries the same value.
   */
  limit?: number;
}

/**
 * What is recorded with a new lease beside its principal.
 * @example
 * ```ts
 * import type { LeaseDetails } from "@stormlock/stormlock";
 * const details: LeaseDetails = { host: "build-1", reason: "deploy", link: "https://ci.example/1" };
 * ```
 */
export interface LeaseDetails {
  /** The host taking the lease. */
  host?: string;
  /** Why the lock is taken. */
  reason?: string;
  /** A link for more. */
  link?: string;
  /**
   * The new lease's id, when the caller must know it before the answer
   * (the `http` backend makes it, so that a lost answer or a retry on
   * another server still names the right lease). 32 lowercase hex digits;
   * by default the kit makes one.
   */
  id?: string;
}

/**
 * What an acquire may carry beyond the lease's details.
 * @example
 * ```ts
 * import type { AcquireDetails } from "@stormlock/stormlock";
 * const details: AcquireDetails = { reason: "deploy", waiters: "deploy\u001fwait\u001f" };
 * ```
 */
export interface AcquireDetails extends LeaseDetails {
  /**
   * The prefix of the lock's waiter registrations. A backend with the
   * `queue` capability then takes nothing while the lock is free but a
   * live lease under this prefix exists, and throws `LockHeldError` with
   * `queued` set, naming the first one (as a lease of this resource), in
   * the same atomic step as the acquire. Others ignore it.
   */
  waiters?: string;
  /**
   * How many holders the lock may have at once (see `lib/kit/holders.ts`):
   * absent or `1` exclusive, N slots, `0` shared. Anything but 1 needs the
   * `holders` capability.
   */
  limit?: number;
}

/**
 * Who broke a lease, and why; recorded in history.
 * @example
 * ```ts
 * import type { Breaker } from "@stormlock/stormlock";
 * const by: Breaker = { principal: "bob@ops", host: "ops", reason: "job died" };
 * ```
 */
export interface Breaker {
  /** The breaker's principal. */
  principal: string;
  /** The breaker's host. */
  host?: string;
  /** Why the lease was broken. Required. */
  reason: string;
}

/**
 * What happened to a lease, as history records it.
 * @example
 * ```ts
 * import type { LeaseEventKind } from "@stormlock/stormlock";
 * const kind: LeaseEventKind = "broken";
 * ```
 */
export type LeaseEventKind =
  | "acquired"
  | "renewed"
  | "released"
  | "reason-changed"
  | "expired"
  | "broken";

/**
 * One event in a resource's history: the lease as it was, what happened
 * and when.
 * @example
 * ```ts
 * import type { LeaseEvent } from "@stormlock/stormlock";
 * const now = new Date();
 * const event: LeaseEvent = {
 *   kind: "acquired", at: now, resource: "deploy", id: "0".repeat(32),
 *   principal: "ann@host", fence: 1, created: now, expires: now,
 * };
 * ```
 */
export interface LeaseEvent extends Lease {
  /** What happened. */
  kind: LeaseEventKind;
  /** When it happened, by the store's clock where it has one. */
  at: Date;
  /** For `broken`: who broke the lease, and why. */
  by?: Breaker;
}

/**
 * What a backend supports beyond the five basic operations.
 * @example
 * ```ts
 * import type { Capabilities } from "@stormlock/stormlock";
 * const caps: Capabilities = { clock: "server", init: true, list: true, history: true, fencing: true, events: false, queue: false };
 * ```
 */
export interface Capabilities {
  /** Whose clock decides expiry: the store's server, or each client host. */
  clock: "server" | "host";
  /** Whether `init` creates something (a table, say). */
  init: boolean;
  /** Whether `list` can enumerate live locks. */
  list: boolean;
  /** Whether events are recorded, and `history` reads them. */
  history: boolean;
  /** Whether leases carry fencing tokens. */
  fencing: boolean;
  /** Whether the store can announce changes to waiters. */
  events: boolean;
  /**
   * Whether acquire honours `AcquireDetails.waiters` in its own atomic
   * step, so a plain acquire pays no queue read when nobody waits.
   */
  queue: boolean;
  /**
   * Whether a lock can have more than one live holder: slots and shared
   * holds (`AcquireDetails.limit`, `Store.holders`). Without it every lock
   * is exclusive.
   */
  holders?: boolean;
  /**
   * Whether the store names the principal itself from authentication (a
   * lock server), so the principal a caller passes is not what is
   * recorded, and it refuses other principals' releases on its own.
   */
  authenticated?: boolean;
}

/**
 * The name of one capability that can be asked for.
 * @example
 * ```ts
 * import type { Capability } from "@stormlock/stormlock";
 * const wanted: Capability = "list";
 * ```
 */
export type Capability = Exclude<keyof Capabilities, "clock">;

/**
 * A lock store, as callers use it. Every built-in and plugin backend is
 * given this shape by the backend kit, which writes once the frame around
 * each operation: the closed check, the deadline, error translation.
 *
 * TTLs are whole seconds. Lease ids reaching a backend are already
 * validated by the library, so a backend never sees a malformed one.
 *
 * @example A backend is used through the library, but can be called directly
 * ```ts ignore
 * const lease = await backend.acquire("deploy", "ann@host", 3600);
 * await backend.release("deploy", lease.id);
 * await backend.close();
 * ```
 */
export interface Backend {
  /** The backend's name as configured, e.g. `redis`. */
  readonly name: string;
  /** What it supports. */
  readonly capabilities: Capabilities;
  /**
   * The store for people, with no secrets: `SQLite database /path`,
   * `Redis at host:port`. Absent on backends that don't say.
   */
  readonly label?: string;
  /**
   * Takes the lock if it is free or its lease expired.
   * @throws {LockHeldError} with the holder's lease when it is held.
   */
  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
    details?: AcquireDetails,
  ): Promise<Lease>;
  /**
   * Ends the lease if it is the current one.
   * @throws {LeaseNotHeldError} when it is not; nothing is changed.
   */
  release(resource: string, leaseId: string): Promise<void>;
  /**
   * Sets the lease to expire `ttlSeconds` from now, if it is current, and
   * changes its reason when one is given.
   * @throws {LeaseNotHeldError} when it is not; nothing is changed.
   */
  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    change?: { reason?: string },
  ): Promise<Lease>;
  /**
   * The live lease on the resource, or `null` when it is free. With more
   * than one holder, the first of {@linkcode Backend.holders}.
   */
  current(resource: string): Promise<Lease | null>;
  /**
   * Every live holder of the resource's lock, first taken (lowest fence)
   * first; empty when it is free. One at most without the `holders`
   * capability. Optional so older implementations still type-check; the
   * kit's frame always has it.
   */
  holders?(resource: string): Promise<Lease[]>;
  /** Whether `leaseId` is a live lease (holder) on the resource. */
  isHeld(resource: string, leaseId: string): Promise<boolean>;
  /**
   * Every live lease whose resource starts with `prefix`, sorted by
   * resource. Stormlock's own bookkeeping (waiter registrations) is left
   * out unless `options.internal` is set.
   * @throws {ConfigError} when the backend lacks the `list` capability.
   */
  list(prefix?: string, options?: { internal?: boolean }): Promise<Lease[]>;
  /**
   * The resource's events, newest first, at most `limit`.
   * @throws {ConfigError} when the backend lacks the `history` capability.
   */
  history(resource: string, limit?: number): Promise<LeaseEvent[]>;
  /**
   * Ends someone else's lease: a compare-and-delete on `leaseId`, recorded
   * with the breaker. Returns the lease that was broken.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  breakLease(resource: string, leaseId: string, by: Breaker): Promise<Lease>;
  /**
   * Ends the lease `leaseId` if its TTL has passed, recording `expired` at
   * its expiry: a compare-and-delete on the id and the expiry, so a lease
   * renewed in time is never ended. Watchers use it so that an expiry is
   * recorded even when nobody acquires the lock afterwards.
   * @returns Whether this call ended it; `false` when it is gone, renewed,
   * not yet expired, or the store can't end it this way.
   */
  expire?(resource: string, leaseId: string): Promise<boolean>;
  /**
   * The resources under `prefix` with an event recorded at or after
   * `since`, so a watcher finds a lock taken and freed between two looks.
   * @returns `undefined` when the store can't tell.
   */
  recentResources?(prefix: string, since: Date): Promise<string[] | undefined>;
  /**
   * Calls `onChange` soon after the resource's lock is released, broken or
   * taken, until `signal` aborts; resolves once subscribed. Waiters use it
   * to wake at once instead of at their next poll.
   * @throws {ConfigError} when the backend lacks the `events` capability.
   */
  watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
  ): Promise<void>;
  /**
   * Creates what the backend needs on the server, if it is missing, after
   * checking the server answers. Idempotent.
   * @returns `false` when the backend needs no setup.
   */
  init(): Promise<boolean>;
  /** Releases connections. The backend is unusable afterwards. */
  close(): Promise<void>;
}

/**
 * Options of one backend, as read from its `[backend.NAME]` section.
 * Values are strings; the backend's option schema parses them.
 * @example
 * ```ts
 * import type { BackendOptions } from "@stormlock/stormlock";
 * const options: BackendOptions = { url: "redis://127.0.0.1:6379", timeout: "3s" };
 * ```
 */
export type BackendOptions = Record<string, string>;

/**
 * Where a backend's options came from, so it can resolve relative paths
 * and name the config section in errors.
 * @example
 * ```ts
 * import type { BackendContext } from "@stormlock/stormlock";
 * const context: BackendContext = {
 *   name: "redis",
 *   section: "backend.redis",
 *   configPath: "/etc/stormlock.cfg",
 *   configDir: "/etc",
 * };
 * ```
 */
export interface BackendContext {
  /** The backend's name as configured, e.g. `redis`. */
  name: string;
  /** The config section the options came from, e.g. `backend.redis`. */
  section: string;
  /** The config file, if one was read. */
  configPath?: string;
  /** The config file's folder, against which relative paths resolve. */
  configDir?: string;
}
