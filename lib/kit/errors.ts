/**
 * Error classes. Each carries a stable `code`; only the CLI maps codes to
 * exit statuses, so library callers can branch on `code` or `instanceof`.
 *
 * @module
 */
import type { Lease, LeaseEvent } from "./types.ts";
import { printable, shellQuote, shorten } from "./text.ts";
import { when } from "./time.ts";

/**
 * Stable machine-readable error codes, one per error class.
 * @example
 * ```ts
 * import { type StormlockErrorCode, UsageError } from "@stormlock/stormlock";
 * const code: StormlockErrorCode = new UsageError("Bad input").code;
 * console.log(code); // "USAGE"
 * ```
 */
export type StormlockErrorCode =
  | "LOCK_HELD"
  | "LEASE_NOT_HELD"
  | "BACKEND_UNAVAILABLE"
  | "CONFIG"
  | "USAGE"
  | "FORBIDDEN";

/**
 * Base class of every error Stormlock raises on purpose.
 *
 * @example Branch on the code
 * ```ts
 * import { StormlockError } from "@stormlock/stormlock";
 * try {
 *   throw new StormlockError("USAGE", "Bad input");
 * } catch (error) {
 *   if (error instanceof StormlockError) console.log(error.code);
 * }
 * ```
 */
export class StormlockError extends Error {
  /** Which kind of failure this is. */
  readonly code: StormlockErrorCode;

  /**
   * Creates the error.
   *
   * @param code The stable error code.
   * @param message One line naming the problem and what to do.
   * @param options Standard error options, e.g. the `cause`.
   */
  constructor(
    code: StormlockErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.name = "StormlockError";
  }
}

/**
 * The lock is held by someone else. `holder` is their lease.
 *
 * @example
 * ```ts
 * import { LockHeldError } from "@stormlock/stormlock";
 * const now = new Date();
 * const error = new LockHeldError({
 *   resource: "deploy", id: "0".repeat(32), principal: "ann@host",
 *   fence: 1, created: now, expires: now,
 * });
 * console.log(error.holder.principal); // "ann@host"
 * ```
 */
export class LockHeldError extends StormlockError {
  /**
   * The lease that currently holds the lock; when `queued` is set, the
   * lock is free and this is the first waiter's registration.
   */
  readonly holder: Lease;
  /** How many are waiting for the lock, in arrival order. */
  readonly waiting: number;
  /** Set when the lock is free but others waited first. */
  readonly queued: boolean;

  /**
   * Creates the error.
   *
   * @param holder The lease that currently holds the lock.
   * @param queue How many wait, and whether only the queue stands in the way.
   */
  constructor(
    holder: Lease,
    queue: { waiting?: number; queued?: boolean } = {},
  ) {
    const waiting = queue.waiting ?? 0;
    super(
      "LOCK_HELD",
      queue.queued
        ? `Lock "${
          shorten(holder.resource)
        }" is free, but ${waiting} waiting got there first (the first is ${
          shorten(holder.principal)
        }); use --wait to join the queue`
        : `Lock "${shorten(holder.resource)}" is held by ${
          shorten(holder.principal)
        } since ${when(holder.created)}, until ${when(holder.expires)}${
          waiting ? `; ${waiting} waiting` : ""
        }`,
    );
    this.holder = holder;
    this.waiting = waiting;
    this.queued = queue.queued === true;
    this.name = "LockHeldError";
  }
}

/**
 * The lease is not the current one for the resource: it expired, was
 * released, or never belonged to it. Nothing was changed.
 *
 * @example
 * ```ts
 * import { LeaseNotHeldError } from "@stormlock/stormlock";
 * const error = new LeaseNotHeldError("deploy", "0".repeat(32));
 * console.log(error.message);
 * ```
 */
export class LeaseNotHeldError extends StormlockError {
  /** The resource that was asked about. */
  readonly resource: string;
  /** The lease id that is not held. */
  readonly leaseId: string;
  /** When someone broke the lease: the `broken` event naming them. */
  readonly broken?: LeaseEvent;

  /**
   * Creates the error.
   *
   * @param resource The resource that was asked about.
   * @param leaseId The lease id that is not held.
   * @param broken The history event, when the lease was broken.
   */
  constructor(resource: string, leaseId: string, broken?: LeaseEvent) {
    super(
      "LEASE_NOT_HELD",
      broken?.by
        ? `Lease ${leaseId} on "${shorten(resource)}" was broken by ${
          shorten(broken.by.principal)
        } at ${when(broken.at)}: ${shorten(broken.by.reason)}`
        : `Lease ${leaseId} does not hold "${
          shorten(resource)
        }": it expired, was released or belongs to another resource`,
    );
    this.resource = resource;
    this.leaseId = leaseId;
    this.broken = broken;
    this.name = "LeaseNotHeldError";
  }
}

/**
 * The backend could not be reached or did not answer in time.
 *
 * @example
 * ```ts
 * import { BackendUnavailableError } from "@stormlock/stormlock";
 * const error = new BackendUnavailableError("Redis at 127.0.0.1:6379 did not answer within 3s");
 * console.log(error.code); // "BACKEND_UNAVAILABLE"
 * ```
 */
