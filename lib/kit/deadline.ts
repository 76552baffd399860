/**
 * One bound on an operation, written once for every server backend: the
 * operation's promise races a timer, whatever its client does.
 *
 * @module
 */

/**
 * The longest delay a timer takes. A longer one fires at once, with a
 * multi-line `TimeoutOverflowWarning` on stderr.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The time given to {@linkcode withDeadline} ran out. Backends turn it
 * into a `BackendUnavailableError`; it is not a Stormlock error itself, so
 * their translators can tell it from their own.
 */
export class DeadlineError extends Error {
  /** The time that ran out, in ms. */
  readonly ms: number;

  /**
   * Creates the error.
   *
   * @param ms The time that ran out, in ms.
   */
  constructor(ms: number) {
    super(`Did not finish within ${ms}ms`);
    this.ms = ms;
    this.name = "DeadlineError";
  }
}

/**
 * Runs `work`, rejecting with a {@linkcode DeadlineError} once `ms` pass
 * even if `work` never settles. On expiry the signal given to `work` is
 * aborted, so a client that takes one can stop; whatever `work` does later
 * is ignored. The timer is cleared as soon as `work` settles.
 *
 * @param ms The bound in ms. A bound past {@linkcode MAX_TIMER_MS} (about
 * 24.8 days) is held to it, and a negative one to 0, since a timer cannot
 * be set outside those.
 * @param work The operation; it may pass the signal on to its client.
 * @returns What `work` resolves to.
 * @throws {DeadlineError} when `ms` pass first; else whatever `work` throws.
 *
 * @example Bound a call, and let the client give up with it
 * ```ts
 * import { DeadlineError, withDeadline } from "./deadline.ts";
 * const value = await withDeadline(1000, () => Promise.resolve(42));
 * console.log(value); // 42
 * try {
 *   await withDeadline(10, (signal) =>
 *     new Promise((_, reject) => {
 *       signal.addEventListener("abort", () => reject(signal.reason));
 *     }));
 * } catch (error) {
 *   console.log(error instanceof DeadlineError); // true
 * }
 * ```
 */
export function withDeadline<T>(
  ms: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const controller = new AbortController();
    // A timer outside 0..MAX_TIMER_MS fires at once and warns; NaN is 0.
    const delay = Math.min(Math.max(ms, 0) || 0, MAX_TIMER_MS);
    const timer = setTimeout(() => {
      const error = new DeadlineError(ms);
      // Settle first: a client that rejects at once on abort must not win.
      reject(error);
      controller.abort(error);
    }, delay);
    let running: Promise<T>;
    try {
      running = work(controller.signal);
    } catch (error) {
      running = Promise.reject(error);
    }
    running.then((value) => {
      clearTimeout(timer);
      resolve(value);
    }, (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * Resolves after `ms` milliseconds, for pauses between retries.
 *
 * @example
 * ```ts
 * import { sleep } from "./deadline.ts";
 * await sleep(10);
 * ```
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
