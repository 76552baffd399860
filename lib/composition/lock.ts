/**
 * The lock of one resource: validation and defaults written once over any
 * backend, and the entry point that opens a lock from config.
 *
 * @module
 */
import {
  backendSettings,
  backendsInUse,
  configWarnings,
  loadConfig,
  localHost,
  MAX_TEXT,
  resolveLockSettings,
} from "./config.ts";
import type { Config, ConfigSource, LockSettings } from "./config.ts";
import { parseTtl, type Ttl } from "../kit/duration.ts";

export type { Ttl };
import { assertLeaseId } from "../kit/lease.ts";
import { assertPluginAllowed, pluginModuleOf } from "./plugin.ts";
import { openBackend } from "./registry.ts";
import {
  AcquireUnknownError,
  BackendUnavailableError,
  LockHeldError,
  UsageError,
} from "../kit/errors.ts";
import { splitQueue, waiterPrefix, waiters, WaitTicket } from "./queue.ts";
import { boundedBy } from "../kit/views.ts";
import { parseRequestName } from "./events.ts";
import {
  type HandOverRequest,
  handOverRequest,
  requestHandOver,
} from "./request.ts";
import type {
  AcquireDetails,
  Backend,
  Lease,
  LeaseEvent,
} from "../kit/types.ts";
import { assertHoldTtl, durationSeconds, holdLease } from "./hold.ts";
import type { HoldCallback, KeepOptions } from "./hold.ts";

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
  /**
   * Called each time the wait is checked, with the holder's lease and the
   * queue. When the lock is free but earlier waiters are ahead, `holder`
   * is the first waiter's registration and `state.queued` is set.
   */
  onWait?: (holder: Lease, state: WaitState) => void;
  /**
   * Called when the backend fails while waiting; the wait goes on, with
   * backoff, until its deadline.
   */
  onRetry?: (error: BackendUnavailableError) => void;
  /** Why the lock is taken; defaults to the config's `reason`. */
  reason?: string;
  /** A link for more, such as a CI run. */
  link?: string;
}

/**
 * How {@linkcode Lock.hold} takes and keeps a lease.
 *
 * @example
 * ```ts
 * import type { HoldOptions } from "@stormlock/stormlock";
 * const options: HoldOptions = { wait: "5m", reason: "db patch", maxHold: "1h" };
 * ```
 */
export interface HoldOptions extends AcquireOptions, KeepOptions {}

/**
 * Where a waiter stands.
 * @example
 * ```ts
 * import type { WaitState } from "@stormlock/stormlock";
 * const state: WaitState = { position: 1, waiting: 3, waitedMs: 1200, queued: false };
 * ```
 */
export interface WaitState {
  /** Waiters ahead of this one; 0 when it is next. */
  position: number;
  /** Waiters in all, this one included. */
  waiting: number;
  /** How long it has waited, in ms. */
  waitedMs: number;
  /** Whether the lock is free and only earlier waiters are in the way. */
  queued: boolean;
}

/** Reads a wait like a TTL, naming it as a wait in errors. */
function waitSeconds(wait: Ttl): number {
  return parseTtl(typeof wait === "number" ? `${wait}s` : wait, "wait time");
}

function ttlSeconds(ttl: Ttl): number {
  if (typeof ttl === "string") return parseTtl(ttl);
  // Numbers go through the same checks as text, so 0 or 1.5 are refused.
  return parseTtl(`${ttl}s`);
}

/**
 * Leases this process took, by id, with their principal, so that releasing
 * one needs no read to tell whether another principal holds it. Bounded:
 * the oldest are forgotten first (they are then read, as any other).
 */
const takenHere = new Map<string, string>();
const TAKEN_HERE_LIMIT = 1024;

