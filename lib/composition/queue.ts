/**
 * A lock's waiting queue, written once over any backend that can list: a
 * waiter takes a ticket (the fence of a per-lock counter resource, so
 * tickets strictly increase in arrival order), registers as a short lease
 * named after its ticket, and renews it while it waits. A waiter that dies
 * stops renewing, and its registration expires on its own. The waiter with
 * the lowest live ticket is served first.
 *
 * The order is advisory: waiters defer to earlier waiters, and a plain
 * acquire defers to the queue, but the lock itself is still one atomic
 * check-and-set.
 *
 * @module
 */
import { bookkeeping, boundedBy } from "../kit/views.ts";
import { INTERNAL_MARK, isBookkeeping } from "../kit/reserved.ts";
import {
  AcquireUnknownError,
  BackendUnavailableError,
  LeaseNotHeldError,
  LockHeldError,
} from "../kit/errors.ts";
import { sleep } from "../kit/deadline.ts";
import type { Backend, Lease } from "../kit/types.ts";

/**
 * What separates a lock's name from a waiter's ticket in the name of the
 * waiter's registration (`deploy\u001fwait\u001f0000000000000042`). Only
 * the queue reads it: a store learns that a name is a registration, and
 * of which lock, from `Operation.waitsFor`.
 * @example
 * ```ts
 * import { WAIT_MARK } from "./queue.ts";
 * console.log(JSON.stringify(WAIT_MARK)); // "\u001fwait\u001f"
 * ```
 */
export const WAIT_MARK = `${INTERNAL_MARK}wait${INTERNAL_MARK}`;

/**
 * The lock a waiter's registration waits for, or `undefined` for any
 * other name.
 * @example
 * ```ts
 * import { waitedLock } from "./queue.ts";
 * waitedLock("deploy\u001fwait\u001f0000000000000001"); // "deploy"
 * ```
 */
export function waitedLock(resource: string): string | undefined {
  const at = resource.lastIndexOf(WAIT_MARK);
  return at === -1 ? undefined : resource.slice(0, at);
}

/**
 * The backend as the queue uses it: allowed Stormlock's reserved names,
 * and telling the store which names are waiters' registrations.
 * @example
 * ```ts ignore
 * await queueView(backend).release(registration.resource, registration.id);
 * ```
 */
export function queueView(backend: Backend): Backend {
  return bookkeeping(backend, { waitedLock });
}

/** How long a waiter's registration lives without a heartbeat, in seconds. */
export const WAITER_TTL_SECONDS = 10;
/**
 * A registration that claims to outlive this (seconds) was not made by a
 * waiter, which registers for {@linkcode WAITER_TTL_SECONDS}: it is
 * ignored, so it can't hold up a free lock. The margin covers clock skew
 * between hosts.
 */
const WAITER_TTL_LIMIT_MS = (WAITER_TTL_SECONDS + 30) * 1000;

/** Whether a registration can be a live waiter's (see above). */
function isWaiter(lease: Lease, now = Date.now()): boolean {
  return lease.expires.getTime() - now <= WAITER_TTL_LIMIT_MS;
}

/** How often a waiter renews its registration, in ms. */
const HEARTBEAT_MS = 3000;

/**
 * The prefix of a lock's waiter registrations.
 * @example
 * ```ts
 * import { waiterPrefix } from "./queue.ts";
 * waiterPrefix("deploy"); // "deploy\u001fwait\u001f"
 * ```
 */
export function waiterPrefix(resource: string): string {
  return `${resource}${WAIT_MARK}`;
}

/**
 * Splits a listing that includes Stormlock's bookkeeping into the locks
 * and, for each, its waiters (first come first).
 * @example
 * ```ts ignore
 * const { locks, waiting } = splitQueue(await backend.list("", { internal: true }));
 * ```
 */
export function splitQueue(
  leases: Lease[],
): { locks: Lease[]; waiting: Map<string, Lease[]> } {
  const locks: Lease[] = [];
  const waiting = new Map<string, Lease[]>();
  const mark = WAIT_MARK;
  for (const lease of leases) {
    const at = lease.resource.lastIndexOf(mark);
    const ticket = lease.resource.slice(at + mark.length);
    if (at === -1 || !/^\d{16}$/.test(ticket) || !isWaiter(lease)) {
      // Anything a waiter did not make is shown: nothing live is hidden.
      if (!isBookkeeping(lease.resource) || at !== -1) locks.push(lease);
      continue;
    }
    const resource = lease.resource.slice(0, at);
    const queue = waiting.get(resource) ?? [];
    queue.push({ ...lease, resource });
    waiting.set(resource, queue);
  }
  return { locks, waiting };
}

function counterName(resource: string): string {
  return `${resource}${INTERNAL_MARK}queue`;
}

/**
 * The live waiters of a lock, first come first, as registrations whose
 * `resource` is the lock's name. Empty when the backend can't list.
 * @example
 * ```ts ignore
 * const waiting = await waiters(backend, "deploy");
 * ```
 */
