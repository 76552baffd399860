/**
 * Holding a lease while work runs: a heartbeat renews it every TTL/3,
 * decides when it is lost, and aborts the work's `AbortSignal`; the lease
 * is released when the work ends. {@linkcode Lock.hold} and
 * `stormlock run` are built on it.
 *
 * The loss rules, written once:
 * - the store answers that the lease is not held (it was broken, or it
 *   expired): lost at once, naming the breaker when the store knows;
 * - no renewal succeeded before the lease would expire by the local
 *   clock, less a safety margin of max(1 s, TTL/10), counted from the
 *   time each successful renewal was sent: presumed lost. A backend that
 *   is briefly unavailable is retried until then;
 * - `max_hold` passed since the lease was asked for: lost on purpose;
 * - any other renewal failure (a config error, a bug): lost, as nobody
 *   can vouch for the lease any more.
 *
 * @module
 */
import {
  BackendUnavailableError,
  LeaseLostError,
  LeaseNotHeldError,
  UsageError,
} from "../kit/errors.ts";
import { formatTtl, parseTtl, type Ttl } from "../kit/duration.ts";
import { MAX_TIMER_MS, sleep } from "../kit/deadline.ts";
import { shorten } from "../kit/text.ts";
import { when } from "../kit/time.ts";
import type { Lease } from "../kit/types.ts";

/**
 * The work done while a lease is held. `signal` is aborted, with a
 * {@linkcode LeaseLostError} as its `reason`, as soon as the lease is lost:
 * stop then, as the lock no longer protects the work.
 *
 * @example
 * ```ts
 * import type { HoldCallback } from "@stormlock/stormlock";
 * const work: HoldCallback<number> = async (signal, lease) => {
 *   await fetch(`https://ci.example.com/deploy?fence=${lease.fence}`, { signal });
 *   return 0;
 * };
 * ```
 */
export type HoldCallback<T> = (
  signal: AbortSignal,
  lease: Lease,
) => T | Promise<T>;

/**
 * How a lease is kept once held; see {@linkcode holdLease}.
 *
 * @example
 * ```ts
 * import type { KeepOptions } from "@stormlock/stormlock";
 * const options: KeepOptions = {
 *   maxHold: "2h",
 *   onRenewRetry: (error) => console.warn(error.message),
 * };
 * ```
 */
export interface KeepOptions {
  /**
   * Stop renewing this long after the lease was asked for; the lease then
   * counts as lost (kind `max-hold`). Seconds or text such as `"2h"`.
   * @default the config's `max_hold`, else no limit
   */
  maxHold?: Ttl;
  /** Called when a renewal fails but will be retried (backend unavailable). */
  onRenewRetry?: (error: BackendUnavailableError) => void;
  /**
   * Called when releasing the lease at the end fails. Without it, the
   * failure is thrown when the work itself succeeded, and dropped when the
   * work failed or the lease was lost (their error wins).
   */
  onReleaseError?: (error: unknown) => void;
}

/**
 * What holding a lease needs of its lock: a `Lock` has it. Kept this
 * narrow so that this module does not import `lock.ts`, which imports it.
 *
 * @example
 * ```ts ignore
 * const held: HeldLock = await openLock("deploy");
 * ```
 */
export interface HeldLock {
  /** The lock's settings; `maxHoldSeconds` caps renewals. */
  readonly settings: { readonly maxHoldSeconds?: number };
  /** Ends the lease. */
  release(leaseId: string): Promise<void>;
  /** Extends the lease by `ttl`. */
  renew(leaseId: string, ttl?: Ttl): Promise<Lease>;
}

/**
 * What {@linkcode holdLease} needs to know about how the lease was taken.
 *
 * @example
 * ```ts
 * import type { HoldLeaseOptions } from "@stormlock/stormlock";
 * const options: HoldLeaseOptions = { ttlSeconds: 60, sentAt: Date.now() };
 * ```
 */
export interface HoldLeaseOptions extends KeepOptions {
  /** The TTL the lease was taken with, and is renewed with, in seconds. */
  ttlSeconds: number;
  /**
   * When the request that took (or last renewed) the lease was sent, in
   * epoch ms: the local clock counts the lease's life from then.
   */
  sentAt: number;
}

/** The shortest TTL a held lease may have: renewals need room. */
export const MIN_HOLD_TTL_SECONDS = 3;

/**
 * How long before its expiry by the local clock a lease is no longer
 * trusted: max(1 s, TTL/10), for clock drift and a slow store.
 *
 * @param ttlMs The lease's TTL in ms.
 * @returns The margin in ms.
 * @example
 * ```ts
 * import { safetyMarginMs } from "./hold.ts";
 * console.log(safetyMarginMs(60_000)); // 6000
 * ```
 */
export function safetyMarginMs(ttlMs: number): number {
  return Math.max(1000, ttlMs / 10);
}

