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
  return within(ms, (bound) => work(bound.signal));
}

/**
 * What {@linkcode within} hands its work: the signal, made only when asked
 * for, and a cheaper hook for work that only needs to hear the deadline
 * pass.
 * @example
 * ```ts ignore
 * await within(1000, (bound) => { bound.onExpire(() => socket.close()); … });
 * ```
 */
export interface Bound {
  /** Aborted when the deadline passes; made on first use. */
  readonly signal: AbortSignal;
  /** When the deadline passes, in epoch ms. */
  readonly deadline: number;
  /** Calls `callback` if the deadline passes. */
  onExpire(callback: () => void): void;
}

/**
 * The one deadline mechanism: runs `work`, rejecting with a
 * {@linkcode DeadlineError} once `ms` pass even if `work` never settles.
 * One timer per call, cleared as soon as `work` settles; the signal is made
 * only if `work` asks for it, since this is on every operation's hot path.
 *
 * @param ms The bound in ms, held to 0..{@linkcode MAX_TIMER_MS}.
 * @param work The operation; it may be synchronous.
 * @returns What `work` resolves to.
 * @throws {DeadlineError} when `ms` pass first; else whatever `work` throws.
 * @example
 * ```ts
 * import { within } from "./deadline.ts";
 * console.log(await within(1000, () => 42)); // 42
 * ```
 */
export function within<T>(
  ms: number,
  work: (bound: Bound) => Promise<T> | T,
): Promise<T> {
  let controller: AbortController | undefined;
  let expired: DeadlineError | undefined;
  let listeners: (() => void)[] | undefined;
  const bound: Bound = {
    deadline: Date.now() + ms,
    get signal() {
      controller ??= new AbortController();
      if (expired && !controller.signal.aborted) controller.abort(expired);
      return controller.signal;
    },
    onExpire(callback) {
      if (expired) callback();
      else (listeners ??= []).push(callback);
    },
  };
  return new Promise<T>((resolve, reject) => {
    // A timer outside 0..MAX_TIMER_MS fires at once and warns; NaN is 0.
    const timer = setTimeout(() => {
      expired = new DeadlineError(ms);
      // Settle first: a client that rejects at once on abort must not win.
      reject(expired);
      controller?.abort(expired);
      for (const callback of listeners ?? []) {
        try {
          callback();
        } catch { /* the work has failed already */ }
      }
    }, Math.min(Math.max(ms, 0) || 0, MAX_TIMER_MS));
    const settle = <A>(done: (value: A) => void) => (value: A) => {
      clearTimeout(timer);
      done(value);
    };
    try {
      Promise.resolve(work(bound)).then(settle(resolve), settle(reject));
    } catch (error) {
      settle(reject)(error);
    }
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