export async function waiters(
  backend: Backend,
  resource: string,
): Promise<Lease[]> {
  if (!backend.capabilities.list) return [];
  const prefix = waiterPrefix(resource);
  const registrations = await queueView(backend).list(prefix);
  return registrations
    .filter((lease) =>
      /^\d{16}$/.test(lease.resource.slice(prefix.length)) && isWaiter(lease)
    )
    .sort((a, b) => a.resource < b.resource ? -1 : 1)
    .map((lease) => ({ ...lease, resource }));
}

/**
 * One waiter's place in a lock's queue, kept alive by a heartbeat until
 * {@linkcode WaitTicket.leave}.
 *
 * @example
 * ```ts ignore
 * const ticket = await WaitTicket.take(backend, "deploy", "ann@host");
 * try {
 *   const { position } = await ticket.position();
 * } finally {
 *   await ticket.leave();
 * }
 * ```
 */
export class WaitTicket {
  readonly #backend: Backend;
  readonly #resource: string;
  readonly #principal: string;
  readonly #name: string;
  #lease?: Lease;
  #timer?: ReturnType<typeof setInterval>;
  #left = false;

  private constructor(
    backend: Backend,
    resource: string,
    principal: string,
    ticket: number,
  ) {
    this.#backend = backend;
    this.#resource = resource;
    this.#principal = principal;
    this.#name = `${waiterPrefix(resource)}${String(ticket).padStart(16, "0")}`;
  }

