/**
 * More than one holder: the one rule every store applies for slots and
 * shared holds (see "Slots and shared holds" in docs/lock-models.md).
 *
 * Every live holder of a lock carries the same `limit`: `1` exclusive
 * (the default, and the only kind before), N for N slots, `0` shared (no
 * limit). An acquire asking for limit L is admitted iff the lock has no
 * live holder, or every live holder has limit L and there are fewer than
 * L of them (any number when L is 0). So an exclusive hold excludes every
 * other, shared holds coexist, shared and exclusive exclude each other,
 * and an acquire naming another N while the lock is held is refused.
 *
 * Each holder has its own lease id, TTL, fence and principal; fences come
 * from one counter per resource, so they strictly increase across all
 * holders. A store checks the rule and inserts the holder in one atomic
 * step, as it does for an exclusive acquire.
 *
 * @module
 */

/** The limit of an exclusive lock: one holder. */
export const EXCLUSIVE = 1;
/** The limit of shared holds: any number of holders. */
export const SHARED = 0;

/**
 * The largest number of slots a lock can have; above it, use shared holds.
 * @example
 * ```ts
 * import { MAX_SLOTS } from "./holders.ts";
 * console.log(MAX_SLOTS); // 10000
 * ```
 */
export const MAX_SLOTS = 10_000;

/**
 * The limit a lease carries: `1` when it has none (an exclusive lease, as
 * every lease written before slots existed).
 * @example
 * ```ts
 * import { limitOf } from "./holders.ts";
 * limitOf({ limit: 3 }); // 3
 * limitOf({}); // 1
 * ```
 */
export function limitOf(lease: { limit?: number }): number {
  return lease.limit ?? EXCLUSIVE;
}

/**
 * Whether an acquire asking for `limit` is admitted beside `live`, the
 * lock's live holders: the rule above, for stores that check it in code
 * inside a transaction (sqlite, postgres, mysql, dynamodb).
 *
 * @example
 * ```ts
 * import { admits } from "./holders.ts";
 * admits([], 1); // true
 * admits([{ limit: 3 }, { limit: 3 }], 3); // true
 * admits([{ limit: 0 }], 1); // false
 * ```
 */
export function admits(
  live: readonly { limit?: number }[],
  limit: number,
): boolean {
  if (live.length === 0) return true;
  return live.every((holder) => limitOf(holder) === limit) &&
    (limit === SHARED || live.length < limit);
}

/**
 * How a limit reads in messages: `exclusive`, `3 slots`, `shared`.
 * @example
 * ```ts
 * import { describeLimit } from "./holders.ts";
 * describeLimit(3); // "3 slots"
 * ```
 */
export function describeLimit(limit: number): string {
  return limit === SHARED
    ? "shared"
    : limit === EXCLUSIVE
    ? "exclusive"
    : `${limit} slots`;
}

/**
 * The problem with a requested limit, or `undefined` when it is valid: a
 * whole number from 0 (shared) to {@linkcode MAX_SLOTS}.
 * @example
 * ```ts
 * import { limitProblem } from "./holders.ts";
 * limitProblem(1.5); // "must be a whole number from 1 to 10000"
 * ```
 */
export function limitProblem(limit: unknown): string | undefined {
  return Number.isSafeInteger(limit) && (limit as number) >= 0 &&
      (limit as number) <= MAX_SLOTS
    ? undefined
    : `must be a whole number from 1 to ${MAX_SLOTS}`;
}
