/**
 * The event watcher behind `stormlock watch`, hooks and the dispatcher,
 * written once over any backend: it lists live leases (Stormlock's own
 * bookkeeping included), reads the history of every resource it has
 * seen, and derives what no store records: `expiring` a lead time before
 * a TTL ends, `waiting` when someone joins a queue, `requested` when
 * someone asks for a hand-over. When it sees a TTL pass, it ends the lease
 * itself with a recorded `expired` event (a compare-and-delete on the
 * lease id and its expiry), so an expiry is noticed even when nobody
 * acquires afterwards.
 *
 * It wakes on the store's change events where the backend has them, and
 * polls elsewhere; a failing store is retried with backoff until the
 * signal aborts.
 *
 * @module
 */
import { bookkeeping } from "../kit/views.ts";
import { INTERNAL_MARK } from "../kit/reserved.ts";
import type { Backend, Lease } from "../kit/types.ts";
import { splitQueue } from "./queue.ts";
import {
  eventId,
  fromHistory,
  type Notification,
  type NotificationKind,
  parseRequestName,
  requestName,
} from "./events.ts";

/** The default lead time of `expiring`: ten minutes. */
export const DEFAULT_EXPIRING_LEAD_MS = 10 * 60_000;

/** How far before the start a resource found later is read back, in ms. */
const DISCOVERY_MARGIN_MS = 2000;

/** How long after a TTL passed the watcher tries to record it, in ms. */
const EXPIRE_RETRY_MS = 30_000;

/** The least time between two passes a change wakes, in ms. */
const MIN_GAP_MS = 250;

/** The most change subscriptions one watcher keeps. */
const MAX_SUBSCRIPTIONS = 200;

/** The most event ids remembered, to drop repeats. */
const MAX_SEEN = 100_000;

/** Events read back per resource per pass. */
const HISTORY_PAGE = 100;

/**
 * A backend the watcher reads, with the name the config gives it.
 * @example
 * ```ts ignore
 * const source: WatchedBackend = { name: "sqlite", backend };
 * ```
 */
export interface WatchedBackend {
  /** The backend's name in the config. */
  name: string;
  /** The opened backend. */
  backend: Backend;
}

/**
 * What to watch and where events go.
 * @example
 * ```ts ignore
 * await watchEvents(backends, { prefix: "prod/", signal, onEvent: (e) => console.log(e.kind) });
 * ```
 */
export interface WatchOptions {
  /** Only resources whose name starts with this. @default "" */
  prefix?: string;
  /** Only these kinds reach `onEvent`; all kinds when absent. */
  kinds?: readonly NotificationKind[];
  /**
   * Send recorded events from this time on; without it, only what
   * happens after the watch starts.
   */
  since?: Date;
  /**
   * How long before a lease's TTL ends `expiring` is sent. Leases whose
   * whole TTL is shorter than this get none.
   * @default 10 minutes
   */
  expiringLeadMs?: number;
  /**
   * How often the store is read, in ms.
   * @default 1000, or 5000 where the store announces changes and can be
   * searched for recently changed locks
   */
  pollMs?: number;
  /** Stops the watch. */
  signal: AbortSignal;
  /** Gets each event, in order; the next waits for it to settle. */
  onEvent(event: Notification): void | Promise<void>;
  /** Hears about a store failure; the watcher retries with backoff. */
  onError?(error: Error, backend: string): void;
  /** Hears that a failing store answers again. */
  onRecover?(backend: string): void;
  /** Called once, after the first look at every backend. */
  onReady?(): void;
}

/** What the watcher remembers of one backend between passes. */
interface BackendState {
  source: WatchedBackend;
  /** Resources whose history is read on every pass. */
  known: Set<string>;
  /** Resources read at least once, and so baselined. */
  read: Set<string>;
  /** The live lock leases at the last pass, by resource. */
  live: Map<string, Lease>;
  /** Leases past their TTL that the store has not ended yet. */
  lapsed: Map<string, Lease>;
  subscriptions: Map<string, AbortController>;
  failing: boolean;
  /** When the last pass began, in epoch ms. */
  lastPass: number;
  /** Whether the store answered a search for recently changed locks. */
  searchable: boolean;
}