/**
 * Checks that a TTL leaves room for renewals while held.
 *
 * @param seconds The TTL in seconds.
 * @throws {UsageError} when it is under {@linkcode MIN_HOLD_TTL_SECONDS}.
 * @example
 * ```ts
 * import { assertHoldTtl } from "./hold.ts";
 * assertHoldTtl(30);
 * ```
 */
export function assertHoldTtl(seconds: number): void {
  if (seconds < MIN_HOLD_TTL_SECONDS) {
    throw new UsageError(
      `A TTL of ${seconds}s is too short to hold a lease while renewing it; give at least ${MIN_HOLD_TTL_SECONDS}s`,
    );
  }
}

/**
 * Reads a duration option such as `max_hold` or `--kill-after` like a TTL,
 * naming the option in errors.
 *
 * @param value Seconds, or text such as `"10m"`.
 * @param what How errors name it, e.g. `--kill-after`.
 * @returns Whole seconds.
 * @throws {UsageError} on a bad duration.
 * @example
 * ```ts
 * import { durationSeconds } from "./hold.ts";
 * console.log(durationSeconds("1h30m", "--max-hold")); // 5400
 * ```
 */
export function durationSeconds(value: Ttl, what: string): number {
  return parseTtl(typeof value === "number" ? `${value}s` : value, what);
}

/** A timer that may be longer than `setTimeout` allows; returns a cancel. */
function after(ms: number, run: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>;
  const arm = (left: number) => {
    timer = setTimeout(
      () => left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : run(),
      Math.max(0, Math.min(left, MAX_TIMER_MS)),
    );
  };
  arm(ms);
  return () => clearTimeout(timer);
}

/** The loss error for a renewal the store refused. */
function notHeldLoss(lease: Lease, error: LeaseNotHeldError): LeaseLostError {
  const where = `"${shorten(lease.resource)}"`;
  if (error.broken?.by) {
    const by = error.broken.by;
    return new LeaseLostError(
      "broken",
      lease,
      `Lease on ${where} was broken by ${shorten(by.principal)}${
        by.host ? ` on ${shorten(by.host)}` : ""
      } at ${when(error.broken.at)}: ${shorten(by.reason)}`,
      { cause: error, broken: error.broken },
    );
  }
  return new LeaseLostError(
    "not-held",
    lease,
    `Lease on ${where} is no longer held: it expired or was released elsewhere`,
    { cause: error },
  );
}

/**
 * Keeps a lease already taken while `work` runs: renews it every TTL/3,
 * retries a backend that is briefly unavailable, aborts `work`'s signal
 * when the lease is lost (see the module doc for the rules), and releases
 * the lease at the end unless the store says it is gone already. A
 * release that fails for an unavailable backend is retried until the
 * lease would expire anyway, at most 30 s.
 *
 * @param lock The lock the lease belongs to.
 * @param lease The lease, as `acquire` returned it.
 * @param work The work; it gets the signal and the lease.
 * @param options The TTL, when the lease's request was sent, `maxHold`.
 * @returns What `work` returned.
 * @throws {LeaseLostError} when the lease was lost, after `work` ended.
 * @throws whatever `work` threw; or the release's error (see
 * {@linkcode KeepOptions.onReleaseError}).
 * @example
 * ```ts ignore
 * const sentAt = Date.now();
 * const lease = await lock.acquire(60);
 * await holdLease(lock, lease, (signal) => migrate({ signal }), { ttlSeconds: 60, sentAt });
 * ```
 */
export async function holdLease<T>(
  lock: HeldLock,
  lease: Lease,
  work: HoldCallback<T>,
  options: HoldLeaseOptions,
): Promise<T> {
  let maxHoldSeconds: number | undefined;
  try {
    assertHoldTtl(options.ttlSeconds);
    maxHoldSeconds = options.maxHold === undefined
      ? lock.settings.maxHoldSeconds
      : durationSeconds(options.maxHold, "max_hold");
  } catch (error) {
    // Bad options must not leave the lease behind.
    await lock.release(lease.id).catch(() => {});
    throw error;
  }
  return await keepLease(lock, lease, work, { ...options, maxHoldSeconds });
}

/**
 * {@linkcode holdLease} with its options already checked: the TTL is at
 * least {@linkcode MIN_HOLD_TTL_SECONDS}, and `maxHoldSeconds` replaces
 * `maxHold` (`undefined`: no limit). `Lock.hold` checks them before it
 * takes the lease, so they are read once.
 *
 * @example
 * ```ts ignore
 * await keepLease(lock, lease, work, { ttlSeconds: 60, sentAt, maxHoldSeconds: 3600 });
 * ```
 */
