/**
 * The etcd backend: locks in an etcd v3 cluster, over its JSON gateway
 * (see `client.ts`). The keys are laid out in `keyspace.ts`.
 *
 * Every change is one transaction that compares the lease key and the
 * shadow's `mod_revision` as read, then writes the lease, the shadow and
 * the events, and trims old events. The shadow changes with every event,
 * so a resource's event writes are serialized and their keys increase.
 * A transaction whose answer was lost is retried from a fresh read, which
 * recognizes a change that already landed.
 *
 * @module
 */
import type {
  AcquireRequest,
  DefinedBackend,
  Ending,
  KitContext,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { sleep, within } from "../../lib/kit/deadline.ts";
import { admits, EXCLUSIVE } from "../../lib/kit/holders.ts";
import type { Breaker, Lease, LeaseEvent } from "../../lib/kit/types.ts";
import {
  b64,
  type Compare,
  decoder,
  Gateway,
  type Member,
  prefixEnd,
  type RangeReply,
  unb64,
} from "./client.ts";
import { classifyEtcdError } from "./errors.ts";
import {
  type EventValue,
  type Granted,
  type Holder,
  Keyspace,
  type StoredLease,
  stripped,
} from "./keyspace.ts";
import {
  expiredEvent,
  heirOf,
  listLeases,
  promote,
  readHolder,
  readHolders,
  sortOthers,
} from "./holders.ts";
import { options, parseMembers, together } from "./options.ts";
import { Watches } from "./watch.ts";

/**
 * etcd deletes the keys of an expired lease in a sweep that runs every
 * 500 ms, then through consensus. An acquirer that finds an expired
 * holder's key waits this long for the sweep before calling it held.
 */
const SWEEP_WAIT_MS = 1500;

/** Settings `open` derives from the options. */
interface EtcdSettings {
  members: Member[];
  tls: { caCerts?: string[]; cert?: string; key?: string };
  user?: string;
  password?: string;
  prefix: string;
  keep: number;
  keepMs: number;
  timeoutMs: number;
}

/** A lock store in an etcd cluster. Expiry uses etcd's lease clock. */
class EtcdStore implements Store {
  readonly label: string;
  readonly #gateway: Gateway;
  readonly #keys: Keyspace;
  readonly #watches: Watches;
  readonly #context: KitContext;
  readonly #settings: EtcdSettings;
  /** Revokes under way in the background. */
  readonly #settling = new Set<Promise<void>>();

  constructor(settings: EtcdSettings, context: KitContext) {
    this.label = `etcd at ${settings.members.map((m) => m.name).join(", ")}`;
    this.#settings = settings;
    this.#context = context;
    this.#gateway = new Gateway(settings.members, settings.tls, settings);
    this.#keys = new Keyspace(
      settings.prefix,
      this.#gateway,
      context,
      this.label,
      { count: settings.keep, ms: settings.keepMs },
      settings.timeoutMs,
    );
    this.#watches = new Watches(
      (...args) => this.#gateway.watch(...args),
      settings,
    );
  }

  /** The holder as others see it, with the server-checked expiry. */
  async #visible(holder: Holder, op: Operation): Promise<Lease | null> {
    const expires = await this.#keys.serverExpiry(holder, op);
    if (expires === null) return null;
    return { ...holder.lease, expires: new Date(expires) };
  }

  #lease(resource: string, record: StoredLease, fence: number | string): Lease {
    return this.#context.leaseFromRecord(resource, { ...record, fence });
  }

  // The primitives.

  async acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    const { resource } = request;
    const limit = request.limit ?? EXCLUSIVE;
    const sweepEnd = Date.now() + SWEEP_WAIT_MS;
    // The etcd lease is granted only once the lock reads as free, so a
    // crowd refused by a holder leaves no leases behind it.
    let granted: Granted | undefined;
    let won = false;
    // Set while a commit is unanswered: it may land, or have landed.
    let unsure = false;
    // The queue: the transaction also asks that no waiter registration
    // exists, so nobody waiting costs no read; only a refusal reads them.
    const waiters = request.waiters && this.#keys.leaseKey(request.waiters);
    let deferring = waiters !== undefined;
    try {
      let state = await this.#keys.state(resource, op);
      for (;;) {
        const { holder } = state;
        const mine = [holder, ...state.others].find((one) =>
          one?.record.id === request.id
        );
        if (mine) {
          won = true; // An attempt whose answer was lost had landed.
          return mine.lease;
        }
        let first: Lease | null = null;
        if (holder) {
          first = await this.#visible(holder, op);
          if (!first) {
            // The holder expired, but etcd's sweep has not deleted its key.
            if (Date.now() > sweepEnd || op.deadline - Date.now() < 500) {
              throw new this.#context.errors.LockHeldError(holder.lease);
            }
            await sleep(100);
            state = await this.#keys.state(resource, op);
            continue;
          }
        }
        const { live, gone } = await sortOthers(this.#keys, state.others, op);
        const holding = first ? [first, ...live] : live;
        if (!admits(holding, limit)) {
          holding.sort((a, b) => a.fence - b.fence);
          throw new this.#context.errors.LockHeldError(holding[0], {
            holders: holding.length,
          });
        }
        granted ??= await this.#keys.grant(request.ttlSeconds, op);
        const record: StoredLease = stripped({
          id: request.id,
          principal: request.principal,
          host: request.host,
          reason: request.reason,
          link: request.link,
          created: granted.created,
          expires: granted.expires,
          limit: limit === EXCLUSIVE ? undefined : limit,
        });
        const events: EventValue[] = [];
        const last = state.shadow;
        if (!holder && last?.value.state === "held") {
          // Its key is gone without a release: etcd expired it.
          const { state: _, ...old } = last.value;
          events.push({
            ...old,
            fence: old.fence ?? Number(last.kv.mod_revision),
            kind: "expired",
            at: old.expires,
          });
        }
        events.push(...gone.map((other) => expiredEvent(other)));
        events.push({ ...record, kind: "acquired", at: record.created });
        const noWaiters: Compare[] = deferring && waiters
          ? [{
            key: b64(waiters),
            range_end: b64(prefixEnd(waiters)),
            target: "CREATE",
            result: "EQUAL",
            create_revision: "0",
          }]
          : [];
        // The first holder takes the lock's own key, as an exclusive one
        // always has; further holders go beside it.
        const key = b64(
          holder
            ? this.#keys.holderKey(resource, request.id)
            : this.#keys.leaseKey(resource),
        );
        unsure = true;
        const result = await this.#keys.commit(
          resource,
          state,
          [{
            key,
            target: "CREATE",
            result: "EQUAL",
            create_revision: "0",
          }, ...noWaiters],
          [
            {
              request_put: {
                key,
                value: b64(JSON.stringify(record)),
                lease: granted.leaseNo,
              },
            },
            ...(holder
              ? this.#keys.touchShadow(resource, state)
              : [this.#keys.putShadow(resource, { ...record, state: "held" })]),
            ...gone.map((other) => ({
              request_delete_range: { key: other.kv.key },
            })),
          ],
          events,
          op,
        );
        unsure = false;
        if (result.succeeded) {
          won = true;
          return this.#lease(resource, record, result.revision);
        }
        if (deferring && request.waiters) {
          const live = await this.list(request.waiters, op);
          if (live.length > 0) {
            live.sort((a, b) => a.resource < b.resource ? -1 : 1);
            throw new this.#context.errors.LockHeldError(
              { ...live[0], resource },
              { waiting: live.length, queued: true },
            );
          }
          // Only registrations that expired but are not yet swept.
          deferring = false;
        }
        state = await this.#keys.state(resource, op);
      }
    } finally {
      // A lost race must not leave its etcd lease behind; but one whose
      // commit may have landed must not be revoked blindly: that would
      // delete a lock nobody released (the kit settles it instead).
      if (granted && !won) {
        this.#settle(granted.leaseNo, unsure ? request : undefined);
      }
    }
  }

  /**
   * Revokes the etcd lease of an acquire that did not win, in the
   * background (`close` waits for it). With `landed`, the acquire's commit
   * went unanswered: the lease is revoked only once a read shows the key
   * is not on it; if the read fails too, it is left to expire by its TTL.
   */
  #settle(leaseNo: string, landed?: AcquireRequest): void {
    const work = (async () => {
      if (landed) {
        try {
          const holder = await within(
            this.#settings.timeoutMs,
            (bound) =>
              readHolder(this.#keys, landed.resource, landed.id, bound),
          );
          if (holder?.kv.lease === leaseNo) return;
        } catch {
          return;
        }
      }
      await this.#keys.revoke(leaseNo);
    })();
    this.#settling.add(work);
    work.finally(() => this.#settling.delete(work));
  }

  async renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const reading = this.#keys.state(resource, op);
    reading.catch(() => {});
    // An etcd lease's TTL is fixed when granted (a keep-alive restarts
    // it), so a new TTL needs a new lease.
    const granted = await this.#keys.grant(ttlSeconds, op);
    // Whether the key moved onto the new lease: unknown until etcd
    // answers, since a lost answer may follow a move that landed.
    let moved: boolean | undefined;
    let oldLeaseNo: string | undefined;
    try {
      let state = await reading;
      for (;;) {
        const first = state.holder?.record.id === leaseId;
        const holder = first
          ? state.holder
          : state.others.find((other) => other.record.id === leaseId);
        if (!holder) {
          moved = false;
          throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
        }
        if (holder.kv.lease === granted.leaseNo) {
          moved = true; // An attempt whose answer was lost had landed.
          return holder.lease;
        }
        if (!(await this.#keys.isLive(holder, op))) {
          moved = false;
          throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
        }
        const before = holder.record;
        const record: StoredLease = stripped({
          ...before,
          reason: change.reason ?? before.reason,
          fence: holder.lease.fence,
          expires: granted.expires,
        });
        const changed = change.reason !== undefined &&
          change.reason !== before.reason;
        const key = holder.kv.key;
        const result = await this.#keys.commit(
          resource,
          state,
          {
            key,
            target: "MOD",
            result: "EQUAL",
            mod_revision: holder.kv.mod_revision,
          },
          [
            {
              request_put: {
                key,
                value: b64(JSON.stringify(record)),
                lease: granted.leaseNo,
              },
            },
            ...(first
              ? [this.#keys.putShadow(resource, { ...record, state: "held" })]
              : this.#keys.touchShadow(resource, state)),
          ],
          [{
            ...record,
            kind: changed ? "reason-changed" : "renewed",
            at: Date.now(),
          }],
          op,
        );
        if (result.succeeded) {
          moved = true;
          oldLeaseNo = holder.kv.lease;
          return this.#lease(resource, record, holder.lease.fence);
        }
        state = await this.#keys.state(resource, op);
      }
    } finally {
      // Revoke only the etcd lease the key is known not to be on: revoking
      // the one it is on deletes it. Without an answer, both are left to
      // expire by their TTLs.
      if (moved === false) this.#settle(granted.leaseNo);
      if (moved === true && oldLeaseNo) this.#settle(oldLeaseNo);
    }
  }

  /** Deletes the live lease `leaseId`, recording `kind`; or throws. */
  async #end(
    resource: string,
    leaseId: string,
    kind: "released" | "broken",
    op: Operation,
    by?: Breaker,
  ): Promise<Lease> {
    let tried = false;
    // A further holder, or a first one with an heir, ended by an attempt
    // whose answer was lost.
    let attempted: Holder | undefined;
    for (;;) {
      const state = await this.#keys.state(resource, op);
      const { shadow } = state;
      const first = state.holder?.record.id === leaseId;
      const holder = first
        ? state.holder
        : state.others.find((other) => other.record.id === leaseId);
      if (!holder || !(await this.#keys.isLive(holder, op))) {
        // After a transaction whose answer was lost, it may have landed.
        if (
          tried && shadow?.value.id === leaseId && shadow.value.state === kind
        ) {
          const { state: _, ...record } = shadow.value;
          return this.#lease(resource, record, record.fence ?? 0);
        }
        if (!holder && attempted) return attempted.lease;
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const record: StoredLease = {
        ...holder.record,
        fence: holder.lease.fence,
      };
      const key = holder.kv.key;
      const event: EventValue = { ...record, kind, at: Date.now() };
      if (by) event.by = stripped({ ...by });
      // The lock's own key passes to the oldest further holder, so that
      // it holds a live holder while there is one, as older versions read.
      const heir = first
        ? await heirOf(this.#keys, state.others, op)
        : undefined;
      const compare: Compare[] = [holder, heir].flatMap((one) =>
        one
          ? [{
            key: one.kv.key,
            target: "MOD",
            result: "EQUAL",
            mod_revision: one.kv.mod_revision,
          }]
          : []
      );
      const result = await this.#keys.commit(
        resource,
        state,
        compare,
        heir ? promote(this.#keys, resource, key, heir) : [
          { request_delete_range: { key } },
          ...(first
            ? [this.#keys.putShadow(resource, { ...record, state: kind })]
            : this.#keys.touchShadow(resource, state)),
        ],
        [event],
        op,
      );
      if (result.succeeded) {
        this.#settle(holder.kv.lease!);
        return holder.lease;
      }
      tried = true;
      if (!first || heir) attempted = holder;
    }
  }

  /**
   * Records the expiry of lease `leaseId` once etcd has deleted its key:
   * the shadow still says `held`, so nobody recorded its end yet.
   */
  async expire(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> {
    const state = await this.#keys.state(resource, op);
    const other = state.others.find((one) => one.record.id === leaseId);
    if (other) {
      // A further holder: its key stays until etcd's sweep, so end it here.
      if (await this.#keys.isLive(other, op)) return false;
      const result = await this.#keys.commit(
        resource,
        state,
        {
          key: other.kv.key,
          target: "MOD",
          result: "EQUAL",
          mod_revision: other.kv.mod_revision,
        },
        [
          { request_delete_range: { key: other.kv.key } },
          ...this.#keys.touchShadow(resource, state),
        ],
        [expiredEvent(other)],
        op,
      );
      return result.succeeded;
    }
    const last = state.shadow;
    if (
      state.holder || last?.value.state !== "held" ||
      last.value.id !== leaseId || last.value.expires > Date.now()
    ) return false;
    const { state: _, ...old } = last.value;
    const record = { ...old, fence: old.fence ?? Number(last.kv.mod_revision) };
    const result = await this.#keys.commit(
      resource,
      state,
      {
        key: b64(this.#keys.leaseKey(resource)),
        target: "CREATE",
        result: "EQUAL",
        create_revision: "0",
      },
      [this.#keys.putShadow(resource, { ...record, state: "expired" })],
      [{ ...record, kind: "expired", at: old.expires }],
      op,
    );
    return result.succeeded;
  }

  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(resource, leaseId, ending.kind, op, ending.by);
  }

  async current(resource: string, op: Operation): Promise<Lease | null> {
    const holders = await this.holders(resource, op);
    holders.sort((a, b) => a.fence - b.fence);
    return holders[0] ?? null;
  }

  async isHeld(resource: string, leaseId: string, op: Operation) {
    const holder = await readHolder(this.#keys, resource, leaseId, op);
    return holder !== undefined && await this.#keys.isLive(holder, op);
  }

  /** Every live holder, each with its server-checked expiry. */
  async holders(resource: string, op: Operation): Promise<Lease[]> {
    const all = await readHolders(this.#keys, resource, op);
    const seen = await Promise.all(all.map((one) => this.#visible(one, op)));
    return seen.filter((lease) => lease !== null);
  }

  /**
   * Pages through the lease keys under the prefix at one revision, then
   * the further holders' keys; see {@linkcode listLeases}.
   */
  list(prefix: string, op: Operation): Promise<Lease[]> {
    return listLeases(this.#keys, prefix, op);
  }

  async history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    const reply = await this.#keys.call<RangeReply>("/v3/kv/range", {
      ...this.#keys.events(resource),
      sort_order: "DESCEND",
      sort_target: "KEY",
      limit,
    }, op);
    const since = Date.now() - this.#settings.keepMs;
    const events: LeaseEvent[] = [];
    for (const kv of reply.kvs ?? []) {
      const value = JSON.parse(decoder.decode(unb64(kv.value))) as EventValue;
      if (!(value.at >= since)) continue;
      const event: LeaseEvent = {
        // An acquire's event has no fence: its revision is it.
        ...this.#lease(resource, value, value.fence ?? kv.mod_revision),
        kind: value.kind,
        at: new Date(value.at),
      };
      if (value.by) event.by = value.by;
      events.push(event);
    }
    return events;
  }

  /**
   * Watches the lease key and the shadow with `POST /v3/watch`: every PUT
   * or DELETE of the lease key (acquire, renew, release, break, and expiry,
   * since etcd deletes an expired lease's key), and every change to a
   * further holder (each writes the shadow), calls `onChange`. Resolves once etcd reports the
   * watch created; see {@linkcode Watches.watch}.
   */
  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    // The shadow changes with every change to a further holder too.
    const keys = [
      this.#keys.leaseKey(resource),
      this.#keys.shadowKey(resource),
    ];
    await Promise.all(
      keys.map((key) => this.#watches.watch(b64(key), onChange, signal, op)),
    );
  }

  async close(): Promise<void> {
    // Revokes still under way finish first (each is bounded).
    await Promise.all([...this.#settling]);
    await this.#watches.close();
    this.#gateway.close();
  }
}

/**
 * The `etcd` backend: locks in an etcd v3 cluster (3.4 or later), over
 * its JSON gateway. Expiry uses etcd's lease clock; fences are revisions.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend(
 *   { hosts: "http://127.0.0.1:2379" },
 *   { name: "etcd", section: "backend.etcd" },
 * );
 * ```
 */
export const backend: DefinedBackend = defineBackend({
  name: "etcd",
  options,
  together,
  capabilities: {
    clock: "server",
    list: true,
    history: true,
    fencing: true,
    events: true,
    queue: true,
    holders: true,
  },
  open(settings, context) {
    const { members } = parseMembers(settings, context);
    return new EtcdStore({
      members,
      tls: {
        caCerts: settings.ca_cert === undefined
          ? undefined
          : [settings.ca_cert],
        cert: settings.cert_cert,
        key: settings.cert_key,
      },
      user: settings.user,
      password: settings.password,
      prefix: settings.prefix,
      keep: settings.history,
      keepMs: settings.history_age * 1000,
      timeoutMs: settings.timeout,
    }, context);
  },
  classify: classifyEtcdError,
});
