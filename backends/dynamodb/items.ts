/**
 * The DynamoDB item: how a lease, its fence and version, and its history
 * are written as attributes, and read back checked.
 *
 * Item layout (times are epoch milliseconds):
 *
 * - `lease`, `principal`, `created`, `expires`: the lease, as Stormlock 0.1
 *   wrote it; `host`, `reason`, `link` beside them. All are removed when
 *   the lease is released or broken: the item stays, marked free.
 * - `fence`: the last fencing token issued. Kept when the item is free, so
 *   a token is never reused; 0.1 items have none and read as fence 0. It
 *   is also the top-level lease's fence, except on a lock with several
 *   holders, where the top-level lease is the oldest and `lease_fence`
 *   holds its own.
 * - `limit`: on a lock with slots or shared holds (lib/kit/holders.ts),
 *   the top-level lease's limit (N slots, 0 shared); absent when
 *   exclusive, so an exclusive lock is stored exactly as before.
 * - `holders`: the lock's further holders, beside the top-level one: a map
 *   from lease id to a map of `principal`, `host`, `reason`, `link`,
 *   `fence`, `created`, `expires` and `limit`. The top-level lease is
 *   always the lowest-fence live holder: every write drops the expired
 *   holders (recording them) and moves the lowest fence up when the
 *   top-level one ends. Absent when there are none; every holder's text
 *   together is bounded (`HOLDERS_BYTES`) to keep the item under 400 KB.
 * - `version`: bumped by every write. Each change reads the item, decides,
 *   and writes on condition that `version` is unchanged (a 0.1 item, which
 *   has none, on condition that its lease is unchanged); a lost race reads
 *   again.
 * - `waiting_until`: while anyone waits for the lock (see lib/composition/queue.ts),
 *   the latest expiry of a waiter's registration. Each registration and
 *   heartbeat raises it (bumping `version`), so a plain acquire, which
 *   reads the item anyway, sees the queue with no read of its own; only
 *   then does it look for the waiters themselves (a scan).
 * - `events`: the resource's history, oldest first, each a JSON string,
 *   appended by the same write as the change it records and trimmed to
 *   `history` events, `history_age`, and 32 KB (`HISTORY_BYTES`).
 *
 * Cost: DynamoDB bills a write per KB of the whole item and a consistent
 * read per 4 KB, history included, so an item with full history costs up
 * to about 35 write units per acquire, renew or release, and 9 read units
 * per read; lower `history` to make it cheaper. `list` scans the whole
 * table (consistent reads, one read unit per 4 KB of every item).
 *
 * @module
 */
import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import type { KitContext } from "../../lib/kit/contract.ts";
import { isEventKind } from "../../lib/kit/record.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

/** An item, by attribute. */
export type Item = Record<string, AttributeValue>;

/** DynamoDB's limit on a partition key's size. */
const MAX_KEY_BYTES = 2048;
/**
 * The most text a lease may carry (principal, host, reason, link, and a
 * breaker's): its item, with history, must stay under DynamoDB's 400 KB.
 */
const MAX_TEXT_BYTES = 16 * 1024;
/** The most bytes of history kept on an item; the newest event always is. */
const HISTORY_BYTES = 32 * 1024;
/**
 * The most bytes all holders of one lock may take together: the item,
 * with its history, must stay under DynamoDB's 400 KB.
 */
const HOLDERS_BYTES = 320 * 1024;
/** The lease's own attributes, removed when the item is marked free. */
export const LEASE_ATTRIBUTES = [
  "lease",
  "principal",
  "created",
  "expires",
  "host",
  "reason",
  "link",
] as const;
/** The attributes every holder of the lock is read from. */
export const HOLDER_ATTRIBUTES = [
  ...LEASE_ATTRIBUTES,
  "fence",
  "lease_fence",
  "limit",
  "holders",
] as const;
/** The attributes that go with the holders when the lock is free. */
const HOLDERS_REMOVED = [
  ...LEASE_ATTRIBUTES,
  "lease_fence",
  "limit",
  "holders",
] as const;

/** An event as stored: a compact JSON object in the `events` list. */
interface StoredEvent {
  k: LeaseEventKind;
  at: number;
  id: string;
  p: string;
  h?: string;
  r?: string;
  l?: string;
  f: number;
  c: number;
  e: number;
  /** The lease's limit, when not exclusive. */
  n?: number;
  by?: { p: string; h?: string; r: string };
}

/** An event as the `events` list stores it. */
export function encodeEvent(
  kind: LeaseEventKind,
  lease: Lease,
  at: number,
  by?: Breaker,
): string {
  const event: StoredEvent = {
    k: kind,
    at,
    id: lease.id,
    p: lease.principal,
    h: lease.host,
    r: lease.reason,
    l: lease.link,
    f: lease.fence,
    c: lease.created.getTime(),
    e: lease.expires.getTime(),
  };
  if (lease.limit !== undefined) event.n = lease.limit;
  if (by) event.by = { p: by.principal, h: by.host, r: by.reason };
  return JSON.stringify(event);
}

