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
  /** When the lease was acquired. */
  created: Date;
  /** When the lease expires unless renewed. */
  expires: Date;
}

/**
 * A lock store. Backends implement only non-blocking primitives; every
 * operation is atomic on the store and touches only the lease it is given.
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
  /**
   * Takes the lock if it is free or its lease expired.
   * @throws {LockHeldError} with the holder's lease when it is held.
   */
  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease>;
  /**
   * Ends the lease if it is the current one.
   * @throws {LeaseNotHeldError} when it is not; nothing is changed.
   */
  release(resource: string, leaseId: string): Promise<void>;
  /**
   * Sets the lease to expire `ttlSeconds` from now, if it is current.
   * @throws {LeaseNotHeldError} when it is not; nothing is changed.
   */
  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease>;
  /** The live lease on the resource, or `null` when it is free. */
  current(resource: string): Promise<Lease | null>;
  /** Whether `leaseId` is the live lease on the resource. */
  isHeld(resource: string, leaseId: string): Promise<boolean>;
  /** Releases connections. The backend is unusable afterwards. */
  close(): Promise<void>;
  /**
   * Creates what the backend needs on the server (a table, say), if it is
   * missing. Idempotent. Backends that need nothing omit it.
   */
  init?(): Promise<void>;
}

/**
 * Options of one backend, as read from its `[backend.NAME]` section.
 * Values are strings; each backend parses and validates its own.
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

/**
 * What a backend module exports, built-in or plugin: a factory that
 * returns a ready {@linkcode Backend}.
 *
 * @example A plugin module
 * ```ts ignore
 * export function createBackend(options, context) {
 *   return new MyBackend(options.path);
 * }
 * ```
 */
export interface BackendModule {
  /** Builds a backend from its options. May connect lazily. */
  createBackend(
    options: BackendOptions,
    context: BackendContext,
  ): Backend | Promise<Backend>;
  /** The option names the backend reads; others get a warning. */
  optionNames?: readonly string[];
}
