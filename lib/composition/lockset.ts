/**
 * Lock sets: several resources taken all-or-nothing under one lease id.
 *
 * Written once over any backend: the members are taken one by one in
 * sorted order, each under the set's id, and what was taken is released
 * when one is refused or fails. Every acquirer takes overlapping members
 * in the same order, so two sets can wait for each other only in one
 * direction and never deadlock. While a member is waited for, the members
 * already taken are renewed; if the process dies mid-way, they lapse at
 * their TTL. A store that could take the whole set in one transaction is
 * not asked to yet (see docs/lock-models.md).
 *
 * @module
 */
import { newLeaseId } from "../kit/lease.ts";
import { LockHeldError, UsageError } from "../kit/errors.ts";
import { parseTtl } from "../kit/duration.ts";
import type { Lease } from "../kit/types.ts";
import { assertHoldTtl, durationSeconds, holdLease } from "./hold.ts";
import type { HoldCallback } from "./hold.ts";
import {
  type AcquireOptions,
  type HoldOptions,
  Lock,
  type Ttl,
} from "./lock.ts";

/**
 * The lease of a lock set: one id, and each member's own lease (fence,
 * expiry) in sorted order. `resource` is the members' names joined by a
 * space; `fence` and `expires` are the first member's.
 * @example
 * ```ts ignore
 * const lease = await set.acquire("10m");
 * for (const member of lease.members) console.log(member.resource, member.fence);
 * ```
 */
export interface SetLease extends Lease {
  /** Each member's lease, in sorted order. */
  members: Lease[];
}

function seconds(ttl: Ttl): number {
  return parseTtl(typeof ttl === "number" ? `${ttl}s` : ttl);
}

/**
 * Several locks held as one: `acquire`, `release`, `renew`, `isHeld`
 * and `hold` act on every member with one lease id.
 *
 * @example
 * ```ts ignore
 * await using locks = await openStormlock();
 * const set = await openLockSet(locks, ["db", "cache", "dns"]);
 * const lease = await set.acquire("10m", { wait: "5m" });
 * await set.release(lease.id);
 * ```
 */
export class LockSet extends Lock {
  /** The members, sorted by resource name. */
  readonly members: Lock[];