const bytes = (text: string) => new TextEncoder().encode(text).length;

/** Reads and writes the items of one table. */
export class Items {
  readonly #context: KitContext;
  readonly #label: string;
  readonly #section: string;
  readonly #keep: { count: number; ms: number };

  constructor(
    context: KitContext,
    label: string,
    keep: { count: number; ms: number },
  ) {
    this.#context = context;
    this.#label = label;
    this.#section = context.section;
    this.#keep = keep;
  }

  /** The item's key; refuses a name too long for DynamoDB. */
  key(resource: string): Item {
    const size = bytes(resource);
    if (size > MAX_KEY_BYTES) {
      throw new this.#context.errors.UsageError(
        `The resource name is ${size} bytes; DynamoDB keys hold at most ${MAX_KEY_BYTES}, so use a shorter name`,
      );
    }
    return { resource: { S: resource } };
  }

  /** Refuses text that would make the item too large. */
  checkText(resource: string, ...texts: (string | undefined)[]): void {
    const size = texts.reduce((sum, text) => sum + bytes(text ?? ""), 0);
    if (size > MAX_TEXT_BYTES) {
      throw new this.#context.errors.UsageError(
        `The lease item for "${
          resource.slice(0, 100)
        }" is too large: its principal, host, reason and link take ${size} bytes, and DynamoDB keeps a lease with its history in one item of at most 400 KB; keep them under ${MAX_TEXT_BYTES} bytes`,
      );
    }
  }

  /** A config error for an item Stormlock did not write, as the kit words it. */
  foreign(resource: string, what: string): Error {
    return new this.#context.errors.ConfigError(
      `${this.#label}: the record for "${resource}" was not written by Stormlock (bad ${what}); point [${this.#section}] at a prefix or table of its own`,
    );
  }

  /** The top-level lease on the item, live or not, checked by the kit. */
  leaseOf(resource: string, item: Item | undefined): Lease | null {
    if (!item || !item.lease) return null;
    const fence = item.lease_fence ?? item.fence;
    return this.#context.leaseFromRecord(resource, {
      id: item.lease.S,
      principal: item.principal?.S,
      host: item.host?.S,
      reason: item.reason?.S,
      link: item.link?.S,
      fence: fence ? fence.N ?? null : undefined,
      created: item.created?.N,
      expires: item.expires?.N,
      limit: item.limit ? item.limit.N ?? null : undefined,
    });
  }

  /**
   * Every holder on the item, live or not, lowest fence first: the
   * top-level lease and those in `holders`.
   */
  holdersOf(resource: string, item: Item | undefined): Lease[] {
    const first = this.leaseOf(resource, item);
    const holders = first ? [first] : [];
    if (item?.holders) {
      const map = item.holders.M;
      if (!map) throw this.foreign(resource, "holders");
      for (const [id, value] of Object.entries(map)) {
        const fields = value.M;
        if (!fields) throw this.foreign(resource, "holders");
        holders.push(this.#context.leaseFromRecord(resource, {
          id,
          principal: fields.principal?.S,
          host: fields.host?.S,
          reason: fields.reason?.S,
          link: fields.link?.S,
          fence: fields.fence?.N,
          created: fields.created?.N,
          expires: fields.expires?.N,
          limit: fields.limit?.N,
        }));
      }
    }
    return holders.sort((a, b) => a.fence - b.fence);
  }

  /** The item's holders live at `now`, lowest fence first. */
  live(resource: string, item: Item | undefined, now: number): Lease[] {
    return this.holdersOf(resource, item)
      .filter((lease) => lease.expires.getTime() > now);
  }

  /**
   * The write that leaves `holders` (live ones) on the item, recording the
   * expiry of every holder that lapsed by `now`, then `events`.
   */
  leave(
    resource: string,
    item: Item | undefined,
    now: number,
    holders: Lease[],
    events: string[],
    lastFence = this.counter(resource, item, "fence")!,
  ): { set: Record<string, AttributeValue>; remove: readonly string[] } {
    const lapsed = this.holdersOf(resource, item)
      .filter((lease) => lease.expires.getTime() <= now)
      .map((lease) => encodeEvent("expired", lease, lease.expires.getTime()));
    const { set, remove } = this.holderAttributes(
      resource,
      holders.sort((a, b) => a.fence - b.fence),
      lastFence,
    );
    set.events = this.appended(
      this.eventsOf(resource, item),
      [...lapsed, ...events],
      now,
    );
    return { set, remove };
  }

  /**
   * The attributes that store `holders` (lowest fence first, all live)
   * and those to remove: the first at the top level, as a lone lease
   * always was, the rest in `holders`. `fence` stays the last issued.
   */
  holderAttributes(
    resource: string,
    holders: readonly Lease[],
    lastFence: number,
  ): { set: Record<string, AttributeValue>; remove: readonly string[] } {
    const fence = { N: String(lastFence) };
    const [first, ...rest] = holders;
    if (!first) return { set: { fence }, remove: HOLDERS_REMOVED };
    const { set, remove } = this.leaseAttributes(first);
    set.fence = fence;
    if (first.fence !== lastFence) {
      set.lease_fence = { N: String(first.fence) };
    } else remove.push("lease_fence");
    if (first.limit !== undefined) {
      set.limit = { N: String(first.limit) };
    } else remove.push("limit");
    if (rest.length === 0) {
      remove.push("holders");
      return { set, remove };
    }
    let size = 0;
    const map: Record<string, AttributeValue> = {};
    for (const lease of rest) {
      const fields: Record<string, AttributeValue> = {
        principal: { S: lease.principal },
        fence: { N: String(lease.fence) },
        created: { N: String(lease.created.getTime()) },
        expires: { N: String(lease.expires.getTime()) },
        limit: { N: String(lease.limit ?? 1) },
      };
      for (const field of ["host", "reason", "link"] as const) {
        const value = lease[field];
        if (value) fields[field] = { S: value };
      }
      size += 100 + bytes(lease.id) + bytes(lease.principal) +
        bytes(lease.host ?? "") + bytes(lease.reason ?? "") +
        bytes(lease.link ?? "");
      map[lease.id] = { M: fields };
    }
    if (size > HOLDERS_BYTES) {
      throw new this.#context.errors.UsageError(
        `The lock "${
          resource.slice(0, 100)
        }" would have ${holders.length} holders taking about ${size} bytes, and DynamoDB keeps them all in one item of at most 400 KB; use fewer slots, or shorter principals, reasons and links`,
      );
    }
    set.holders = { M: map };
    return { set, remove };
  }

  /**
   * A counter on the item: `fence`, the last token issued (0 on a new or
   * 0.1 item), or `version` (undefined on a 0.1 item).
   */
  counter(
    resource: string,
    item: Item | undefined,
    attribute: "fence" | "version",
  ): number | undefined {
    const value = item?.[attribute];
    if (!value) return attribute === "fence" ? 0 : undefined;
    if (value.N === undefined || !/^\d{1,15}$/.test(value.N)) {
      throw this.foreign(resource, attribute);
    }
    return Number(value.N);
  }

  /** The item's events as stored, oldest first. */
  eventsOf(resource: string, item: Item | undefined): string[] {
    if (!item?.events) return [];
    const list = item.events.L;
    if (!list || list.some((value) => value.S === undefined)) {
      throw this.foreign(resource, "events");
    }
    return list.map((value) => value.S!);
  }

  /** One stored event, checked by the kit. */
  decode(resource: string, text: string): LeaseEvent {
    let stored: StoredEvent;
    try {
      stored = JSON.parse(text);
    } catch {
      throw this.foreign(resource, "event");
    }
    if (
      typeof stored !== "object" || stored === null ||
      !isEventKind(stored.k) || !Number.isFinite(stored.at)
    ) {
      throw this.foreign(resource, "event");
    }
    const event: LeaseEvent = {
      ...this.#context.leaseFromRecord(resource, {
        id: stored.id,
        principal: stored.p,
        host: stored.h,
        reason: stored.r,
        link: stored.l,
        fence: stored.f,
        created: stored.c,
        expires: stored.e,
        limit: stored.n,
      }),
      kind: stored.k,
      at: new Date(stored.at),
    };
    if (stored.by) {
      const { p, h, r } = stored.by;
      if (typeof p !== "string" || typeof r !== "string") {
        throw this.foreign(resource, "event");
      }
      event.by = { principal: p, reason: r, ...(h ? { host: h } : {}) };
    }
    return event;
  }

  /**
   * `events` plus the new ones, trimmed: at most `history` of them, none
   * older than `history_age`, and at most HISTORY_BYTES, oldest dropped
   * first; the newest is always kept.
   */
  appended(events: string[], added: string[], now: number): AttributeValue {
    const all = [...events, ...added];
    const oldest = now - this.#keep.ms;
    let kept = all.slice(-this.#keep.count).filter((text) => {
      const at = /"at":(\d+)/.exec(text);
      return !at || Number(at[1]) >= oldest;
    });
    let size = kept.reduce((sum, text) => sum + bytes(text), 0);
    while (size > HISTORY_BYTES && kept.length > 1) {
      size -= bytes(kept[0]);
      kept = kept.slice(1);
    }
    return { L: kept.map((text) => ({ S: text })) };
  }

  /** The attributes of a lease, and those it lacks to remove. */
  leaseAttributes(lease: Lease): {
    set: Record<string, AttributeValue>;
    remove: string[];
  } {
    const set: Record<string, AttributeValue> = {
      lease: { S: lease.id },
      principal: { S: lease.principal },
      created: { N: String(lease.created.getTime()) },
      expires: { N: String(lease.expires.getTime()) },
      fence: { N: String(lease.fence) },
    };
    const remove: string[] = [];
    for (const field of ["host", "reason", "link"] as const) {
      const value = lease[field];
      if (value) set[field] = { S: value };
      else remove.push(field);
    }
    return { set, remove };
  }
}
