/**
 * The lock of one resource: validation and defaults written once over any
 * backend, and the entry point that opens a lock from config.
 *
 * @module
 */
import { loadConfig, resolveLockSettings } from "./config.ts";
import type { ConfigSource, LockSettings } from "./config.ts";
import { parseTtl } from "./duration.ts";
import { assertLeaseId } from "./lease.ts";
import { assertPluginAllowed, pluginModuleOf } from "./plugin.ts";
import { sleep } from "./deadline.ts";
import { openBackend } from "./registry.ts";
import { LockHeldError, UsageError } from "./errors.ts";
import type { Backend, Lease } from "./types.ts";

/**
 * How {@linkcode Lock.acquire} waits for a held lock.
 *
 * @example Wait up to five minutes, saying who holds it
 * ```ts ignore
 * const lease = await lock.acquire("30m", {
 *   wait: "5m",
 *   onWait: (holder) => console.error(`waiting for ${holder.principal}`),
 * });
 * ```
 */
export interface AcquireOptions {
  /**
   * How long to wait for the lock, as seconds or text such as `"5m"`.
   * Without it, a held lock is refused at once.
   */
  wait?: Ttl;
  /** Called with the holder's lease each time the lock is found held. */
  onWait?: (holder: Lease) => void;
}

/** Reads a wait like a TTL, naming it as a wait in errors. */
function waitSeconds(wait: Ttl): number {
  try {
    return ttlSeconds(wait);
  } catch (error) {
    throw new UsageError(
      (error as Error).message.replace(/^Bad TTL/, "Bad wait time"),
    );
  }
}

/**
 * A TTL as seconds, or as text such as `"30m"`.
 * @example
 * ```ts
 * import type { Ttl } from "@stormlock/stormlock";
 * const ttls: Ttl[] = [1800, "30m", "1h30m"];
 * ```
 */
export type Ttl = number | string;

function ttlSeconds(ttl: Ttl): number {
  if (typeof ttl === "string") return parseTtl(ttl);
  // Numbers go through the same checks as text, so 0 or 1.5 are refused.
  return parseTtl(`${ttl}s`);
}

/**
 * One resource's lock on a backend, with the principal and TTL from
 * config. Lease ids and TTLs are validated before the backend is touched.
 *
 * @example
 * ```ts ignore
 * import { openLock } from "@stormlock/stormlock";
 * await using lock = await openLock("deploy-prod");
 * const lease = await lock.acquire();
 * // … the risky work …
 * await lock.release(lease.id);
 * ```
 */
export class Lock {
  /** The backend the lock lives in. */
  readonly backend: Backend;
  /** The resolved settings: resource, principal, TTL, backend. */
  readonly settings: LockSettings;

  /**
   * Wraps an open backend for one resource.
   *
   * @param backend An open backend; the lock closes it on {@linkcode close}.
   * @param settings The resource's resolved settings.
   */
  constructor(backend: Backend, settings: LockSettings) {
    this.backend = backend;
    this.settings = settings;
  }

  /** The resource this lock protects. */
  get resource(): string {
    return this.settings.resource;
  }

  /**
   * Takes the lock, waiting for it if `options.wait` allows.
   *
   * While waiting, it retries with a growing pause (at most 5 s, and never
   * much past the holder's expiry), so a lease that is released or expires
   * is taken soon after.
   *
   * @param ttl Overrides the configured TTL.
   * @param options How long to wait, and who hears about the wait.
   * @throws {LockHeldError} with the holder's lease when it is held (after
   * the wait, if any).
   * @throws {UsageError} on a bad TTL or wait.
   */
  async acquire(ttl?: Ttl, options: AcquireOptions = {}): Promise<Lease> {
    const seconds = ttl === undefined
      ? this.settings.ttlSeconds
      : ttlSeconds(ttl);
    const deadline = options.wait === undefined
      ? 0
      : Date.now() + waitSeconds(options.wait) * 1000;
    for (let pause = 200;; pause = Math.min(pause * 2, 5000)) {
      try {
        return await this.backend.acquire(
          this.resource,
          this.settings.principal,
          seconds,
        );
      } catch (error) {
        const left = deadline - Date.now();
        if (!(error instanceof LockHeldError) || left <= 0) throw error;
        options.onWait?.(error.holder);
        const untilExpiry = error.holder.expires.getTime() - Date.now() + 100;
        await sleep(Math.max(50, Math.min(pause, untilExpiry, left)));
      }
    }
  }

