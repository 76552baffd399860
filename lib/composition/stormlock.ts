/**
 * The handle on the whole configured store: every backend the config
 * uses, opened on first use and closed together, and the entry points
 * that open it ({@linkcode openStormlock}) or one lock ({@linkcode openLock}).
 *
 * @module
 */
import {
  backendSettings,
  backendsInUse,
  configWarnings,
  DEFAULT_BACKEND,
  loadConfig,
  resolveLockSettings,
} from "./config.ts";
import type { Config, ConfigSource } from "./config.ts";
import { assertPluginAllowed, pluginModuleOf } from "./plugin.ts";
import { openBackend } from "./registry.ts";
import { BackendUnavailableError } from "../kit/errors.ts";
import { splitQueue } from "./queue.ts";
import { parseRequestName } from "./events.ts";
import type { Backend, Lease } from "../kit/types.ts";
import { Lock } from "./lock.ts";
import { freezeGuard } from "./freeze.ts";
import { HierarchyLock, hierarchyOf } from "./hierarchy.ts";
import { LockSet, openLockSet } from "./lockset.ts";

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
 * A live lease as `list` reports it, naming its backend.
 * @example
 * ```ts
 * import type { ListedLease } from "@stormlock/stormlock";
 * const now = new Date();
 * const row: ListedLease = { backend: "sqlite", resource: "x", id: "0".repeat(32), principal: "ann", fence: 1, created: now, expires: now, waiting: [], request: null };
 * ```
 */
export interface ListedLease extends Lease {
  /** The backend the lease lives in. */
  backend: string;
  /** Who waits for the lock, first come first. */
  waiting: Lease[];
  /** The open hand-over request, or `null`. */
  request: Lease | null;
}

/**
 * How {@linkcode Stormlock.list} treats a backend that is down.
 * @example
 * ```ts ignore
 * import { openStormlock, type ListOptions } from "@stormlock/stormlock";
 * const options: ListOptions = { onUnavailable: (name) => console.warn(`${name} is down`) };
 * await using locks = await openStormlock();
 * await locks.list("", options);
 * ```
 */
export interface ListOptions {
  /**
   * Called for each backend that can't be reached; the others are still
   * listed. Without it, the first such backend ends the list with its
   * error. When every backend is down, the last error is thrown anyway.
   */
  onUnavailable?: (backend: string, error: BackendUnavailableError) => void;
}

/**
 * A handle on the whole configured store: every backend the config uses,
 * opened on first use and closed together.
 *
 * @example
 * ```ts ignore
 * import { openStormlock } from "@stormlock/stormlock";
 * await using locks = await openStormlock();
 * const lock = await locks.lock("deploy");
 * for (const lease of await locks.list()) console.log(lease.resource);
 * ```
 */
export class Stormlock {
  /** The config in use. */
  readonly config: Config;
  readonly #options: OpenLockOptions;
  readonly #backends = new Map<string, Promise<Backend>>();
  readonly #warned = new Set<string>();

  /**
   * Wraps a loaded config; {@linkcode openStormlock} is the usual way.
   *
   * @param config The loaded config.
   * @param options Warnings and plugin policy.
   */
  constructor(config: Config, options: OpenLockOptions = {}) {
    this.config = config;
    this.#options = options;
    // Config-search warnings concern every command, not only lock ones.
    for (const message of config.warnings ?? []) this.#warn(message);
    for (const message of configWarnings(config)) this.#warn(message);
  }

