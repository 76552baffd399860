/**
 * Parent locks: with `hierarchy = /` in `[default]`, a hold on `prod`
 * and a hold on `prod/db` see each other, on every store with the
 * `holders` capability and no new store primitive.
 *
 * Intention holds: every hold on `a/b/c` also takes a shared hold on the
 * reserved name `a\u001fintent` and `a/b\u001fintent` (one per ancestor),
 * and a hold on its own intention name, `a/b/c\u001fintent`, with its own
 * limit (exclusive, N slots or shared). So an exclusive hold on `a` is
 * refused while any descendant holds `a\u001fintent` shared, and refuses
 * them while it holds it; a shared hold on `a` takes it shared, so it
 * coexists with holds below it. Each intention hold's reason is the
 * resource it serves, so a refusal can name it. The resource and its
 * intentions are one lock set (`lockset.ts`): taken in sorted order under
 * one lease id, rolled back on failure, renewed and released together.
 *
 * @module
 */
import {
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
} from "../kit/errors.ts";
import { printable, shorten } from "../kit/text.ts";
import { HierarchyConflictError, INTENT_MARK } from "./hierarchy_error.ts";
import type { Backend, Lease, LeaseEvent } from "../kit/types.ts";
import type { HandOverRequest } from "./request.ts";
import { bookkeeping } from "../kit/views.ts";
import type { Config } from "./config.ts";
import type { AcquireOptions, Ttl } from "./lock.ts";
import { Lock } from "./lock.ts";
import { LockSet, type SetLease } from "./lockset.ts";

export { HierarchyConflictError, INTENT_MARK };

/** The separators `hierarchy =` accepts. */
const SEPARATORS = "/:.|>";

/**
 * The separator of parent locks from `hierarchy =` in `[default]`, or
 * `undefined` when it is off (the default: flat names).
 * @throws {ConfigError} on a value that is not one of `/ : . | >`.
 * @example
 * ```ts
 * import { parseConfig } from "./config.ts";
 * import { hierarchyOf } from "./hierarchy.ts";
 * hierarchyOf(parseConfig("[default]\nhierarchy = /\n")); // "/"
 * hierarchyOf(parseConfig("")); // undefined
 * ```
 */
export function hierarchyOf(config: Config): string | undefined {
  const value = config.sections.default?.hierarchy;
  if (value === undefined) return undefined;
  const separator = value.trim();
  if (separator.length === 1 && SEPARATORS.includes(separator)) {
    return separator;
  }
  throw new ConfigError(
    `${config.path ?? "<config>"} [default] hierarchy: ${
      separator === ""
        ? "it is empty"
        : `${JSON.stringify(shorten(printable(separator)))} is not a separator`
    }; set "hierarchy = /" (or one of ${
      [...SEPARATORS].join(" ")
    }) for parent locks, or remove the key for flat names`,
  );
}

/**
 * The ancestors of `resource`, nearest last: `a/b/c` gives `a`, `a/b`.
 * Empty parts (`a//b`, `/a`) are not names of their own.
 * @example
 * ```ts
 * import { ancestors } from "./hierarchy.ts";
 * ancestors("prod/db/main", "/"); // ["prod", "prod/db"]
 * ```
 */
export function ancestors(resource: string, separator: string): string[] {
  const found: string[] = [];
  for (let at = resource.indexOf(separator); at !== -1;) {
    if (at > 0 && !resource.slice(0, at).endsWith(separator)) {
      found.push(resource.slice(0, at));
    }
    at = resource.indexOf(separator, at + 1);
  }
  return found;
}

/**
 * The reserved name of `resource`'s intention holds.
 * @example
 * ```ts
 * import { intentName } from "./hierarchy.ts";
 * intentName("prod"); // "prod\u001fintent"
 * ```
 */
export function intentName(resource: string): string {
  return `${resource}${INTENT_MARK}`;
}