  /**
   * Ends a lease.
   * @throws {LeaseNotHeldError} when it is not the current lease.
   * @throws {UsageError} on a malformed lease id.
   */
  release(leaseId: string): Promise<void> {
    return this.backend.release(this.resource, assertLeaseId(leaseId));
  }

  /**
   * Sets a lease to expire `ttl` from now.
   * @param ttl The new TTL; defaults to the configured TTL.
   * @throws {LeaseNotHeldError} when it is not the current lease.
   * @throws {UsageError} on a malformed lease id or TTL.
   */
  renew(leaseId: string, ttl?: Ttl): Promise<Lease> {
    const id = assertLeaseId(leaseId);
    const seconds = ttl === undefined
      ? this.settings.ttlSeconds
      : ttlSeconds(ttl);
    return this.backend.renew(this.resource, id, seconds);
  }

  /** The live lease, or `null` when the resource is free. */
  current(): Promise<Lease | null> {
    return this.backend.current(this.resource);
  }

  /**
   * Whether `leaseId` is the live lease.
   * @throws {UsageError} on a malformed lease id.
   */
  isHeld(leaseId: string): Promise<boolean> {
    return this.backend.isHeld(this.resource, assertLeaseId(leaseId));
  }

  /**
   * Creates what the backend needs on its server (a table, say) if it is
   * missing.
   * @returns `false` when the backend needs no setup.
   */
  async init(): Promise<boolean> {
    if (!this.backend.init) return false;
    await this.backend.init();
    return true;
  }

  /** Closes the backend. */
  close(): Promise<void> {
    return this.backend.close();
  }

  /** Closes the backend at the end of an `await using` block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * How {@linkcode openLock} finds its config, and where warnings go.
 * @example
 * ```ts
 * import type { OpenLockOptions } from "@stormlock/stormlock";
 * const options: OpenLockOptions = {
 *   path: "./stormlock.cfg",
 *   warn: (message) => console.warn(message),
 * };
 * ```
 */
export interface OpenLockOptions extends ConfigSource {
  /**
   * Receives config warnings, such as unknown keys.
   * @default console.warn
   */
  warn?: (message: string) => void;
  /**
   * Whether a config may load `npm:` or `jsr:` plugin packages, which run
   * with all of the process's permissions.
   * @default false
   */
  allowPackagePlugins?: boolean;
}

/**
 * Opens a resource's lock as the config describes it: finds and reads the
 * config (or uses the embedded defaults), then loads the backend.
 *
 * @param resource The resource name.
 * @param options Where to find the config; defaults to the usual search.
 * @throws {ConfigError} on a missing or bad config, or an unknown backend.
 * @throws {BackendUnavailableError} when the backend cannot be reached.
 *
 * @example
 * ```ts ignore
 * import { openLock } from "@stormlock/stormlock";
 * await using lock = await openLock("deploy-prod", { path: "./stormlock.cfg" });
 * const lease = await lock.acquire("30m");
 * console.log(lease.id);
 * ```
 */
export async function openLock(
  resource: string,
  options: OpenLockOptions = {},
): Promise<Lock> {
  const config = loadConfig(options);
  const settings = resolveLockSettings(config, resource, options.env);
  const warn = options.warn ?? ((message: string) => console.warn(message));
  settings.warnings.forEach(warn);
  const plugin = pluginModuleOf(settings.backend, settings.backendOptions);
  if (plugin !== undefined) {
    assertPluginAllowed(plugin, config.path, {
      origin: config.origin,
      allowPackagePlugins: options.allowPackagePlugins,
    });
  }
  const backend = await openBackend(
    settings.backendOptions,
    settings.backendContext,
    warn,
  );
  return new Lock(backend, settings);
}