  /**
   * Joins the queue of `resource`. Without a listing backend the ticket
   * is inert: every waiter is first.
   */
  static async take(
    backend: Backend,
    resource: string,
    principal: string,
  ): Promise<WaitTicket> {
    backend = queueView(backend);
    let ticket = 0;
    if (backend.capabilities.list) {
      // Waiters arriving together take turns on the counter; one held
      // longer than its 1 s (not ours) must not stop the wait.
      let counter: Lease | undefined;
      for (let tries = 0; !counter && tries < 20; tries++) {
        try {
          counter = await backend.acquire(counterName(resource), principal, 1);
        } catch (error) {
          if (!(error instanceof LockHeldError)) throw error;
          if (error.holder.expires.getTime() - Date.now() > 5000) break;
          await sleep(20 + Math.random() * 80);
        }
      }
      if (counter) {
        await backend.release(counter.resource, counter.id).catch(() => {});
      }
      // Without fencing, the host clock orders the tickets.
      ticket = backend.capabilities.fencing && counter && counter.fence > 0
        ? counter.fence
        : Date.now() * 1000 + Math.floor(Math.random() * 1000);
    }
    const waiter = new WaitTicket(backend, resource, principal, ticket);
    if (backend.capabilities.list) {
      await waiter.#register();
      waiter.#timer = setInterval(() => {
        waiter.#beat().catch(() => {});
      }, HEARTBEAT_MS);
    }
    return waiter;
  }

  async #register(): Promise<void> {
    this.#lease = await this.#backend.acquire(
      this.#name,
      this.#principal,
      WAITER_TTL_SECONDS,
    );
  }

  /** Renews the registration; re-registers it (same ticket) if it lapsed. */
  async #beat(): Promise<void> {
    if (this.#left) return;
    try {
      if (!this.#lease) return await this.#register();
      this.#lease = await this.#backend.renew(
        this.#name,
        this.#lease.id,
        WAITER_TTL_SECONDS,
      );
    } catch (error) {
      // A pause longer than the TTL lets the registration lapse: the
      // ticket keeps its place, since the name carries it.
      if (error instanceof LeaseNotHeldError) await this.#register();
      else throw error;
    }
  }

  /**
   * This waiter's place: 0 when it is first, and how many wait in all.
   */
  async position(): Promise<{ position: number; waiting: number }> {
    if (!this.#backend.capabilities.list) return { position: 0, waiting: 1 };
    const queue = await waiters(this.#backend, this.#resource);
    const mine = queue.findIndex((lease) => lease.id === this.#lease?.id);
    if (mine === -1) {
      // Lapsed during a server pause: back in, at the same ticket.
      await this.#beat();
      return this.position();
    }
    return { position: mine, waiting: queue.length };
  }

  /** Leaves the queue: stops the heartbeat and drops the registration. */
  async leave(): Promise<void> {
    this.#left = true;
    clearInterval(this.#timer);
    if (this.#lease) {
      await this.#backend.release(this.#name, this.#lease.id).catch(() => {});
    }
  }
}

/**
 * Where a waiter stands.
 * @example
 * ```ts
 * import type { WaitState } from "@stormlock/stormlock";
 * const state: WaitState = { position: 1, waiting: 3, waitedMs: 1200, queued: false };
 * ```
 */
export interface WaitState {
  /** Waiters ahead of this one; 0 when it is next. */
  position: number;
  /** Waiters in all, this one included. */
  waiting: number;
  /** How long it has waited, in ms. */
  waitedMs: number;
  /** Whether the lock is free and only earlier waiters are in the way. */
  queued: boolean;
}

/**
 * Who hears about a wait for a held lock.
 * @example
 * ```ts
 * import type { WaitListeners } from "@stormlock/stormlock";
 * const listeners: WaitListeners = {
 *   onWait: (holder, state) => console.error(`${state.position} ahead; held by ${holder.principal}`),
 * };
 * ```
 */
export interface WaitListeners {
  /**
   * Called each time the wait is checked, with the holder's lease and the
   * queue. When the lock is free but earlier waiters are ahead, `holder`
   * is the first waiter's registration and `state.queued` is set.
   */
  onWait?: (holder: Lease, state: WaitState) => void;
  /**
   * Called when the backend fails while waiting; the wait goes on, with
   * backoff, until its deadline.
   */
  onRetry?: (error: BackendUnavailableError) => void;
}

/**
 * Waits in the queue of `resource`, first come first served, until `take`
 * gets the lock or `waitMs` passes. A backend failure does not end the
 * wait: it is retried with backoff until the deadline.
 *
 * @param backend The lock's backend.
 * @param resource The lock.
 * @param principal Who waits.
 * @param take Sends one acquire, on the backend it is given (bounded by
 * the wait's deadline).
 * @param waitMs How long to wait.
 * @param options Who hears about the wait.
 * @throws {LockHeldError} when the wait ends with the lock still held.
 * @throws {BackendUnavailableError} when the backend still fails at the end.
 * @example
 * ```ts ignore
 * const lease = await waitInQueue(backend, "deploy", "ann@host", (b) => b.acquire("deploy", "ann@host", 60), 60_000, {});
 * ```
 */
export async function waitInQueue(
  backend: Backend,
  resource: string,
  principal: string,
  take: (backend: Backend) => Promise<Lease>,
  waitMs: number,
  options: WaitListeners,
): Promise<Lease> {
  const started = Date.now();
  const deadline = started + waitMs;
  // Each try gets at most the time left, so a busy store can't carry
  // the wait far past its end.
  const bounded = boundedBy(backend, deadline);
  let ticket: WaitTicket | undefined;
  let refused: LockHeldError | undefined;
  let failure: BackendUnavailableError | undefined;
  // Leases an attempt may have taken though its answer was lost: if one
  // turns up as the holder, it is ours.
  const unknown = new Map<string, AcquireUnknownError>();
  // With change events, a release wakes the wait at once; polling stays
  // as the safety net (and is all there is without them).
  const watching = new AbortController();
  let wake = () => {};
  let woken = false;
  const watch = async () => {
    if (!backend.capabilities.events) return false;
    try {
      await backend.watch(resource, () => {
        woken = true;
        wake();
      }, watching.signal);
      return true;
    } catch {
      return false;
    }
  };
  let watched: Promise<boolean> | undefined;
  try {
    for (let backoff = 250;;) {
      // The next in line looks often; the others need only keep place.
      let pause = 1000;
      try {
        ticket ??= await WaitTicket.take(
          bounded,
          resource,
          principal,
        );
        const { position, waiting } = await ticket.position();
        let holder: Lease | null = null;
        if (position === 0) {
          watched ??= watch();
          pause = await watched ? 2000 : 250;
          try {
            return await take(bounded);
          } catch (error) {
            if (error instanceof AcquireUnknownError) {
              unknown.set(error.leaseId, error);
            }
            if (!(error instanceof LockHeldError)) throw error;
            holder = error.holder;
          }
        } else {
          holder = await bounded.current(resource);
        }
        if (holder && unknown.has(holder.id)) return holder;
        const queued = holder === null;
        holder ??= (await waiters(bounded, resource))[0] ?? null;
        if (holder) {
          // This wait leaves the queue when it gives up: count the others.
          refused = new LockHeldError(holder, {
            waiting: Math.max(0, waiting - 1),
            queued,
          });
          options.onWait?.(holder, {
            position,
            waiting,
            waitedMs: Date.now() - started,
            queued,
          });
          if (!queued) {
            pause = Math.min(
              pause,
              holder.expires.getTime() - Date.now() + 50,
            );
          }
        }
        failure = undefined;
        backoff = 250;
      } catch (error) {
        if (!(error instanceof BackendUnavailableError)) throw error;
        failure = error;
        options.onRetry?.(error);
        pause = backoff;
        backoff = Math.min(backoff * 2, 5000);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        // A try the deadline cut short says less than a refusal before it.
        const cut = failure && /the time left to wait/.test(failure.message);
        throw [...unknown.values()].at(-1) ??
          (cut && refused ? refused : failure ?? refused);
      }
      if (!woken) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(
            resolve,
            Math.max(20, Math.min(pause, left)),
          );
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      woken = false;
      wake = () => {};
    }
  } finally {
    watching.abort();
    await ticket?.leave();
  }
}