  #warn(message: string): void {
    if (this.#warned.has(message)) return;
    this.#warned.add(message);
    (this.#options.warn ?? ((text: string) => console.warn(text)))(message);
  }

  /**
   * The backend called `name` in the config, opened once.
   * @throws {ConfigError} on a bad config or a refused plugin.
   */
  backend(name: string): Promise<Backend> {
    let opening = this.#backends.get(name);
    if (!opening) {
      const { backendOptions, backendContext } = backendSettings(
        this.config,
        name,
      );
      const plugin = pluginModuleOf(name, backendOptions);
      if (plugin !== undefined) {
        assertPluginAllowed(plugin, this.config.path, {
          origin: this.config.origin,
          allowPackagePlugins: this.#options.allowPackagePlugins,
        });
      }
      opening = openBackend(
        backendOptions,
        backendContext,
        (message) => this.#warn(message),
      );
      // A failed open is not cached: the next call tries again.
      opening.catch(() => this.#backends.delete(name));
      this.#backends.set(name, opening);
    }
    return opening;
  }

  /**
   * The lock of one resource, on the backend its config names.
   * @throws {UsageError} on an empty resource name.
   * @throws {ConfigError} on a bad config.
   */
  async lock(resource: string): Promise<Lock> {
    const separator = hierarchyOf(this.config);
    const lock = await this.#plainLock(resource);
    if (separator === undefined) return lock;
    return await this.#withIntents([lock], separator);
  }

  /**
   * The lock set of `resources` (all or none, under one lease id); with
   * `hierarchy =`, with every member's intention holds in one set.
   * @throws {UsageError} on fewer than two or a repeated name.
   * @throws {ConfigError} on a bad config.
   */
  async lockSet(resources: string[]): Promise<Lock> {
    const separator = hierarchyOf(this.config);
    if (separator === undefined) return await openLockSet(this, resources);
    const plain: Lock[] = [];
    for (const resource of resources) {
      plain.push(await this.#plainLock(resource));
    }
    // Checked as LockSet checks it, before the intentions are added.
    if (plain.length < 2) return await openLockSet(this, resources);
    return await this.#withIntents(
      new LockSet(plain).members,
      separator,
    );
  }

  /** `locks` with their intention holds, on `[default]`'s backend. */
  async #withIntents(locks: Lock[], separator: string): Promise<Lock> {
    const name = this.config.sections.default?.backend?.trim() ||
      DEFAULT_BACKEND;
    return new HierarchyLock(
      locks,
      await this.backend(name),
      name,
      separator,
    );
  }

  async #plainLock(resource: string): Promise<Lock> {
    const settings = resolveLockSettings(
      this.config,
      resource,
      this.#options.env,
    );
    settings.warnings.forEach((message) => this.#warn(message));
    const lock = new Lock(await this.backend(settings.backend), settings);
    lock.guard = freezeGuard(this);
    return lock;
  }

  /**
   * Every live lease whose resource starts with `prefix`, on every backend
   * the config uses, sorted by backend and resource.
   * @param prefix The start of the names to list.
   * @param options What to do when one backend is down.
   * @throws {ConfigError} when a backend can't list.
   * @throws {BackendUnavailableError} when a backend is down, or, with
   * `onUnavailable`, when every one is.
   */
  async list(
    prefix = "",
    options: ListOptions = {},
  ): Promise<ListedLease[]> {
    const rows: ListedLease[] = [];
    const names = backendsInUse(this.config);
    let down = 0;
    for (const name of names) {
      let listed: Lease[];
      try {
        const backend = await this.backend(name);
        listed = await backend.list(prefix, { internal: true });
      } catch (error) {
        // One store down need not hide the others' locks, if asked.
        if (
          !(error instanceof BackendUnavailableError) ||
          !options.onUnavailable || ++down === names.length
        ) throw error;
        options.onUnavailable(name, error);
        continue;
      }
      const { locks, waiting } = splitQueue(listed);
      const requests = new Map<string, Lease>();
      for (const lease of listed) {
        const named = parseRequestName(lease.resource);
        if (named) requests.set(named.leaseId, lease);
      }
      for (const lease of locks) {
        const request = requests.get(lease.id);
        rows.push({
          backend: name,
          ...lease,
          waiting: waiting.get(lease.resource) ?? [],
          request: request ? { ...request, resource: lease.resource } : null,
        });
      }
    }
    return rows;
  }

  /** Closes every backend opened. */
  async close(): Promise<void> {
    const opened = [...this.#backends.values()];
    this.#backends.clear();
    await Promise.all(
      opened.map((opening) =>
        opening.then((backend) => backend.close(), () => {})
      ),
    );
  }

  /** Closes every backend at the end of an `await using` block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Opens a handle on the configured store: finds and reads the config (or
 * uses the embedded defaults). Backends open on first use.
 *
 * @param options Where to find the config; defaults to the usual search.
 * @throws {ConfigError} on a missing or bad config.
 *
 * @example
 * ```ts ignore
 * import { openStormlock } from "@stormlock/stormlock";
 * await using locks = await openStormlock({ path: "./stormlock.cfg" });
 * const lock = await locks.lock("deploy-prod");
 * const lease = await lock.acquire("30m", { reason: "release 4.2" });
 * await lock.release(lease.id);
 * ```
 */
export function openStormlock(
  options: OpenLockOptions = {},
): Promise<Stormlock> {
  return Promise.resolve().then(() =>
    new Stormlock(loadConfig(options), options)
  );
}

/**
 * Opens a resource's lock as the config describes it: a shortcut for
 * {@linkcode openStormlock} and {@linkcode Stormlock.lock}. Closing the
 * lock closes its backend.
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
  const locks = await openStormlock(options);
  try {
    const lock = await locks.lock(resource);
    if (lock instanceof HierarchyLock) return lock.own(locks);
    const owned = new Lock(lock.backend, lock.settings, locks);
    owned.guard = lock.guard;
    return owned;
  } catch (error) {
    await locks.close();
    throw error;
  }
}
