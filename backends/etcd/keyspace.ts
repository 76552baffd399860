/**
 * Where the etcd backend keeps things, and its reads and writes of them.
 *
 * Keys, with `P` the `prefix` and `R` a resource name as UTF-8:
 *
 * - `P R`: the lease. Its value is JSON (id, principal, host, reason,
 *   link, created, expires, and fence once renewed), and the key is
 *   attached to an etcd lease of the lock's TTL, so the server's lease
 *   clock deletes it. Its fence is the key's `create_revision`: every
 *   acquire creates the key, so it strictly increases and is never reused.
 *   Stormlock 0.1 wrote the same key, without the new fields.
 * - `P 0xFF "last/" R`: the shadow, with no etcd lease: the last lease and
 *   whether it ended (`held`, `released`, `broken`). An acquire that finds
 *   it `held` but the lease key gone records that lease as `expired`.
 * - `P 0xFF "history/" R 0xFE N`: one event each, `N` the zero-padded
 *   revision its writer read at plus a digit, so keys sort by time.
 * - `P 0xFF "holder/" R 0xFE ID`: a further holder of a lock with slots or
 *   shared holds (the first stays at `P R`, so exclusive locks look as
 *   they always did), valued and leased like `P R`; its fence is its own
 *   `create_revision`. When `P R` is released or broken, the live further
 *   holder with the lowest fence moves into it, keeping its etcd lease and
 *   its fence (then in its value). Every change writes the shadow too
 *   (unchanged when it is about a further holder), so comparing the shadow
 *   serializes a resource's changes across all its keys.
 *
 * The byte 0xFF never occurs in UTF-8, so no resource name can reach the
 * shadow or history keys, and a prefix range over lease keys never sees
 * them; all keys stay inside `P`'s range, so one etcd role on the prefix
 * covers them.
 *
 * @module
 */
import type {
  KitContext,
  LeaseRecord,
  Operation,
} from "../../lib/kit/contract.ts";
import type { Breaker, Lease, LeaseEventKind } from "../../lib/kit/types.ts";
import {
  b64,
  bytes,
  type Compare,
  decoder,
  encoder,
  type Gateway,
  type Kv,
  prefixEnd,
  type RangeReply,
  type RequestOp,
  type TxnReply,
  unb64,
} from "./client.ts";
import { sleep, within } from "../../lib/kit/deadline.ts";

/** The oldest events read with each change, to trim by count and age. */
const OLDEST = 8;
/** How far a recorded expiry may stray from the server's and still agree. */
const CLOCK_SLACK_MS = 250;
/** How many times an unneeded etcd lease's revoke is tried. */
const REVOKE_ATTEMPTS = 4;

// What the keys hold.

/** A lease key's value. Times are epoch ms. */
export interface StoredLease {
  id: string;
  principal: string;
  host?: string;
  reason?: string;
  link?: string;
  /** Absent when written at acquire: the key's create_revision is it. */
  fence?: number;
  /** Slots (N) or shared (0); absent for an exclusive lease. */
  limit?: number;
  created: number;
  expires: number;
}

/** The shadow's value: the last lease, and how it ended. */
export interface Shadow extends StoredLease {
  state: "held" | "released" | "broken" | "expired";
}

/** An etcd lease granted for a Stormlock lease. */
export interface Granted {
  /** etcd's lease ID. */
  leaseNo: string;
  /** When it was asked for, epoch ms. */
  created: number;
  /** When it runs out, epoch ms. */
  expires: number;
}

/** An event's value. */
export interface EventValue extends StoredLease {
  kind: LeaseEventKind;
  at: number;
  by?: Breaker;
}

/** A lease key as read, with its parsed value. */
export interface Holder {
  kv: Kv;
  record: StoredLease;
  lease: Lease;
}