function rememberOwn(lease: Lease): void {
  takenHere.set(lease.id, lease.principal);
  if (takenHere.size > TAKEN_HERE_LIMIT) {
    takenHere.delete(takenHere.keys().next().value!);
  }
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
  readonly #owner?: { close(): Promise<void> };

  /** Told just before each acquire is sent (see `hold`). */
  #sending?: () => void;

  /**
   * Wraps an open backend for one resource.
   *
   * @param backend An open backend.
   * @param settings The resource's resolved settings.
   * @param owner What {@linkcode close} closes, if the lock owns it: the
   * backend, or the {@linkcode Stormlock} handle it came from.
   */
  constructor(
    backend: Backend,
    settings: LockSettings,
    owner?: { close(): Promise<void> },
  ) {
    this.backend = backend;
    this.settings = settings;
    this.#owner = owner;
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
    const details = {
      host: localHost(),
      reason: checkText(options.reason, "reason") ?? this.settings.reason,
      link: checkLink(options.link),
    };
    const take = async (backend = this.backend, extra: AcquireDetails = {}) => {
      this.#sending?.();
      const lease = await backend.acquire(
        this.resource,
        this.settings.principal,
        seconds,
        { ...details, ...extra },
      );
      rememberOwn(lease);
      return lease;
    };
    if (options.wait === undefined) {
      // A store with the queue capability checks for waiters in the
      // acquire's own atomic step: nobody waiting costs no extra read.
      if (this.backend.capabilities.queue) {
        try {
          return await take(this.backend, {
            waiters: waiterPrefix(this.resource),
          });
        } catch (error) {
          if (!(error instanceof LockHeldError)) throw error;
          // Refused: only now read the queue, to say who waits.
          const queue = await waiters(this.backend, this.resource);
          if (!error.queued) {
            if (queue.length === 0) throw error;
            throw new LockHeldError(error.holder, { waiting: queue.length });
          }
          if (queue.length > 0) {
            throw new LockHeldError(queue[0], {
              waiting: queue.length,
              queued: true,
            });
          }
          // The store saw registrations no waiter made (queue.ts ignores
          // them): they don't hold a free lock.
          return await take();
        }
      }
      const queue = await waiters(this.backend, this.resource);
      if (queue.length === 0) return await take();
      const holder = await this.backend.current(this.resource);
      throw new LockHeldError(holder ?? queue[0], {
        waiting: queue.length,
        queued: holder === null,
      });
    }
    return await this.#wait(take, waitSeconds(options.wait) * 1000, options);
  }

  /**
   * Waits in the queue, first come first served, until the lock is taken
   * or the wait ends. A backend failure does not end the wait: it is
   * retried with backoff until the deadline.
   */
  async #wait(
    take: (backend: Backend) => Promise<Lease>,
    waitMs: number,
    options: AcquireOptions,
  ): Promise<Lease> {
    const started = Date.now();
    const deadline = started + waitMs;
    // Each try gets at most the time left, so a busy store can't carry
    // the wait far past its end.
    const bounded = boundedBy(this.backend, deadline);
    let ticket: WaitTicket | undefined;
    let refused: LockHeldError | undefined;
    let failure: BackendUnavailableError | undefined;
    // Leases an attempt may have taken though its answer was lost: if one
    // turns up as the holder, it is ours.
    const unknown = new Map<string, AcquireUnknownError>();
    // With change events, a release wakes the wait at once; polling stays
    // as the safety net (and is all there is without them).
    const watching = new AbortController();
    let wake = () => {};
    let woken = false;
    const watch = async () => {
      if (!this.backend.capabilities.events) return false;
      try {
        await this.backend.watch(this.resource, () => {
          woken = true;
          wake();
        }, watching.signal);
        return true;
      } catch {
        return false;
      }
    };
    let watched: Promise<boolean> | undefined;
    try {
      for (let backoff = 250;;) {
        // The next in line looks often; the others need only keep place.
        let pause = 1000;
        try {
          ticket ??= await WaitTicket.take(
            bounded,
            this.resource,
            this.settings.principal,
          );
          const { position, waiting } = await ticket.position();
          let holder: Lease | null = null;
          if (position === 0) {
            watched ??= watch();
            pause = await watched ? 2000 : 250;
            try {
              return await take(bounded);
            } catch (error) {
              if (error instanceof AcquireUnknownError) {
                unknown.set(error.leaseId, error);
              }
              if (!(error instanceof LockHeldError)) throw error;
              holder = error.holder;
            }
          } else {
            holder = await bounded.current(this.resource);
          }
          if (holder && unknown.has(holder.id)) return holder;
          const queued = holder === null;
          holder ??= (await waiters(bounded, this.resource))[0] ?? null;
          if (holder) {
            // This wait leaves the queue when it gives up: count the others.
            refused = new LockHeldError(holder, {
              waiting: Math.max(0, waiting - 1),
              queued,
            });
            options.onWait?.(holder, {
              position,
              waiting,
              waitedMs: Date.now() - started,
              queued,
            });
            if (!queued) {
              pause = Math.min(
                pause,
                holder.expires.getTime() - Date.now() + 50,
              );
            }
          }
          failure = undefined;
          backoff = 250;
        } catch (error) {
          if (!(error instanceof BackendUnavailableError)) throw error;
          failure = error;
          options.onRetry?.(error);
          pause = backoff;
          backoff = Math.min(backoff * 2, 5000);
        }
        const left = deadline - Date.now();
        if (left <= 0) {
          // A try the deadline cut short says less than a refusal before it.
          const cut = failure && /the time left to wait/.test(failure.message);
          throw [...unknown.values()].at(-1) ??
            (cut && refused ? refused : failure ?? refused);
        }
        if (!woken) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(
              resolve,
              Math.max(20, Math.min(pause, left)),
            );
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        woken = false;
        wake = () => {};
      }
    } finally {
      watching.abort();
      await ticket?.leave();
    }
  }

  /**
   * Takes the lock (waiting if `options.wait` allows), runs `work` while
   * renewing the lease every TTL/3 in the background, and releases the
   * lease when `work` ends. When the lease is lost (broken, not renewable
   * before it would expire, or `max_hold` reached), `work`'s signal is
   * aborted with a {@linkcode LeaseLostError} as its reason; `hold` then
   * waits for `work` to end and throws that error. See `lib/composition/hold.ts` for
   * the exact rules.
   *
   * @param ttl The lease's TTL, at least 3 s; defaults to the configured TTL.
   * @param work The work; it gets the signal and the lease.
   * @param options How to wait, the reason, `maxHold`, and who hears about
   * retries and a failed release.
   * @returns What `work` returned.
   * @throws {LockHeldError} when the lock is held (after the wait, if any).
   * @throws {LeaseLostError} when the lease was lost while `work` ran.
   * @throws {UsageError} on a bad TTL, wait or `maxHold`.
   *
   * @example Stop a migration when the lease is lost
   * ```ts ignore
   * await using lock = await openLock("db-prod");
   * await lock.hold("1m", async (signal, lease) => {
   *   await migrate({ signal, fence: lease.fence });
   * }, { wait: "10m", maxHold: "2h" });
   * ```
   */
  async hold<T>(
    ttl: Ttl | undefined,
    work: HoldCallback<T>,
    options: HoldOptions = {},
  ): Promise<T> {
    const seconds = ttl === undefined
      ? this.settings.ttlSeconds
      : ttlSeconds(ttl);
    assertHoldTtl(seconds);
    const maxHold = options.maxHold === undefined
      ? undefined
      : durationSeconds(options.maxHold, "max_hold");
    // The lease's life is counted from when its acquire was sent, which
    // only the backend call itself knows.
    let sentAt = Date.now();
    const timed = new Lock(this.backend, this.settings);
    timed.#sending = () => sentAt = Date.now();
    const lease = await timed.acquire(seconds, options);
    return await holdLease(this, lease, work, {
      ...options,
      maxHold,
      ttlSeconds: seconds,
      sentAt,
    });
  }

  /**
   * Ends a lease. When the lease belongs to another principal (a local
   * store, where anyone with access may end it), it is ended as a break
   * recorded under this lock's principal, so history never says the
   * holder did it.
   * @throws {LeaseNotHeldError} when it is not the current lease.
   * @throws {UsageError} on a malformed lease id.
   */
  async release(leaseId: string): Promise<void> {
    const id = assertLeaseId(leaseId);
    // A lock server knows who calls, and refuses others' releases itself.
    if (this.backend.capabilities.authenticated) {
      return await this.backend.release(this.resource, id);
    }
    const principal = this.settings.principal;
    // A lease this process took under the same principal needs no read.
    if (takenHere.get(id) === principal) {
      takenHere.delete(id);
      return await this.backend.release(this.resource, id);
    }
    const holder = await this.backend.current(this.resource);
    if (holder?.id === id && holder.principal !== principal) {
      await this.backend.breakLease(this.resource, id, {
        principal,
        host: localHost(),
        reason:
          `released by ${principal}, not by its holder ${holder.principal}`,
      });
      return;
    }
    await this.backend.release(this.resource, id);
  }

  /**
   * Sets a lease to expire `ttl` from now, and changes its reason when one
   * is given.
   * @param ttl The new TTL; defaults to the configured TTL.
   * @param change A new reason.
   * @throws {LeaseNotHeldError} when it is not the current lease.
   * @throws {UsageError} on a malformed lease id, TTL or reason.
   */
  renew(
    leaseId: string,
    ttl?: Ttl,
    change: { reason?: string } = {},
  ): Promise<Lease> {
    const id = assertLeaseId(leaseId);
    const seconds = ttl === undefined
      ? this.settings.ttlSeconds
      : ttlSeconds(ttl);
    const reason = checkText(change.reason, "reason");
    return this.backend.renew(
      this.resource,
      id,
      seconds,
      reason === undefined ? {} : { reason },
    );
  }

  /**
   * The resource's events, newest first.
   * @param limit At most this many.
   * @throws {ConfigError} when the backend keeps no history.
   */
  history(limit = 100): Promise<LeaseEvent[]> {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new UsageError(
        `Bad limit ${limit}: must be a whole number of at least 1`,
      );
    }
    return this.backend.history(this.resource, limit);
  }

  /**
   * Ends someone else's lease, recording who broke it and why. It is a
   * compare-and-delete on `leaseId`, so it never ends a lease taken after
   * the caller looked.
   *
   * @param leaseId The lease to break, as `current()` showed it; `""`
   * when it showed none because a lock server hides other principals' ids,
   * for the server to break the lease that is current there.
   * @param reason Why; required.
   * @returns The lease that was broken.
   * @throws {LeaseNotHeldError} when `leaseId` is no longer the live lease.
   * @throws {UsageError} on a malformed id or an empty reason.
   */
  breakLease(leaseId: string, reason: string): Promise<Lease> {
    const id = leaseId === "" ? "" : assertLeaseId(leaseId);
    const why = checkText(reason, "reason");
    if (why === undefined) {
      throw new UsageError(
        "A break needs a reason; say why the lease is stale, e.g. --reason 'job died'",
      );
    }
    return this.backend.breakLease(this.resource, id, {
      principal: this.settings.principal,
      host: localHost(),
      reason: why,
    });
  }

  /**
   * Asks the holder to hand the lock over, recording a `requested` event
   * that names this lock's principal; the holder's `run` and `renew` show
   * it, and hooks and `watch` send it.
   *
   * @param reason Why you need it; required.
   * @returns The request on record (someone else's, when they asked
   * first), or `null` when nobody holds the lock.
   * @throws {UsageError} on an empty reason.
   */
  request(reason: string): Promise<HandOverRequest | null> {
    const why = checkText(reason, "reason");
    if (why === undefined) {
      throw new UsageError(
        "A hand-over request needs a reason; say why you need the lock, e.g. --reason 'hotfix'",
      );
    }
    return requestHandOver(this.backend, this.resource, {
      principal: this.settings.principal,
      host: localHost(),
      reason: why,
    });
  }

  /** The open hand-over request of `lease`, or `null`. */
  handOverRequest(lease: Lease): Promise<Lease | null> {
    return handOverRequest(this.backend, lease);
  }

  /** Who waits for the lock, first come first. */
  waiting(): Promise<Lease[]> {
    return waiters(this.backend, this.resource);
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
  init(): Promise<boolean> {
    return this.backend.init();
  }

  /** Closes what the lock owns: its backend, or the handle it came from. */
  close(): Promise<void> {
    return this.#owner?.close() ?? Promise.resolve();
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

/** Checks a reason: not blank, not huge. */
function checkText(text: string | undefined, what: string): string | undefined {
  if (text === undefined) return undefined;
  const trimmed = text.trim();
  if (trimmed === "") {
    throw new UsageError(`The ${what} is empty; say in a few words why`);
  }
  if (trimmed.length > MAX_TEXT) {
    throw new UsageError(
      `The ${what} is ${trimmed.length} characters long; keep it under ${MAX_TEXT}, and put the rest behind a link`,
    );
  }
  return trimmed;
}

/** Checks a link: an http(s) URL of sane length. */
function checkLink(link: string | undefined): string | undefined {
  const text = checkText(link, "link");
  if (text === undefined) return undefined;
  if (!/^https?:\/\/[^\s]+$/i.test(text) || !URL.canParse(text)) {
    throw new UsageError(
      `The link is not an http(s) URL; give one such as https://ci.example.com/run/42`,
    );
  }
  return text;
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
    const settings = resolveLockSettings(
      this.config,
      resource,
      this.#options.env,
    );
    settings.warnings.forEach((message) => this.#warn(message));
    return new Lock(await this.backend(settings.backend), settings);
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
    return new Lock(lock.backend, lock.settings, locks);
  } catch (error) {
    await locks.close();
    throw error;
  }
}