/**
 * Watches `backends` until `options.signal` aborts, calling
 * `options.onEvent` for each event in order.
 *
 * @param backends The backends to watch, with their config names.
 * @param options What to watch and where events go.
 * @example
 * ```ts ignore
 * const stop = new AbortController();
 * await watchEvents([{ name: "sqlite", backend }], {
 *   prefix: "deploy",
 *   signal: stop.signal,
 *   onEvent: (event) => console.log(event.kind, event.lease.resource),
 * });
 * ```
 */
export async function watchEvents(
  backends: readonly WatchedBackend[],
  options: WatchOptions,
): Promise<void> {
  const prefix = options.prefix ?? "";
  const lead = options.expiringLeadMs ?? DEFAULT_EXPIRING_LEAD_MS;
  const start = Date.now();
  const baseline = options.since?.getTime();
  const seen = new Set<string>();
  const { signal } = options;
  let wake: () => void = () => {};
  const wanted = (kind: NotificationKind) =>
    !options.kinds || options.kinds.includes(kind);
  const states: BackendState[] = backends.map((source) => ({
    source,
    known: new Set(prefix ? [prefix] : []),
    read: new Set(),
    live: new Map(),
    lapsed: new Map(),
    subscriptions: new Map(),
    failing: false,
    lastPass: Date.now(),
    searchable: false,
  }));
  const remember = (id: string) => {
    seen.add(id);
    if (seen.size > MAX_SEEN) {
      seen.delete(seen.values().next().value as string);
    }
  };
  let first = true;
  let backoffMs = 0;

  let passStarted = 0;
  while (!signal.aborted) {
    passStarted = Date.now();
    const found: Notification[] = [];
    let failed = false;
    let nextDue = Infinity;
    for (const state of states) {
      try {
        const due = await pass(state, found);
        nextDue = Math.min(nextDue, due);
        if (state.failing) {
          state.failing = false;
          options.onRecover?.(state.source.name);
        }
      } catch (error) {
        failed = true;
        if (!state.failing) {
          state.failing = true;
          options.onError?.(error as Error, state.source.name);
        }
        // Subscriptions may have died with the connection: make new ones.
        for (const controller of state.subscriptions.values()) {
          controller.abort();
        }
        state.subscriptions.clear();
      }
    }
    if (first) options.onReady?.();
    first = false;
    found.sort((a, b) =>
      a.at.getTime() - b.at.getTime() ||
      (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0)
    );
    for (const event of found) {
      if (signal.aborted) return;
      if (seen.has(event.eventId)) continue;
      remember(event.eventId);
      if (wanted(event.kind)) await options.onEvent(event);
    }
    backoffMs = failed ? Math.min(15_000, Math.max(1000, backoffMs * 2)) : 0;
    // Only a store that announces changes and can search its history
    // for new locks may be read less often.
    const relaxed = states.every((state) =>
      state.source.backend.capabilities.events && state.searchable
    );
    const pollMs = options.pollMs ?? (relaxed ? 5000 : 1000);
    const waitMs = backoffMs ||
      Math.max(50, Math.min(pollMs, nextDue - Date.now()));
    await new Promise<void>((resolve) => {
      let timer = setTimeout(done, waitMs);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        wake = () => {};
        resolve();
      }
      // A burst of changes makes one pass, not one each: the store's load
      // stays bounded however busy the locks are.
      wake = () => {
        clearTimeout(timer);
        timer = setTimeout(
          done,
          Math.max(0, passStarted + MIN_GAP_MS - Date.now()),
        );
      };
      signal.addEventListener("abort", done, { once: true });
    });
  }
  for (const state of states) {
    for (const controller of state.subscriptions.values()) controller.abort();
  }

  /** One read of one backend; returns when the next derived event is due. */
  async function pass(
    state: BackendState,
    found: Notification[],
  ): Promise<number> {
    const { backend, name } = state.source;
    const now = Date.now();
    let nextDue = Infinity;
    const leases = backend.capabilities.list
      ? await backend.list(prefix, { internal: true })
      : await exactLeases(backend, prefix);
    const split = splitQueue(leases);
    // Stormlock's own bookkeeping (requests, the dispatcher) is not a lock.
    const locks = split.locks.filter((lease) =>
      !lease.resource.includes(INTERNAL_MARK)
    );
    const { waiting } = split;
    const live = new Map(locks.map((lease) => [lease.resource, lease]));
    for (const lease of locks) state.known.add(lease.resource);
    // Locks taken and freed between two looks (or before a resumed
    // watch) are found in history, where the store can search it.
    const lookBack = first ? baseline : state.lastPass - DISCOVERY_MARGIN_MS;
    const recent = new Set<string>();
    if (lookBack !== undefined && backend.recentResources) {
      // A store that refuses the search (an ACL, say) still has listing.
      const names = await backend.recentResources(prefix, new Date(lookBack))
        .catch(() => undefined);
      state.searchable = names !== undefined;
      for (const resource of names ?? []) {
        if (resource.includes(INTERNAL_MARK)) continue;
        state.known.add(resource);
        recent.add(resource);
      }
    }

    // A lease seen live last time and gone past its TTL now: record it.
    // A store may lag (etcd deletes expired keys in a sweep), so a lease
    // not ended at once is tried again for a while.
    for (const [resource, old] of state.live) {
      if (live.get(resource)?.id === old.id) continue;
      if (old.expires.getTime() > now) continue;
      state.lapsed.set(resource, old);
    }
    for (const [resource, old] of state.lapsed) {
      if (live.get(resource)?.id === old.id) {
        state.lapsed.delete(resource); // renewed after all
        continue;
      }
      const ended = backend.expire
        ? await backend.expire(resource, old.id)
        : false;
      if (ended || now - old.expires.getTime() > EXPIRE_RETRY_MS) {
        state.lapsed.delete(resource);
      }
      // Not ended here: the store can't, or someone already did (and
      // recorded it under the same id), so name it as the store does.
      if (!ended) {
        found.push({
          eventId: expiredId(resource, old),
          kind: "expired",
          at: old.expires,
          backend: name,
          lease: old,
        });
      }
    }

    // Whether nothing can have happened to a lock since the last pass: a
    // live lease with the same id, expiry and reason (every event changes
    // one), or a free lock the store's search did not name.
    const unchanged = (resource: string) => {
      const before = state.live.get(resource);
      const after = live.get(resource);
      if (before && after) {
        return before.id === after.id && before.reason === after.reason &&
          before.expires.getTime() === after.expires.getTime();
      }
      return !before && !after && state.searchable && !recent.has(resource);
    };
    if (backend.capabilities.history) {
      for (const resource of state.known) {
        if (state.read.has(resource) && unchanged(resource)) continue;
        const events = await backend.history(resource, HISTORY_PAGE);
        const newest = events[0];
        // A lease taken and lapsed between two looks was never seen live;
        // its history ends with it still on. End it as a seen one.
        if (
          newest && newest.kind !== "released" && newest.kind !== "broken" &&
          newest.kind !== "expired" && !live.has(resource) &&
          !state.live.has(resource) && !state.lapsed.has(resource) &&
          newest.expires.getTime() <= now &&
          newest.expires.getTime() >= (baseline ?? start) &&
          !seen.has(expiredId(resource, newest))
        ) {
          const { kind: _kind, at: _at, by: _by, ...lease } = newest;
          state.lapsed.set(resource, lease);
          nextDue = now;
        }
        const isNew = !state.read.has(resource);
        state.read.add(resource);
        const from = baseline ??
          (isNew && first ? Infinity : start - DISCOVERY_MARGIN_MS);
        for (const event of events.reverse()) {
          const note = fromHistory(name, event);
          if (event.at.getTime() < from) remember(note.eventId);
          else found.push(note);
        }
      }
    } else {
      // Without history, changes are read off the listing.
      for (const lease of locks) {
        if (state.live.get(lease.resource)?.id === lease.id) continue;
        if (first && baseline === undefined) continue;
        found.push({
          eventId: eventId(
            [lease.resource, "acquired", lease.id, lease.created.getTime()],
            lease.created.getTime(),
          ),
          kind: "acquired",
          at: lease.created,
          backend: name,
          lease,
        });
      }
      for (const [resource, old] of state.live) {
        if (live.get(resource)?.id === old.id) continue;
        if (old.expires.getTime() <= now) continue;
        found.push({
          eventId: eventId([resource, "released", old.id], now),
          kind: "released",
          at: new Date(now),
          backend: name,
          lease: old,
        });
      }
    }

    for (const lease of locks) {
      const expires = lease.expires.getTime();
      nextDue = Math.min(nextDue, expires + 50);
      if (expires - lease.created.getTime() <= lead) continue;
      const dueAt = expires - lead;
      if (now < dueAt) {
        nextDue = Math.min(nextDue, dueAt);
        continue;
      }
      found.push({
        eventId: eventId(
          [lease.resource, "expiring", lease.id, expires],
          dueAt,
        ),
        kind: "expiring",
        at: new Date(now),
        backend: name,
        lease,
      });
    }

    for (const [resource, queue] of waiting) {
      for (const waiter of queue) {
        const note: Notification = {
          eventId: eventId(
            [resource, "waiting", waiter.id],
            waiter.created.getTime(),
          ),
          kind: "waiting",
          at: waiter.created,
          backend: name,
          lease: live.get(resource) ?? waiter,
          by: {
            principal: waiter.principal,
            ...(waiter.host ? { host: waiter.host } : {}),
          },
        };
        if (isOld(note.at)) remember(note.eventId);
        else found.push(note);
      }
    }

    for (const request of leases) {
      const named = parseRequestName(request.resource);
      if (!named) continue;
      const holder = live.get(named.resource);
      if (!holder || holder.id !== named.leaseId) continue;
      const note: Notification = {
        eventId: eventId(
          [named.resource, "requested", request.id],
          request.created.getTime(),
        ),
        kind: "requested",
        at: request.created,
        backend: name,
        lease: holder,
        by: {
          principal: request.principal,
          ...(request.host ? { host: request.host } : {}),
          ...(request.reason ? { reason: request.reason } : {}),
        },
      };
      if (isOld(note.at)) remember(note.eventId);
      else found.push(note);
    }

    state.live = live;
    state.lastPass = now;
    if (backend.capabilities.events) subscribe(state);
    return nextDue;
  }

  /** The id of a lease's `expired` event, as the store records it. */
  function expiredId(resource: string, lease: Lease): string {
    const expires = lease.expires.getTime();
    return eventId([resource, "expired", lease.id, expires, expires], expires);
  }

  /** Whether a derived event happened before what this watch sends. */
  function isOld(at: Date): boolean {
    return at.getTime() < (baseline ?? (first ? Infinity : start));
  }

  function subscribe(state: BackendState): void {
    for (const resource of state.known) {
      if (state.subscriptions.size >= MAX_SUBSCRIPTIONS) return;
      if (
        state.subscriptions.has(resource) || resource.includes(INTERNAL_MARK)
      ) {
        continue;
      }
      const controller = new AbortController();
      signal.addEventListener("abort", () => controller.abort(), {
        once: true,
      });
      state.subscriptions.set(resource, controller);
      state.source.backend.watch(resource, () => wake(), controller.signal)
        .catch(() => {
          // Polling still sees the change; try again next pass.
          state.subscriptions.delete(resource);
          controller.abort();
        });
    }
  }
}

/**
 * Without a listing: the lease on `resource` itself, and the hand-over
 * request made of it.
 */
async function exactLeases(
  backend: Backend,
  resource: string,
): Promise<Lease[]> {
  if (resource === "") return [];
  const lease = await backend.current(resource);
  if (!lease) return [];
  const request = await bookkeeping(backend).current(
    requestName(resource, lease.id),
  );
  return request ? [lease, request] : [lease];
}