/** Whether `resource` is an intention hold's name. */
function isIntent(resource: string): boolean {
  return resource.endsWith(INTENT_MARK);
}

/**
 * One intention hold of a lock: shared when it serves a resource below,
 * with the hold's own limit when it is the resource's own. Its reason is
 * the resource it serves, and a renewal keeps it so.
 */
class IntentLock extends Lock {
  /** The resource this intention serves. */
  readonly serves: string;
  /** Whether it is an ancestor's (always shared). */
  readonly above: boolean;

  constructor(real: Lock, backend: Backend, name: string, above: boolean) {
    super(backend, {
      ...real.settings,
      resource: intentName(name),
      reason: undefined,
    });
    this.serves = real.resource;
    this.above = above;
  }

  override acquire(ttl?: Ttl, options: AcquireOptions = {}): Promise<Lease> {
    return super.acquire(ttl, {
      ...options,
      reason: this.serves,
      link: undefined,
      ...(this.above ? { shared: true, slots: undefined } : {}),
    });
  }

  override renew(leaseId: string, ttl?: Ttl): Promise<Lease> {
    return super.renew(leaseId, ttl); // the reason names what it serves
  }
}

/**
 * A lock (or lock set) with its intention holds: taking, renewing,
 * releasing and checking it act on the resource(s) and every intention
 * together, under one lease id; everything else acts on the resource(s).
 * `Stormlock.lock` gives one when the config has `hierarchy =`.
 *
 * @example
 * ```ts ignore
 * await using locks = await openStormlock(); // [default] hierarchy = /
 * const lock = await locks.lock("prod/db");   // a HierarchyLock
 * const lease = await lock.acquire("10m");    // also holds prod's intention
 * await lock.release(lease.id);
 * ```
 */
export class HierarchyLock extends LockSet {
  /** The resources asked for, sorted. */
  readonly real: Lock[];
  readonly #separator: string;
  readonly #intentBackend: Backend;
  readonly #intentBackendName: string;
  #owner?: { close(): Promise<void> };

  /**
   * Adds the intention holds of `real` on `intentBackend`.
   *
   * @param real The locks asked for (distinct names).
   * @param intentBackend Where intention holds live: `[default]`'s backend.
   * @param intentBackendName Its name, for errors.
   * @param separator The hierarchy's separator.
   */
  constructor(
    real: Lock[],
    intentBackend: Backend,
    intentBackendName: string,
    separator: string,
  ) {
    // One intention per name: a resource's own (its limit) wins over the
    // shared one a resource below it in the same set would take.
    // Intention names are reserved: only this view of the store takes them.
    const store = bookkeeping(intentBackend);
    const intents = new Map<string, IntentLock>();
    for (const lock of real) {
      intents.set(
        lock.resource,
        new IntentLock(lock, store, lock.resource, false),
      );
    }
    for (const lock of real) {
      for (const name of ancestors(lock.resource, separator)) {
        if (!intents.has(name)) {
          intents.set(name, new IntentLock(lock, store, name, true));
        }
      }
    }
    super([...real, ...intents.values()]);
    this.real = this.members.filter((m) => !(m instanceof IntentLock));
    this.#separator = separator;
    this.#intentBackend = intentBackend;
    this.#intentBackendName = intentBackendName;
    // The set's name and store are the resources', not their intentions'.
    (this as { backend: Backend }).backend = this.real[0].backend;
    this.settings.resource = this.real.map((m) => m.resource).join(" ");
    this.settings.principal = this.real[0].settings.principal;
    this.settings.reason = this.real[0].settings.reason;
  }

  /** Makes `close` close `owner` too (`openLock`'s handle). */
  own(owner: { close(): Promise<void> }): this {
    this.#owner = owner;
    return this;
  }

  #assertCapable(): void {
    if (this.#intentBackend.capabilities.holders) return;
    throw new ConfigError(
      `Parent locks (hierarchy = ${this.#separator} in [default]) need shared holds, and backend "${this.#intentBackendName}" does not support them (the holders capability); use a backend that does, such as sqlite or http, or remove hierarchy from [default]`,
    );
  }

