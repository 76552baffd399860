/**
 * Views of a framed backend, for callers inside Stormlock: the
 * bookkeeping view that may use reserved names, and a view bounded by a
 * caller's deadline; and the capability check callers make.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import type { Backend, Capability } from "./types.ts";

/**
 * How a view of a framed backend differs from the backend: whether it may
 * use Stormlock's reserved names, and a deadline every operation also
 * keeps.
 */
export interface FrameView {
  /** The waiting queue's own names are allowed. */
  bookkeeping?: boolean;
  /** The lock a name waits for, when it is a waiter's registration. */
  waitedLock?: (resource: string) => string | undefined;
  /** Epoch ms after which each operation gets only the minimum time. */
  deadline?: number;
}

/** How views are made: reachable only from inside Stormlock. */
export const VIEW = Symbol("stormlock.frameView");

/**
 * The shortest bound an operation gets under a deadline, so one that
 * starts just before it can still finish (and a lost acquire be settled).
 */
export const MIN_ATTEMPT_MS = 500;

/**
 * The same backend, allowed to use names with Stormlock's reserved
 * characters: for the waiting queue, which keeps its registrations under
 * them. Users' names never get this; other backends are returned as they
 * are. The caller that owns the names says, through `names.waitedLock`,
 * which of them are waiters' registrations (see `Operation.waitsFor`).
 * @example
 * ```ts ignore
 * const queue = bookkeeping(backend);
 * ```
 */
export function bookkeeping(
  backend: Backend,
  names: Pick<FrameView, "waitedLock"> = {},
): Backend {
  return viewOf(backend, { ...names, bookkeeping: true });
}

/**
 * The same backend, with every operation also bounded by the time left
 * until `deadline` (epoch ms), though never below
 * {@linkcode MIN_ATTEMPT_MS}: a wait's retries then end near its deadline
 * however slow the store is.
 * @example
 * ```ts ignore
 * const bounded = boundedBy(backend, Date.now() + 15_000);
 * ```
 */
export function boundedBy(backend: Backend, deadline: number): Backend {
  return viewOf(backend, { deadline });
}

export function viewOf(backend: Backend, view: FrameView): Backend {
  const make = (backend as { [VIEW]?: (view: FrameView) => Backend })[VIEW];
  return typeof make === "function" ? make.call(backend, view) : backend;
}

/**
 * The time one operation gets: the backend's timeout, or less when a
 * deadline is nearer, but at least {@linkcode MIN_ATTEMPT_MS}.
 * @example
 * ```ts
 * import { attemptMs } from "./views.ts";
 * attemptMs(3000, 1000, 0); // 1000
 * ```
 */
export function attemptMs(
  timeoutMs: number,
  deadline: number | undefined,
  now: number,
): number {
  if (deadline === undefined) return timeoutMs;
  return Math.min(timeoutMs, Math.max(deadline - now, MIN_ATTEMPT_MS));
}

/**
 * Fails with a clear config error when the backend lacks a capability.
 *
 * @throws {ConfigError} naming the backend and the capability.
 * @example
 * ```ts ignore
 * requireCapability(backend, "events");
 * ```
 */
export function requireCapability(
  backend: Backend,
  capability: Capability,
): void {
  if (!backend.capabilities[capability]) {
    throw new ConfigError(
      `Backend "${backend.name}" does not support ${capability}; use a backend that does (see "Capabilities" in docs/writing-a-backend.md)`,
    );
  }
}
