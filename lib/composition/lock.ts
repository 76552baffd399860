/**
 * The lock of one resource: validation and defaults written once over any
 * backend. The handle that opens locks from config is in `stormlock.ts`;
 * the wait for a held lock is in `queue.ts`; keeping a held lease is in
 * `hold.ts`.
 *
 * @module
 */
import { localHost, MAX_TEXT } from "./config.ts";
import type { LockSettings } from "./config.ts";
import { parseTtl, type Ttl } from "../kit/duration.ts";
import { assertLeaseId } from "../kit/lease.ts";
import { LockHeldError, UsageError } from "../kit/errors.ts";
import {
  waiterPrefix,
  waiters,
  waitInQueue,
  type WaitListeners,
  type WaitState,
} from "./queue.ts";
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
import { assertHoldTtl, durationSeconds, keepLease } from "./hold.ts";
import type { HoldCallback, KeepOptions } from "./hold.ts";
import {
  holderLimit,
  type HolderOptions,
  holdersOf,
  withWaiting,
} from "./holders.ts";

export type { Ttl, WaitState };

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
export interface AcquireOptions extends WaitListeners, HolderOptions {
  /**
   * How long to wait for the lock, as seconds or text such as `"5m"`.
   * Without it, a held lock is refused at once.
   */
  wait?: Ttl;
  /** Why the lock is taken; defaults to the config's `reason`. */
  reason?: string;
  /** A link for more, such as a CI run. */
  link?: string;
  /**
   * The new lease's id (32 lowercase hex digits), so that several locks
   * can be held under one id (a lock set); by default a fresh one.
   */
  id?: string;
  /**
   * Takes the lock inside a freeze window, recording this reason (see
   * `lib/composition/freeze.ts`); the reason is required.
   */
  overrideFreeze?: string;
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

  /**
   * Checked before each acquire: refuses one inside a freeze window, or
   * gives the reason to record for an override. `Stormlock.lock` sets it
   * (see `freeze.ts`); a `Lock` made directly over a backend has none.
   */
  guard?: (lock: Lock, options: AcquireOptions) => Promise<string | undefined>;

  /**
   * Wraps an open backend for one resource.
   *
   * @param backend An open backend.
   * @param settings The resource's resolved settings.
   * @param owner What {@linkcode close} closes, if the lock owns it: the
   * backend, or the `Stormlock` handle it came from.
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
    return await this.#acquire(seconds, options);
  }

  /**
   * Takes the lock for `seconds`, waiting if `options.wait` allows;
   * `sending` is told just before each acquire is sent.
   */
  async #acquire(
    seconds: number,
    options: AcquireOptions,
    sending?: () => void,
  ): Promise<Lease> {
    const overridden = await this.guard?.(this, options);
    const limit = holderLimit(options);
    const details: AcquireDetails = {
      host: localHost(),
      reason: overridden ?? checkText(options.reason, "reason") ??
        this.settings.reason,
      link: checkLink(options.link),
      ...(options.id === undefined ? {} : { id: assertLeaseId(options.id) }),
      ...(limit === 1 ? {} : { limit }),
    };
    const take = async (backend = this.backend, extra: AcquireDetails = {}) => {
      sending?.();
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
            throw withWaiting(error, queue.length);
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
    return await waitInQueue(
      this.backend,
      this.resource,
      this.settings.principal,
      take,
      waitSeconds(options.wait) * 1000,
      options,
    );
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
    const maxHoldSeconds = options.maxHold === undefined
      ? this.settings.maxHoldSeconds
      : durationSeconds(options.maxHold, "max_hold");
    // The lease's life is counted from when its acquire was sent, which
    // only the backend call itself knows.
    let sentAt = Date.now();
    const lease = await this.#acquire(seconds, options, () => {
      sentAt = Date.now();
    });
    return await keepLease(this, lease, work, {
      ...options,
      ttlSeconds: seconds,
      sentAt,
      maxHoldSeconds,
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
    const holder = (await holdersOf(this.backend, this.resource)).find((
      lease,
    ) => lease.id === id);
    if (holder && holder.principal !== principal) {
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
   * Every live holder, lowest fence first: several with slots or shared
   * holds, else one at most. Their free slots: `freeSlots(holders)`.
   */
  holders(): Promise<Lease[]> {
    return holdersOf(this.backend, this.resource);
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
