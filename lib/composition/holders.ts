/**
 * Slots and shared holds, as callers ask for them: the options that pick
 * a lock's holder limit, reading every holder of a lock, its free slots,
 * and keeping a refusal's details when the queue's count is added to it.
 * The rule itself is in the kit (`lib/kit/holders.ts`).
 *
 * @module
 */
import { LimitMismatchError, LockHeldError } from "../kit/errors.ts";
import { UsageError } from "../kit/errors.ts";
import { EXCLUSIVE, limitOf, MAX_SLOTS, SHARED } from "../kit/holders.ts";
import type { Backend, Lease } from "../kit/types.ts";

/**
 * How many may hold a lock at once: `slots` for a counting semaphore,
 * `shared` for any number of shared holds; neither for an exclusive lock.
 *
 * @example
 * ```ts
 * import type { HolderOptions } from "@stormlock/stormlock";
 * const pool: HolderOptions = { slots: 3 };
 * const reader: HolderOptions = { shared: true };
 * ```
 */
export interface HolderOptions {
  /**
   * Up to this many leases coexist (a whole number from 1 to 10000; 1 is
   * an exclusive lock). The first holder stores it with the lock; an
   * acquire naming another number while the lock is held is refused with
   * a {@linkcode LimitMismatchError}.
   */
  slots?: number;
  /**
   * A shared hold: any number coexist, and an exclusive hold excludes
   * them all (a read/write lock).
   */
  shared?: boolean;
}

/**
 * The holder limit the options ask for: `1` exclusive, N slots, `0` shared.
 * @throws {UsageError} when both are given, or slots is not a whole number
 * from 1 to 10000.
 * @example
 * ```ts
 * import { holderLimit } from "./holders.ts";
 * holderLimit({ slots: 3 }); // 3
 * holderLimit({ shared: true }); // 0
 * ```
 */
export function holderLimit(options: HolderOptions): number {
  if (options.shared && options.slots !== undefined) {
    throw new UsageError(
      "Give either --slots or --shared, not both: slots bound the holders, shared holds have no bound",
    );
  }
  if (options.shared) return SHARED;
  if (options.slots === undefined) return EXCLUSIVE;
  const slots = options.slots;
  if (!Number.isSafeInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
    throw new UsageError(
      `Bad number of slots ${
        String(slots).slice(0, 20)
      }: must be a whole number from 1 to ${MAX_SLOTS}`,
    );
  }
  return slots;
}

/**
 * Every live holder of `resource`, lowest fence first; one at most on a
 * backend without the `holders` capability.
 * @example
 * ```ts ignore
 * const all = await holdersOf(backend, "pool");
 * ```
 */
export async function holdersOf(
  backend: Backend,
  resource: string,
): Promise<Lease[]> {
  if (backend.holders) return await backend.holders(resource);
  const lease = await backend.current(resource);
  return lease ? [lease] : [];
}

/**
 * How many more may take the lock beside `holders` (its live holders):
 * `null` for shared holds (no bound); for a free lock, `null` too, as its
 * next holder sets the bound.
 * @example
 * ```ts
 * import { freeSlots } from "./holders.ts";
 * const now = new Date();
 * const lease = { resource: "pool", id: "0".repeat(32), principal: "a", fence: 1, created: now, expires: now, limit: 3 };
 * freeSlots([lease]); // 2
 * ```
 */
export function freeSlots(holders: readonly Lease[]): number | null {
  if (holders.length === 0) return null;
  const limit = limitOf(holders[0]);
  return limit === SHARED ? null : Math.max(0, limit - holders.length);
}

/**
 * A refusal with the queue's count added, keeping its kind (a limit
 * mismatch stays one) and its holder count.
 * @example
 * ```ts ignore
 * throw withWaiting(error, queue.length);
 * ```
 */
export function withWaiting(
  error: LockHeldError,
  waiting: number,
  queued = false,
): LockHeldError {
  if (error instanceof LimitMismatchError) {
    return new LimitMismatchError(error.holder, error.askedLimit, {
      waiting,
      holders: error.holders,
    });
  }
  return new LockHeldError(error.holder, {
    waiting,
    queued,
    holders: error.holders,
  });
}