export async function keepLease<T>(
  lock: HeldLock,
  lease: Lease,
  work: HoldCallback<T>,
  options: Omit<HoldLeaseOptions, "maxHold"> & { maxHoldSeconds?: number },
): Promise<T> {
  const { ttlSeconds, maxHoldSeconds } = options;
  const ttlMs = ttlSeconds * 1000;
  const interval = ttlMs / 3;
  const margin = safetyMarginMs(ttlMs);
  const where = `"${shorten(lease.resource)}"`;

  const controller = new AbortController();
  let lost: LeaseLostError | undefined;
  let stopped = false;
  /** When the last successful renewal (or the acquire) was sent. */
  let renewedAt = options.sentAt;
  let lastError: BackendUnavailableError | undefined;
  let inflight: Promise<void> = Promise.resolve();
  const cancels = new Set<() => void>();
  const timer = (ms: number, run: () => void) => {
    const clear = after(ms, () => {
      cancels.delete(cancel);
      run();
    });
    const cancel = () => {
      cancels.delete(cancel);
      clear();
    };
    cancels.add(cancel);
    return cancel;
  };
  const stop = () => {
    stopped = true;
    [...cancels].forEach((cancel) => cancel());
  };
  const lose = (error: LeaseLostError) => {
    if (lost || stopped) return;
    lost = error;
    stop();
    controller.abort(error);
  };

  let cancelWatchdog = () => {};
  const armWatchdog = () => {
    cancelWatchdog();
    cancelWatchdog = timer(renewedAt + ttlMs - margin - Date.now(), () =>
      lose(
        new LeaseLostError(
          "expired",
          lease,
          `Lease on ${where} is presumed lost: no renewal succeeded since ${
            when(new Date(renewedAt))
          }, and it expires ${ttlSeconds}s after${
            lastError ? ` (last error: ${lastError.message})` : ""
          }`,
          { cause: lastError },
        ),
      ));
  };

  let failures = 0;
  const beat = async () => {
    const sentAt = Date.now();
    try {
      await lock.renew(lease.id, ttlSeconds);
      if (lost || stopped) return;
      renewedAt = Math.max(renewedAt, sentAt);
      failures = 0;
      lastError = undefined;
      armWatchdog();
      schedule(sentAt + interval - Date.now());
    } catch (error) {
      if (lost || stopped) return;
      if (error instanceof LeaseNotHeldError) {
        lose(notHeldLoss(lease, error));
      } else if (error instanceof BackendUnavailableError) {
        lastError = error;
        options.onRenewRetry?.(error);
        // 250 ms, 500 ms, then every second until the watchdog gives up.
        schedule(Math.min(1000, 250 * 2 ** failures++));
      } else {
        lose(
          new LeaseLostError(
            "failed",
            lease,
            `Lease on ${where} could not be renewed: ${
              (error as Error)?.message ?? error
            }`,
            { cause: error },
          ),
        );
      }
    }
  };
  const schedule = (ms: number) => {
    timer(ms, () => {
      inflight = beat();
    });
  };

  armWatchdog();
  schedule(options.sentAt + interval - Date.now());
  if (maxHoldSeconds !== undefined) {
    timer(options.sentAt + maxHoldSeconds * 1000 - Date.now(), () =>
      lose(
        new LeaseLostError(
          "max-hold",
          lease,
          `Lease on ${where} reached max_hold (${
            formatTtl(maxHoldSeconds)
          }) and is given up`,
        ),
      ));
  }

  let result: T | undefined;
  let failed = false;
  let failure: unknown;
  try {
    result = await work(controller.signal, lease);
  } catch (error) {
    failed = true;
    failure = error;
  }
  const loss = lost;
  stop();
  await inflight;

  // A lease the store has already ended needs no release.
  if (loss?.kind !== "broken" && loss?.kind !== "not-held") {
    try {
      await releaseSoon(lock, lease.id, renewedAt + ttlMs);
    } catch (error) {
      // A lease that expired while presumed lost is already gone.
      const gone = loss && error instanceof LeaseNotHeldError;
      if (!gone) {
        if (options.onReleaseError) options.onReleaseError(error);
        else if (!loss && !failed) throw error;
      }
    }
  }
  if (loss) throw loss;
  if (failed) throw failure;
  return result as T;
}

/**
 * Releases a lease, retrying an unavailable backend until the lease would
 * expire anyway (`expires`, epoch ms), or 30 s at most.
 */
async function releaseSoon(
  lock: HeldLock,
  leaseId: string,
  expires: number,
): Promise<void> {
  const until = Math.min(expires, Date.now() + 30_000);
  for (let pause = 250;; pause = Math.min(pause * 2, 2000)) {
    try {
      return await lock.release(leaseId);
    } catch (error) {
      const left = until - Date.now();
      if (!(error instanceof BackendUnavailableError) || left <= 0) {
        throw error;
      }
      await sleep(Math.min(pause, left));
    }
  }
}