/** What a change reads first, in one read-only transaction. */
export interface State {
  /** The revision the read saw. */
  revision: string;
  holder?: Holder;
  /** The further holders, live or not yet swept. */
  others: Holder[];
  shadow?: { kv: Kv; value: Shadow };
  /** The shadow's stored value (base64), to write back unchanged. */
  shadowRaw?: string;
  /** The shadow's mod_revision, `0` when absent, even if unreadable. */
  shadowRevision: string;
  /** The resource's oldest events, oldest first, and how many there are. */
  oldest: Kv[];
  events: number;
}

/** The keys of one prefix, and the transactions over them. */
export class Keyspace {
  /** The store for messages. */
  readonly label: string;
  readonly #gateway: Gateway;
  readonly #context: KitContext;
  /** `prefix` as bytes. */
  readonly prefix: Uint8Array;
  readonly #keep: { count: number; ms: number };
  readonly #timeoutMs: number;

  constructor(
    prefix: string,
    gateway: Gateway,
    context: KitContext,
    label: string,
    keep: { count: number; ms: number },
    timeoutMs: number,
  ) {
    this.prefix = encoder.encode(prefix);
    this.#gateway = gateway;
    this.#context = context;
    this.label = label;
    this.#keep = keep;
    this.#timeoutMs = timeoutMs;
  }

  // Keys.

  /** The lease key. */
  leaseKey(resource: string): Uint8Array {
    return bytes(this.prefix, resource);
  }
  /** The shadow key. */
  shadowKey(resource: string): Uint8Array {
    return bytes(this.prefix, [0xff], "last/", resource);
  }
  /** The key of a further holder `id`. */
  holderKey(resource: string, id: string): Uint8Array {
    return bytes(this.prefix, [0xff], "holder/", resource, [0xfe], id);
  }
  /** The range of further holders' keys under a resource name prefix. */
  holdersUnder(prefix: string): { key: string; range_end: string } {
    const start = bytes(this.prefix, [0xff], "holder/", prefix);
    return { key: b64(start), range_end: b64(prefixEnd(start)) };
  }
  /** The range of the resource's further holders' keys. */
  holders(resource: string): { key: string; range_end: string } {
    const base = bytes(this.prefix, [0xff], "holder/", resource);
    return {
      key: b64(bytes(base, [0xfe])),
      range_end: b64(bytes(base, [0xff])),
    };
  }
  /** The resource a further holder's key belongs to. */
  holderResource(key: string): string {
    const raw = unb64(key);
    const start = this.prefix.length + 1 + "holder/".length;
    return decoder.decode(raw.subarray(start, raw.lastIndexOf(0xfe)));
  }
  /** The range of the resource's event keys. */
  events(resource: string): { key: string; range_end: string } {
    const base = bytes(this.prefix, [0xff], "history/", resource);
    return {
      key: b64(bytes(base, [0xfe])),
      range_end: b64(bytes(base, [0xff])),
    };
  }
  /** The key of an event written at `revision`. */
  eventKey(resource: string, revision: string, index: number): string {
    return b64(bytes(
      this.prefix,
      [0xff],
      "history/",
      resource,
      [0xfe],
      revision.padStart(20, "0") + index,
    ));
  }

  /** Calls the gateway. */
  call<T>(path: string, body: unknown, op: Operation): Promise<T> {
    return this.#gateway.call<T>(path, body, op);
  }

  // Reading values.