  /**
   * Makes the set of `members`, sorted by name.
   *
   * @param members The members' locks; at least two, with distinct names.
   * @throws {UsageError} on fewer than two or a repeated name.
   */
  constructor(members: Lock[]) {
    const sorted = [...members].sort((a, b) =>
      a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0
    );
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].resource === sorted[i - 1].resource) {
        throw new UsageError(
          `"${
            sorted[i].resource
          }" is named twice; name each resource of a set once`,
        );
      }
    }
    if (sorted.length < 2) {
      throw new UsageError("A lock set needs at least two resources");
    }
    const first = sorted[0];
    // The shortest configured TTL: no member is held longer than its own
    // config allows.
    const ttlSeconds = Math.min(...sorted.map((m) => m.settings.ttlSeconds));
    const caps = sorted.map((m) => m.settings.maxHoldSeconds)
      .filter((s): s is number => s !== undefined);
    super(first.backend, {
      ...first.settings,
      resource: sorted.map((m) => m.resource).join(" "),
      ttlSeconds,
      ...(caps.length > 0 ? { maxHoldSeconds: Math.min(...caps) } : {}),
    });
    this.members = sorted;
  }

  /**
   * Takes every member under one new lease id, in sorted order, waiting
   * for each within the one `options.wait`; on any refusal or failure
   * releases what it took and throws that error.
   */
  override async acquire(
    ttl?: Ttl,
    options: AcquireOptions = {},
  ): Promise<SetLease> {
    const ttlSeconds = ttl === undefined
      ? this.settings.ttlSeconds
      : seconds(ttl);
    const id = options.id ?? newLeaseId();
    // Every member's freeze is checked before anything is taken.
    const reasons = await Promise.all(
      this.members.map((m) => m.guard?.(m, options)),
    );
    const reason = reasons.find((r) => r !== undefined) ?? options.reason;
    const deadline = options.wait === undefined
      ? undefined
      : Date.now() + durationSeconds(options.wait, "wait time") * 1000;
    const taken: Lease[] = [];
    // Members taken are renewed while a later one is waited for.
    const keeper = setInterval(() => {
      for (const [i, lease] of taken.entries()) {
        this.members[i].backend.renew(lease.resource, id, ttlSeconds)
          .then((renewed) => taken[i] = renewed, () => {});
      }
    }, Math.max(1000, ttlSeconds * 1000 / 3));
    try {
      for (const member of this.members) {
        const left = deadline === undefined
          ? undefined
          : Math.max(1, Math.ceil((deadline - Date.now()) / 1000));
        const guard = member.guard;
        member.guard = undefined; // checked above, for the whole set
        try {
          taken.push(
            await member.acquire(ttlSeconds, {
              ...options,
              id,
              reason,
              overrideFreeze: undefined,
              ...(left === undefined ? {} : { wait: left }),
            }),
          );
        } finally {
          member.guard = guard;
        }
      }
    } catch (error) {
      clearInterval(keeper);
      // The failed member too, unless it was refused: a lost answer may
      // have taken it as ours.
      const tried = taken.length + (error instanceof LockHeldError ? 0 : 1);
      await Promise.all(
        this.members.slice(0, tried).map((m) =>
          m.backend.release(m.resource, id).catch(() => {})
        ),
      );
      throw error;
    }
    clearInterval(keeper);
    return this.#setLease(taken);
  }

  #setLease(members: Lease[]): SetLease {
    return {
      ...members[0],
      resource: this.resource,
      members,
    };
  }

  /**
   * Releases every member. Every member is tried; then the first one not
   * held is thrown.
   * @throws {LeaseNotHeldError} when a member was not held by `leaseId`.
   */
  override async release(leaseId: string): Promise<void> {
    const results = await Promise.allSettled(
      this.members.map((m) => m.release(leaseId)),
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /**
   * Renews every member; the set is held only if every member still is.
   * @throws {LeaseNotHeldError} naming the first member not held.
   */
  override async renew(
    leaseId: string,
    ttl?: Ttl,
    change: { reason?: string } = {},
  ): Promise<SetLease> {
    const results = await Promise.allSettled(
      this.members.map((m) => m.renew(leaseId, ttl, change)),
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    return this.#setLease(
      results.map((r) => (r as PromiseFulfilledResult<Lease>).value),
    );
  }

  /** Whether every member is held by `leaseId`. */
  override async isHeld(leaseId: string): Promise<boolean> {
    const held = await Promise.all(this.members.map((m) => m.isHeld(leaseId)));
    return held.every(Boolean);
  }

  /** The first member's live lease that another set or holder has. */
  override async current(): Promise<Lease | null> {
    for (const member of this.members) {
      const lease = await member.current();
      if (lease) return lease;
    }
    return null;
  }

  /** The first open hand-over request on any member. */
  override async handOverRequest(lease: Lease): Promise<Lease | null> {
    for (const member of this.members) {
      const request = await member.handOverRequest({
        ...lease,
        resource: member.resource,
      }).catch(() => null);
      if (request) return request;
    }
    return null;
  }

  /** Takes the set, keeps it while `work` runs, and releases it after. */
  override async hold<T>(
    ttl: Ttl | undefined,
    work: HoldCallback<T>,
    options: HoldOptions = {},
  ): Promise<T> {
    const ttlSeconds = ttl === undefined
      ? this.settings.ttlSeconds
      : seconds(ttl);
    assertHoldTtl(ttlSeconds);
    const maxHold = options.maxHold === undefined
      ? undefined
      : durationSeconds(options.maxHold, "max_hold");
    const sentAt = Date.now();
    const lease = await this.acquire(ttlSeconds, options);
    return await holdLease(this, lease, work, {
      ...options,
      maxHold,
      ttlSeconds,
      sentAt,
    });
  }

  /** Closes every member (their shared handle closes once). */
  override async close(): Promise<void> {
    await Promise.all(this.members.map((m) => m.close()));
  }
}

/**
 * Opens the set of `resources` on a `Stormlock` handle.
 * @throws {UsageError} on fewer than two or a repeated name.
 * @example
 * ```ts ignore
 * const set = await openLockSet(locks, ["db", "cache"]);
 * ```
 */
export async function openLockSet(
  locks: { lock(resource: string): Promise<Lock> },
  resources: string[],
): Promise<LockSet> {
  const members: Lock[] = [];
  for (const resource of resources) members.push(await locks.lock(resource));
  return new LockSet(members);
}

/**
 * The lock of one resource, or the lock set of several (all or none,
 * under one lease id): what the CLI's lock commands open.
 * @throws {UsageError} on a repeated name.
 * @example
 * ```ts ignore
 * const lock = await openLockOrSet(locks, ["db", "cache"]);
 * ```
 */
export async function openLockOrSet(
  locks: {
    lock(resource: string): Promise<Lock>;
    lockSet?(resources: string[]): Promise<Lock>;
  },
  resources: string[],
): Promise<Lock> {
  if (resources.length < 2) return await locks.lock(resources[0]);
  // A `Stormlock` handle adds parent locks' intention holds (hierarchy.ts).
  if (locks.lockSet) return await locks.lockSet(resources);
  return await openLockSet(locks, resources);
}