  #view(members: Lease[]): Lease | SetLease {
    const own = members.filter((lease) => !isIntent(lease.resource));
    if (own.length === 1) return own[0];
    return { ...own[0], resource: this.resource, members: own };
  }

  /**
   * Takes the resource(s) and their intentions; a refusal by a hold above
   * or below is a {@linkcode HierarchyConflictError}.
   */
  override async acquire(
    ttl?: Ttl,
    options: AcquireOptions = {},
  ): Promise<SetLease> {
    this.#assertCapable();
    try {
      return this.#view(
        (await super.acquire(ttl, options)).members,
      ) as SetLease;
    } catch (error) {
      if (
        !(error instanceof LockHeldError) || !isIntent(error.holder.resource)
      ) throw error;
      const refused = this.members.find((m) =>
        m.resource === error.holder.resource
      ) as IntentLock | undefined;
      throw new HierarchyConflictError(
        refused?.serves ?? this.resource,
        error,
        this.#separator,
      );
    }
  }

  /** Renews the resource(s) and every intention. */
  override async renew(
    leaseId: string,
    ttl?: Ttl,
    change: { reason?: string } = {},
  ): Promise<SetLease> {
    this.#assertCapable();
    return this.#view(
      (await super.renew(leaseId, ttl, change)).members,
    ) as SetLease;
  }

  /**
   * Releases the resource(s) and every intention; only a resource not
   * held is an error (an intention may have lapsed already).
   * @throws {LeaseNotHeldError} when a resource was not held by `leaseId`.
   */
  override async release(leaseId: string): Promise<void> {
    const results = await Promise.allSettled(
      this.members.map((m) => m.release(leaseId)),
    );
    const failed = results.find((r, i) =>
      r.status === "rejected" &&
      (!(this.members[i] instanceof IntentLock) ||
        !(r.reason instanceof LeaseNotHeldError))
    );
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** Whether the resource(s) and every intention are held by `leaseId`. */
  override isHeld(leaseId: string): Promise<boolean> {
    return super.isHeld(leaseId);
  }

  /** The first resource's live lease. */
  override async current(): Promise<Lease | null> {
    for (const member of this.real) {
      const lease = await member.current();
      if (lease) return lease;
    }
    return null;
  }

  /** The open hand-over request on the (first) resource asked for. */
  override async handOverRequest(lease: Lease): Promise<Lease | null> {
    for (const member of this.real) {
      const request = await member.handOverRequest({
        ...lease,
        resource: member.resource,
      }).catch(() => null);
      if (request) return request;
    }
    return null;
  }

  /** The first resource's holders. */
  override holders(): Promise<Lease[]> {
    return this.real[0].holders();
  }

  /** The first resource's waiters. */
  override waiting(): Promise<Lease[]> {
    return this.real[0].waiting();
  }

  /** The first resource's history. */
  override history(limit = 100): Promise<LeaseEvent[]> {
    return this.real[0].history(limit);
  }

  /** Asks the first resource's holder to hand it over. */
  override request(reason: string): Promise<HandOverRequest | null> {
    return this.real[0].request(reason);
  }

  /**
   * Breaks a lease of the (first) resource, and its intention holds, so
   * that nothing it held blocks a lock above or below.
   */
  override async breakLease(leaseId: string, reason: string): Promise<Lease> {
    const broken = await this.real[0].breakLease(leaseId, reason);
    if (broken.id !== "") {
      await Promise.all(
        this.members.map((m) =>
          m instanceof IntentLock
            ? m.breakLease(broken.id, reason).catch(() => {})
            : undefined
        ),
      );
    }
    return broken;
  }

  /** Closes the members, and the handle `own` gave. */
  override async close(): Promise<void> {
    await super.close();
    await this.#owner?.close();
  }
}