  /** A lease key's value, checked; a foreign one is a ConfigError. */
  parse(resource: string, kv: Kv): Holder {
    let value: StoredLease;
    try {
      value = JSON.parse(decoder.decode(unb64(kv.value)));
    } catch {
      value = null as unknown as StoredLease;
    }
    // Checks every field; a foreign value becomes a ConfigError.
    const lease = this.#context.leaseFromRecord(resource, {
      ...(value as unknown as LeaseRecord),
      // A holder moved into the lock's key keeps its fence in its value.
      fence: (value as { fence?: number } | null)?.fence ?? kv.create_revision,
    });
    if (!kv.lease || kv.lease === "0") {
      throw new this.#context.errors.ConfigError(
        `${this.label}: the key for "${resource}" has no etcd lease, so Stormlock did not write it; point prefix in [${this.#context.section}] at keys of its own`,
      );
    }
    return { kv, record: value, lease };
  }

  /** Writes the shadow. */
  putShadow(resource: string, shadow: Shadow): RequestOp {
    return {
      request_put: {
        key: b64(this.shadowKey(resource)),
        value: b64(JSON.stringify(shadow)),
      },
    };
  }

  /**
   * Writes the shadow back unchanged: a change to a further holder moves
   * its mod_revision, which serializes it with every other change.
   */
  touchShadow(resource: string, state: State): RequestOp[] {
    return state.shadowRaw === undefined ? [] : [{
      request_put: {
        key: b64(this.shadowKey(resource)),
        value: state.shadowRaw,
      },
    }];
  }

  /** The shadow's value, or `undefined` if absent or unreadable. */
  shadow(kv: Kv | undefined): State["shadow"] {
    if (!kv) return undefined;
    try {
      const value = JSON.parse(decoder.decode(unb64(kv.value))) as Shadow;
      if (typeof value?.id === "string") return { kv, value };
    } catch {
      // Unreadable: treated as absent, it is only bookkeeping.
    }
    return undefined;
  }

  /** Reads the lease, the shadow and the oldest events at one revision. */
  async state(resource: string, op: Operation): Promise<State> {
    const reply = await this.call<TxnReply>("/v3/kv/txn", {
      success: [
        { request_range: { key: b64(this.leaseKey(resource)) } },
        { request_range: { key: b64(this.shadowKey(resource)) } },
        { request_range: { ...this.events(resource), limit: OLDEST } },
        { request_range: this.holders(resource) },
      ],
    }, op);
    const [lease, shadow, events, others] = (reply.responses ?? []).map((
      r,
    ) => r.response_range ?? { header: reply.header });
    const kv = lease?.kvs?.[0];
    return {
      revision: reply.header.revision,
      holder: kv ? this.parse(resource, kv) : undefined,
      others: (others?.kvs ?? []).map((other) => this.parse(resource, other)),
      shadow: this.shadow(shadow?.kvs?.[0]),
      shadowRaw: shadow?.kvs?.[0]?.value,
      shadowRevision: shadow?.kvs?.[0]?.mod_revision ?? "0",
      oldest: events?.kvs ?? [],
      events: Number(events?.count ?? 0),
    };
  }

  /**
   * Applies `ops` and records `events` in one transaction, if the lease
   * key passes `compare` and the shadow is as `state` read it. Old events
   * beyond the `history` count or older than `history_age` are deleted in
   * the same transaction.
   * @returns Whether it was applied, and at which revision.
   */
  async commit(
    resource: string,
    state: State,
    compare: Compare | Compare[],
    ops: RequestOp[],
    events: EventValue[],
    op: Operation,
  ): Promise<{ succeeded: boolean; revision: string }> {
    const success: RequestOp[] = [...ops];
    events.forEach((event, index) =>
      success.push({
        request_put: {
          key: this.eventKey(resource, state.revision, index),
          value: b64(JSON.stringify(event)),
        },
      })
    );
    const cutoff = await this.#trimCutoff(resource, state, events.length, op);
    if (cutoff) {
      success.push({
        request_delete_range: {
          key: this.events(resource).key,
          range_end: b64(bytes(unb64(cutoff), [0])),
        },
      });
    }
    const shadowKey = b64(this.shadowKey(resource));
    const reply = await this.call<TxnReply>("/v3/kv/txn", {
      compare: [...[compare].flat(), {
        key: shadowKey,
        target: "MOD",
        result: "EQUAL",
        mod_revision: state.shadowRevision,
      }],
      success,
      failure: [],
    }, op);
    return {
      succeeded: reply.succeeded === true,
      revision: reply.header.revision,
    };
  }

  /** The newest event key to delete, or `undefined` to keep all. */
  async #trimCutoff(
    resource: string,
    state: State,
    adding: number,
    op: Operation,
  ): Promise<string | undefined> {
    const excess = state.events + adding - this.#keep.count;
    let oldest = state.oldest;
    if (excess > oldest.length) {
      // Only after `history` was lowered: read as many keys as must go.
      const reply = await this.call<RangeReply>("/v3/kv/range", {
        ...this.events(resource),
        limit: excess,
        keys_only: true,
      }, op);
      oldest = reply.kvs ?? [];
    }
    const tooOld = Date.now() - this.#keep.ms;
    let drop = Math.max(0, Math.min(excess, oldest.length));
    while (drop < oldest.length) {
      const at = eventTime(oldest[drop]);
      if (at === undefined || at >= tooOld) break;
      drop++;
    }
    return drop > 0 ? oldest[drop - 1].key : undefined;
  }

  // The server's lease clock.

  /** Grants an etcd lease; times come from our clock as we ask. */
  async grant(ttlSeconds: number, op: Operation): Promise<Granted> {
    const asked = Date.now();
    const granted = await this.call<{ ID: string; TTL: string }>(
      "/v3/lease/grant",
      { TTL: ttlSeconds },
      op,
    );
    // etcd may grant more than asked (its minimum TTL); report what it did.
    return {
      leaseNo: granted.ID,
      created: asked,
      expires: asked + Number(granted.TTL) * 1000,
    };
  }

  /**
   * Revokes an etcd lease we no longer need, with a deadline of its own so
   * that it still runs after a timed-out operation. Failure is harmless:
   * the lease expires by itself.
   */
  async revoke(leaseNo: string): Promise<void> {
    // A busy server may need more than one go; a lease left behind would
    // live for its whole TTL.
    for (let attempt = 0; attempt < REVOKE_ATTEMPTS; attempt++) {
      try {
        await within(
          this.#timeoutMs,
          (bound) => this.call("/v3/lease/revoke", { ID: leaseNo }, bound),
        );
        return;
      } catch (error) {
        // Already gone: done. Unreachable: try again after a pause.
        if (/not found/i.test(String((error as Error)?.message))) return;
        await sleep(100 * 2 ** attempt + Math.random() * 100);
      }
    }
  }

  /**
   * When the server will expire the holder, or `null` if it has. etcd
   * reports the remaining TTL truncated to whole seconds, so the recorded
   * expiry is used when it falls within that second, and the server's
   * figure when the holder's clock disagrees with the server.
   */
  async serverExpiry(holder: Holder, op: Operation): Promise<number | null> {
    const { TTL } = await this.call<{ TTL: string }>(
      "/v3/lease/timetolive",
      { ID: holder.kv.lease },
      op,
    );
    // proto3 JSON leaves out zero values: no TTL means 0.
    const ttl = Number(TTL ?? 0);
    const now = Date.now();
    if (ttl < 0) return null; // The lease is gone.
    const expires = holder.record.expires;
    // Truncation toward zero: 0 means anywhere within a second either side.
    const earliest = now + (ttl === 0 ? -1000 : ttl * 1000) - CLOCK_SLACK_MS;
    const latest = now + (ttl + 1) * 1000 + CLOCK_SLACK_MS;
    if (expires >= earliest && expires <= latest) {
      return expires > now ? expires : null;
    }
    return now + (ttl + 1) * 1000;
  }

  /**
   * Whether the holder's lease is live. etcd deletes an expired lease's
   * key up to about half a second late, so a key past its recorded expiry
   * is checked against the server's remaining TTL.
   */
  async isLive(holder: Holder, op: Operation): Promise<boolean> {
    if (holder.record.expires > Date.now()) return true;
    return (await this.serverExpiry(holder, op)) !== null;
  }
}

/** An event's time, from its value; `undefined` if unreadable. */
function eventTime(kv: Kv): number | undefined {
  if (kv.value === undefined) return undefined;
  try {
    const at = JSON.parse(decoder.decode(unb64(kv.value))).at;
    return typeof at === "number" ? at : undefined;
  } catch {
    return undefined;
  }
}

/** The object without its undefined fields, so JSON stays small. */
export function stripped<T extends object>(value: T): T {
  return Object.fromEntries(
    Object.entries(value).filter(([, field]) => field !== undefined),
  ) as T;
}