export class BackendUnavailableError extends StormlockError {
  /**
   * Creates the error.
   *
   * @param message What could not be reached, and what to check.
   * @param options Standard error options, e.g. the client's error as `cause`.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("BACKEND_UNAVAILABLE", message, options);
    this.name = "BackendUnavailableError";
  }
}

/**
 * An acquire ran out of time, and the store may or may not have taken the
 * lease. `leaseId` is the id it would have: release it to be sure.
 *
 * @example
 * ```ts
 * import { AcquireUnknownError } from "@stormlock/stormlock";
 * const error = new AcquireUnknownError("Redis at 127.0.0.1:6379 did not answer within 3s", "deploy", "0".repeat(32));
 * console.log(error.code); // "BACKEND_UNAVAILABLE"
 * ```
 */
export class AcquireUnknownError extends BackendUnavailableError {
  /** The resource asked for. */
  readonly resource: string;
  /** The id of the lease that may have been taken. */
  readonly leaseId: string;

  /**
   * Creates the error.
   *
   * @param message Why the outcome is unknown.
   * @param resource The resource asked for.
   * @param leaseId The id of the lease that may have been taken.
   * @param options Standard error options.
   */
  constructor(
    message: string,
    resource: string,
    leaseId: string,
    options?: ErrorOptions,
  ) {
    super(
      `${message}; the lock may have been taken as lease ${leaseId}: release it with "stormlock release ${
        printable(shellQuote(resource))
      } ${leaseId}" once the backend answers`,
      options,
    );
    this.resource = resource;
    this.leaseId = leaseId;
    this.name = "AcquireUnknownError";
  }
}

/**
 * The configuration is missing, unreadable or has a bad value.
 *
 * @example
 * ```ts
 * import { ConfigError } from "@stormlock/stormlock";
 * const error = new ConfigError('stormlock.cfg [default] ttl: "soon" is not a duration');
 * console.log(error.code); // "CONFIG"
 * ```
 */
export class ConfigError extends StormlockError {
  /**
   * Creates the error.
   *
   * @param message Names the file, section and key where possible.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("CONFIG", message, options);
    this.name = "ConfigError";
  }
}

/**
 * The caller passed a bad argument: a malformed TTL or lease id, say.
 *
 * @example
 * ```ts
 * import { UsageError } from "@stormlock/stormlock";
 * const error = new UsageError('Bad TTL "0s": must be at least 1 second');
 * console.log(error.code); // "USAGE"
 * ```
 */
export class UsageError extends StormlockError {
  /**
   * Creates the error.
   *
   * @param message What is wrong with the input and what is accepted.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("USAGE", message, options);
    this.name = "UsageError";
  }
}

/**
 * The caller is not allowed to do this: a lock server refused its token,
 * or its token lacks the scope or resource, or the lease belongs to
 * another principal (only a break ends someone else's lease).
 *
 * @example
 * ```ts
 * import { ForbiddenError } from "@stormlock/stormlock";
 * const error = new ForbiddenError('Lease on "deploy" belongs to ann, not bob; only "stormlock break" ends it');
 * console.log(error.code); // "FORBIDDEN"
 * ```
 */
export class ForbiddenError extends StormlockError {
  /**
   * Creates the error.
   *
   * @param message What was refused, and what would be allowed.
   * @param options Standard error options.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("FORBIDDEN", message, options);
    this.name = "ForbiddenError";
  }
}

/**
 * Why a held lease was lost:
 * - `broken`: someone broke it (see {@linkcode LeaseLostError.broken});
 * - `not-held`: the store says it is no longer the live lease;
 * - `expired`: no renewal succeeded in time, so it must be presumed gone;
 * - `max-hold`: the `max_hold` limit was reached;
 * - `failed`: renewing failed in a way retrying can't fix.
 *
 * @example
 * ```ts
 * import type { LossKind } from "@stormlock/stormlock";
 * const kind: LossKind = "max-hold";
 * ```
 */
export type LossKind =
  | "broken"
  | "not-held"
  | "expired"
  | "max-hold"
  | "failed";

/**
 * A lease held with `Lock.hold` was lost while the work ran.
 * It is the `reason` of the aborted signal, and what `hold` throws. Its
 * code is `LEASE_NOT_HELD`, like {@linkcode LeaseNotHeldError}.
 *
 * @example
 * ```ts
 * import { LeaseLostError } from "@stormlock/stormlock";
 * const now = new Date();
 * const error = new LeaseLostError("max-hold", {
 *   resource: "deploy", id: "0".repeat(32), principal: "ann@host",
 *   fence: 1, created: now, expires: now,
 * }, 'Lease on "deploy" reached max_hold (1h)');
 * console.log(error.kind, error.code); // "max-hold" "LEASE_NOT_HELD"
 * ```
 */
export class LeaseLostError extends StormlockError {
  /** Why it was lost. */
  readonly kind: LossKind;
  /** The resource whose lease was lost. */
  readonly resource: string;
  /** The id of the lost lease. */
  readonly leaseId: string;
  /** When someone broke the lease: the `broken` event naming them. */
  readonly broken?: LeaseEvent;

  /**
   * Creates the error.
   *
   * @param kind Why the lease was lost.
   * @param lease The lease that was held.
   * @param message One line saying why, and who broke it when known.
   * @param options The `cause`, and the `broken` event when there is one.
   */
  constructor(
    kind: LossKind,
    lease: Lease,
    message: string,
    options: ErrorOptions & { broken?: LeaseEvent } = {},
  ) {
    super("LEASE_NOT_HELD", message, { cause: options.cause });
    this.kind = kind;
    this.resource = lease.resource;
    this.leaseId = lease.id;
    if (options.broken) this.broken = options.broken;
    this.name = "LeaseLostError";
  }
}
