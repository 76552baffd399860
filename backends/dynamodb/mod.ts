/**
 * The DynamoDB backend: one item per resource in a table whose hash key is
 * `resource` (type S). The item holds everything about the resource, so
 * every change is one conditional write to one item, which DynamoDB
 * applies atomically; no transactions are needed (and none are used:
 * DynamoDB emulators such as dynalite lack them).
 *
 * Item layout (times are epoch milliseconds):
 *
 * - `lease`, `principal`, `created`, `expires`: the lease, as Stormlock 0.1
 *   wrote it; `host`, `reason`, `link` beside them. All are removed when
 *   the lease is released or broken: the item stays, marked free.
 * - `fence`: the last fencing token issued. Kept when the item is free, so
 *   a token is never reused; 0.1 items have none and read as fence 0.
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
 * DynamoDB has no server clock to ask, so expiry uses this host's clock:
 * operators whose clocks disagree see a lease expire earlier or later by
 * that skew. Items carry no `ttl` attribute (0.1 wrote one; any write
 * removes it): DynamoDB's TTL sweeper must never delete an item, or its
 * fence would start again at 1.
 *
 * @module
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DescribeTableCommand,
  DynamoDBClient,
  GetItemCommand,
  ScanCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import type {
  AttributeValue,
  DescribeTableCommandOutput,
  GetItemCommandOutput,
  ScanCommandOutput,
} from "@aws-sdk/client-dynamodb";
import type {
  AcquireRequest,
  Ending,
  KitContext,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { isEventKind } from "../../lib/kit/record.ts";
import { sleep } from "../../lib/kit/deadline.ts";
import { ConfigError, UsageError } from "../../lib/kit/errors.ts";
import { shorten } from "../../lib/kit/text.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

type Item = Record<string, AttributeValue>;
type AnyCommand = Parameters<DynamoDBClient["send"]>[0];

/** Thrown out of an acquire's step when the lock's queue is marked. */
const QUEUE_MARKED = Symbol("queue marked");

/** DynamoDB's limit on a partition key's size. */
const MAX_KEY_BYTES = 2048;
/**
 * The most text a lease may carry (principal, host, reason, link, and a
 * breaker's): its item, with history, must stay under DynamoDB's 400 KB.
 */
const MAX_TEXT_BYTES = 16 * 1024;
/** The most bytes of history kept on an item; the newest event always is. */
const HISTORY_BYTES = 32 * 1024;
/** Rounds of read-and-write before giving up on a lease changing hands. */
const MAX_ROUNDS = 8;
/** How often `init` looks whether a new table is ACTIVE. */
const POLL_MS = 250;
/** A region for signing when only a local endpoint is configured. */
const LOCAL_REGION = "us-east-1";
/** What an AWS region's name looks like: us-east-1, us-gov-west-1. */
const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;
/** The lease's own attributes, removed when the item is marked free. */
const LEASE_ATTRIBUTES = [
  "lease",
  "principal",
  "created",
  "expires",
  "host",
  "reason",
  "link",
] as const;

const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

/** What a failure needs for its message besides the store's label. */
interface Where {
  table: string;
  section: string;
  profile?: string;
}

/**
 * An SDK or network failure, carrying what `classify` needs to name a
 * remedy. Its message has the configured secret scrubbed.
 */
class AwsFailure extends Error {
  constructor(
    override readonly cause: unknown,
    readonly where: Where,
    secrets: readonly string[],
  ) {
    super(scrub(String((cause as Error)?.message ?? cause), secrets), {
      cause,
    });
    this.name = "AwsFailure";
  }
}

function scrub(text: string, secrets: readonly string[]): string {
  return secrets.reduce(
    (out, secret) => secret ? out.replaceAll(secret, "***") : out,
    text,
  );
}

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
  by?: { p: string; h?: string; r: string };
}

function encodeEvent(
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
  if (by) event.by = { p: by.principal, h: by.host, r: by.reason };
  return JSON.stringify(event);
}

const bytes = (text: string) => new TextEncoder().encode(text).length;

/** A lease store in one DynamoDB table. Expiry uses this host's clock. */
class DynamoDbStore implements Store {
  readonly label: string;
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #createTable: boolean;
  readonly #keep: number;
  readonly #keepMs: number;
  readonly #where: Where;
  readonly #secrets: readonly string[];
  readonly #context: KitContext;

  constructor(
    client: DynamoDBClient,
    label: string,
    settings: {
      table: string;
      createTable: boolean;
      keep: number;
      keepMs: number;
      where: Where;
      secrets: readonly string[];
    },
    context: KitContext,
  ) {
    this.#client = client;
    this.label = label;
    this.#table = settings.table;
    this.#createTable = settings.createTable;
    this.#keep = settings.keep;
    this.#keepMs = settings.keepMs;
    this.#where = settings.where;
    this.#secrets = settings.secrets;
    this.#context = context;
  }

  /** Sends one command; a failed condition comes back as it is. */
  async #send<Output>(command: unknown, op: Operation): Promise<Output> {
    try {
      return await this.#client.send(command as AnyCommand, {
        abortSignal: op.signal,
      }) as Output;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) throw error;
      throw new AwsFailure(error, this.#where, this.#secrets);
    }
  }

  /** Runs `body`; with `create_table`, creates a missing table and retries. */
  async #withTable<T>(op: Operation, body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (error) {
      if (!this.#createTable || !isMissingTable(error)) throw error;
      await this.init(op);
      return await body();
    }
  }

  #key(resource: string): Item {
    const size = bytes(resource);
    if (size > MAX_KEY_BYTES) {
      throw new this.#context.errors.UsageError(
        `The resource name is ${size} bytes; DynamoDB keys hold at most ${MAX_KEY_BYTES}, so use a shorter name`,
      );
    }
    return { resource: { S: resource } };
  }

  /** Refuses text that would make the item too large. */
  #checkText(resource: string, ...texts: (string | undefined)[]): void {
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
  #foreign(resource: string, what: string): Error {
    return new this.#context.errors.ConfigError(
      `${this.label}: the record for "${resource}" was not written by Stormlock (bad ${what}); point [${this.#where.section}] at a prefix or table of its own`,
    );
  }

  /** The item, read consistently; `attributes` limits what comes back. */
  async #load(
    resource: string,
    op: Operation,
    attributes?: readonly string[],
  ): Promise<Item | undefined> {
    const names = attributes
      ? Object.fromEntries(attributes.map((name, i) => [`#a${i}`, name]))
      : undefined;
    const output = await this.#send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.#table,
        Key: this.#key(resource),
        ConsistentRead: true,
        ...(names
          ? {
            ProjectionExpression: Object.keys(names).join(", "),
            ExpressionAttributeNames: names,
          }
          : {}),
      }),
      op,
    );
    return output.Item;
  }

  /** The lease on the item, live or not, checked by the kit. */
  #leaseOf(resource: string, item: Item | undefined): Lease | null {
    if (!item || !item.lease) return null;
    return this.#context.leaseFromRecord(resource, {
      id: item.lease.S,
      principal: item.principal?.S,
      host: item.host?.S,
      reason: item.reason?.S,
      link: item.link?.S,
      fence: item.fence ? item.fence.N ?? null : undefined,
      created: item.created?.N,
      expires: item.expires?.N,
    });
  }

  #liveOf(resource: string, item: Item | undefined, now: number) {
    const lease = this.#leaseOf(resource, item);
    return lease && lease.expires.getTime() > now ? lease : null;
  }

  /**
   * A counter on the item: `fence`, the last token issued (0 on a new or
   * 0.1 item), or `version` (undefined on a 0.1 item).
   */
  #counter(
    resource: string,
    item: Item | undefined,
    attribute: "fence" | "version",
  ): number | undefined {
    const value = item?.[attribute];
    if (!value) return attribute === "fence" ? 0 : undefined;
    if (value.N === undefined || !/^\d{1,15}$/.test(value.N)) {
      throw this.#foreign(resource, attribute);
    }
    return Number(value.N);
  }

  #eventsOf(resource: string, item: Item | undefined): string[] {
    if (!item?.events) return [];
    const list = item.events.L;
    if (!list || list.some((value) => value.S === undefined)) {
      throw this.#foreign(resource, "events");
    }
    return list.map((value) => value.S!);
  }

  #decode(resource: string, text: string): LeaseEvent {
    let stored: StoredEvent;
    try {
      stored = JSON.parse(text);
    } catch {
      throw this.#foreign(resource, "event");
    }
    if (
      typeof stored !== "object" || stored === null ||
      !isEventKind(stored.k) || !Number.isFinite(stored.at)
    ) {
      throw this.#foreign(resource, "event");
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
      }),
      kind: stored.k,
      at: new Date(stored.at),
    };
    if (stored.by) {
      const { p, h, r } = stored.by;
      if (typeof p !== "string" || typeof r !== "string") {
        throw this.#foreign(resource, "event");
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
  #appended(events: string[], added: string[], now: number): AttributeValue {
    const all = [...events, ...added];
    const oldest = now - this.#keepMs;
    let kept = all.slice(-this.#keep).filter((text) => {
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

  /**
   * Writes the change if the item is still as read: the one place a lease
   * changes. Returns false when someone else changed it first.
   */
  async #write(
    resource: string,
    before: Item | undefined,
    set: Record<string, AttributeValue>,
    remove: readonly string[],
    op: Operation,
  ): Promise<boolean> {
    const names: Record<string, string> = {};
    const values: Record<string, AttributeValue> = {};
    const name = (attribute: string) => {
      const key = `#${attribute}`;
      names[key] = attribute;
      return key;
    };
    let condition: string;
    const version = this.#counter(resource, before, "version");
    if (!before) {
      condition = `attribute_not_exists(${name("resource")})`;
    } else if (version !== undefined) {
      condition = `${name("version")} = :wasVersion`;
      values[":wasVersion"] = { N: String(version) };
    } else if (before.lease) {
      // An item Stormlock 0.1 wrote: unchanged if its lease is.
      condition = `attribute_not_exists(${name("version")}) AND ${
        name("lease")
      } = :wasLease AND ${name("expires")} = :wasExpires`;
      values[":wasLease"] = before.lease;
      values[":wasExpires"] = before.expires;
    } else {
      condition = `attribute_not_exists(${
        name("version")
      }) AND attribute_not_exists(${name("lease")})`;
    }
    const updates = Object.entries({
      ...set,
      version: { N: String((version ?? 0) + 1) },
    }).map(([attribute, value]) => {
      values[`:${attribute}`] = value;
      return `${name(attribute)} = :${attribute}`;
    });
    // 0.1 wrote `ttl` for DynamoDB's sweeper, which must not delete the
    // item now that it keeps the fence.
    const removed = [...remove, "ttl"].map(name);
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#table,
          Key: this.#key(resource),
          UpdateExpression: `SET ${updates.join(", ")} REMOVE ${
            removed.join(", ")
          }`,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
        op,
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  /** Reads, decides and writes until the write wins. */
  async #change<T>(
    resource: string,
    op: Operation,
    step: (item: Item | undefined, now: number) => {
      set: Record<string, AttributeValue>;
      remove: readonly string[];
      result: T;
    },
  ): Promise<T> {
    return await this.#withTable(op, async () => {
      for (let round = 0; round < MAX_ROUNDS; round++) {
        const item = await this.#load(resource, op);
        const { set, remove, result } = step(item, Date.now());
        if (await this.#write(resource, item, set, remove, op)) return result;
      }
      throw new this.#context.errors.BackendUnavailableError(
        `${this.label}: the lock on "${resource}" kept changing hands; try again`,
      );
    });
  }

  /** The attributes of a lease, and those it lacks to remove. */
  #leaseAttributes(lease: Lease) {
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

  async acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    let lease: Lease;
    try {
      lease = await this.#take(request, request.waiters !== undefined, op);
    } catch (error) {
      if (error !== QUEUE_MARKED || !request.waiters) throw error;
      const live = await this.list(request.waiters, op);
      if (live.length > 0) {
        live.sort((a, b) => a.resource < b.resource ? -1 : 1);
        throw new this.#context.errors.LockHeldError(
          { ...live[0], resource: request.resource },
          { waiting: live.length, queued: true },
        );
      }
      // The mark outlived the last waiter, who left.
      lease = await this.#take(request, false, op);
    }
    if (op.waitsFor !== undefined) {
      await this.#markWaiting(op.waitsFor, lease, op);
    }
    return lease;
  }

  /**
   * Raises the waited-for lock's `waiting_until` to a waiter's expiry, so
   * plain acquires of it defer to the queue.
   */
  async #markWaiting(lock: string, waiter: Lease, op: Operation) {
    const until = { N: String(waiter.expires.getTime()) };
    try {
      await this.#send(
        new UpdateItemCommand({
          TableName: this.#table,
          Key: this.#key(lock),
          UpdateExpression:
            "SET #until = :until, #version = if_not_exists(#version, :zero) + :one",
          ConditionExpression:
            "attribute_not_exists(#until) OR #until < :until",
          ExpressionAttributeNames: {
            "#until": "waiting_until",
            "#version": "version",
          },
          ExpressionAttributeValues: {
            ":until": until,
            ":zero": { N: "0" },
            ":one": { N: "1" },
          },
        }),
        op,
      );
    } catch (error) {
      // Already marked until later.
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  #take(
    request: AcquireRequest,
    deferring: boolean,
    op: Operation,
  ): Promise<Lease> {
    const { resource } = request;
    this.#key(resource);
    this.#checkText(
      resource,
      request.principal,
      request.host,
      request.reason,
      request.link,
    );
    return this.#change(resource, op, (item, now) => {
      const old = this.#leaseOf(resource, item);
      if (old && old.expires.getTime() > now) {
        throw new this.#context.errors.LockHeldError(old);
      }
      if (deferring && Number(item?.waiting_until?.N) > now) {
        throw QUEUE_MARKED;
      }
      const lease: Lease = {
        resource,
        id: request.id,
        principal: request.principal,
        fence: this.#counter(resource, item, "fence")! + 1,
        created: new Date(now),
        expires: new Date(now + request.ttlSeconds * 1000),
      };
      if (request.host) lease.host = request.host;
      if (request.reason) lease.reason = request.reason;
      if (request.link) lease.link = request.link;
      const added = [encodeEvent("acquired", lease, now)];
      if (old) {
        added.unshift(encodeEvent("expired", old, old.expires.getTime()));
      }
      const { set, remove } = this.#leaseAttributes(lease);
      set.events = this.#appended(this.#eventsOf(resource, item), added, now);
      return { set, remove, result: lease };
    });
  }

  /** Marks the live lease `leaseId` free, recording `kind`; or throws. */
  #end(
    resource: string,
    leaseId: string,
    kind: "released" | "broken",
    op: Operation,
    by?: Breaker,
  ): Promise<Lease> {
    this.#key(resource);
    if (by) this.#checkText(resource, by.principal, by.host, by.reason);
    return this.#change(resource, op, (item, now) => {
      const lease = this.#liveOf(resource, item, now);
      if (lease?.id !== leaseId) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const events = this.#eventsOf(resource, item);
      return {
        // The fence stays, so the next lease's is higher.
        set: {
          fence: { N: String(lease.fence) },
          events: this.#appended(
            events,
            [encodeEvent(kind, lease, now, by)],
            now,
          ),
        },
        remove: LEASE_ATTRIBUTES,
        result: lease,
      };
    });
  }

  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(resource, leaseId, ending.kind, op, ending.by);
  }

  /** Marks lease `leaseId` free if its TTL has passed, recording it. */
  async expire(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> {
    this.#key(resource);
    const notDue = new Error("not due");
    try {
      return await this.#change(resource, op, (item, now) => {
        const old = this.#leaseOf(resource, item);
        if (old?.id !== leaseId || old.expires.getTime() > now) throw notDue;
        const added = [encodeEvent("expired", old, old.expires.getTime())];
        return {
          set: {
            fence: { N: String(old.fence) },
            events: this.#appended(this.#eventsOf(resource, item), added, now),
          },
          remove: LEASE_ATTRIBUTES,
          result: true,
        };
      });
    } catch (error) {
      if (error === notDue) return false;
      throw error;
    }
  }

  async renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const lease = await this.#renew(resource, leaseId, ttlSeconds, op, change);
    if (op.waitsFor !== undefined) {
      await this.#markWaiting(op.waitsFor, lease, op);
    }
    return lease;
  }

  #renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    this.#key(resource);
    return this.#change(resource, op, (item, now) => {
      const before = this.#liveOf(resource, item, now);
      if (before?.id !== leaseId) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const lease: Lease = {
        ...before,
        expires: new Date(now + ttlSeconds * 1000),
      };
      const changed = change.reason !== undefined &&
        change.reason !== (before.reason ?? "");
      if (changed) {
        this.#checkText(
          resource,
          lease.principal,
          lease.host,
          change.reason,
          lease.link,
        );
        if (change.reason) lease.reason = change.reason;
        else delete lease.reason;
      }
      const event = encodeEvent(
        changed ? "reason-changed" : "renewed",
        lease,
        now,
      );
      const { set, remove } = this.#leaseAttributes(lease);
      set.events = this.#appended(this.#eventsOf(resource, item), [event], now);
      return { set, remove, result: lease };
    });
  }

  current(resource: string, op: Operation): Promise<Lease | null> {
    return this.#withTable(op, async () => {
      const item = await this.#load(resource, op, [
        ...LEASE_ATTRIBUTES,
        "fence",
      ]);
      return this.#liveOf(resource, item, Date.now());
    });
  }

  /**
   * Scans the whole table, page by page (a page is at most 1 MB), keeping
   * live leases under `prefix`: one read unit per 4 KB of every item.
   */
  list(prefix: string, op: Operation): Promise<Lease[]> {
    return this.#withTable(op, async () => {
      const attributes = ["resource", ...LEASE_ATTRIBUTES, "fence"];
      const names = Object.fromEntries(
        attributes.map((name) => [`#${name}`, name]),
      );
      const values: Record<string, AttributeValue> = {
        ":now": { N: String(Date.now()) },
      };
      let filter = "attribute_exists(#lease) AND #expires > :now";
      if (prefix !== "") {
        filter += " AND begins_with(#resource, :prefix)";
        values[":prefix"] = { S: prefix };
      }
      const leases: Lease[] = [];
      let start: Item | undefined;
      do {
        const page: ScanCommandOutput = await this.#send(
          new ScanCommand({
            TableName: this.#table,
            ConsistentRead: true,
            ProjectionExpression: Object.keys(names).join(", "),
            FilterExpression: filter,
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
            ExclusiveStartKey: start,
          }),
          op,
        );
        for (const item of page.Items ?? []) {
          const resource = item.resource?.S;
          if (resource === undefined) continue;
          const lease = this.#leaseOf(resource, item);
          if (lease) leases.push(lease);
        }
        start = page.LastEvaluatedKey;
      } while (start);
      return leases;
    });
  }

  history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    return this.#withTable(op, async () => {
      const item = await this.#load(resource, op, ["events"]);
      const oldest = Date.now() - this.#keepMs;
      return this.#eventsOf(resource, item)
        .map((text) => this.#decode(resource, text))
        .filter((event) => event.at.getTime() >= oldest)
        .reverse()
        .slice(0, limit);
    });
  }

  /**
   * Creates the table (on-demand capacity) if it is missing and waits,
   * within the operation's time, until it is ACTIVE. Idempotent.
   */
  async init(op: Operation): Promise<void> {
    try {
      await this.#send(
        new CreateTableCommand({
          TableName: this.#table,
          BillingMode: "PAY_PER_REQUEST",
          AttributeDefinitions: [
            { AttributeName: "resource", AttributeType: "S" },
          ],
          KeySchema: [{ AttributeName: "resource", KeyType: "HASH" }],
        }),
        op,
      );
    } catch (error) {
      // Someone else created it, now or long ago.
      if (awsName(error) !== "ResourceInUseException") throw error;
    }
    while (true) {
      const { Table } = await this.#send<DescribeTableCommandOutput>(
        new DescribeTableCommand({ TableName: this.#table }),
        op,
      );
      const hash = Table?.KeySchema?.find((key) => key.KeyType === "HASH");
      const type = Table?.AttributeDefinitions?.find((attribute) =>
        attribute.AttributeName === hash?.AttributeName
      )?.AttributeType;
      if (
        Table?.KeySchema?.length !== 1 || hash?.AttributeName !== "resource" ||
        type !== "S"
      ) {
        throw new this.#context.errors.ConfigError(
          `${this.label}: table "${this.#table}" exists but its key is not the hash key resource (type S); choose another table in [${this.#where.section}]`,
        );
      }
      if (Table.TableStatus === "ACTIVE") return;
      if (Date.now() + 2 * POLL_MS >= op.deadline) {
        throw new this.#context.errors.BackendUnavailableError(
          `${this.label}: table "${this.#table}" is still ${Table.TableStatus}; that takes a minute on AWS, so run \`stormlock init\` again shortly`,
        );
      }
      await sleep(POLL_MS);
    }
  }

  close(): void {
    this.#client.destroy();
  }
}

/** Walks an error and its causes. */
function* causes(error: unknown): Generator<unknown> {
  for (let e = error, depth = 0; e && depth < 6; depth++) {
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/** The SDK's name for a failure, through an {@linkcode AwsFailure}. */
function awsName(error: unknown): string | undefined {
  const inner = error instanceof AwsFailure ? error.cause : error;
  return (inner as Error)?.name;
}

function isMissingTable(error: unknown): boolean {
  return awsName(error) === "ResourceNotFoundException";
}

const AUTH_ERRORS = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "AccessDeniedException",
  "ExpiredTokenException",
  "IncompleteSignatureException",
  "MissingAuthenticationTokenException",
]);

/** Errors that mean "too many requests": retrying later helps. */
const THROTTLED = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException",
]);

/** Replies that are not HTTP, or not DynamoDB's: a wrong port or host. */
const NO_HTTP =
  /Parse Error|Expected HTTP|invalid HTTP|HPE_|wrong version number|packet length too long|record layer failure|corrupt message|InvalidData/i;
/** HTTP replies that are not DynamoDB's JSON. */
const NOT_DYNAMODB = /Deserialization error|Unexpected token|not valid JSON/i;

/**
 * The region from the SDK's chain (AWS_REGION, the profile); with only a
 * local endpoint, any region does for signing.
 */
async function chainRegion(
  profile: string | undefined,
  hasEndpoint: boolean,
  context: KitContext,
): Promise<string> {
  const probe = new DynamoDBClient({
    profile,
    defaultsMode: "standard",
    logger: SILENT,
  });
  let region: string | undefined;
  try {
    region = await probe.config.region();
  } catch (error) {
    // A missing permission is the kit's to name; anything else: no region.
    if ([...causes(error)].some((e) => e instanceof Deno.errors.NotCapable)) {
      throw error;
    }
  } finally {
    probe.destroy();
  }
  if (region && (hasEndpoint || REGION.test(region))) return region;
  if (hasEndpoint) return LOCAL_REGION;
  throw new ConfigError(
    region
      ? `The AWS region "${
        region.slice(0, 60)
      }" (from AWS_REGION or the profile) is not an AWS region; set region in [${context.section}], e.g. region = us-east-1`
      : `No AWS region for DynamoDB: set region in [${context.section}], AWS_REGION, or a region in your AWS profile`,
  );
}

/**
 * The `dynamodb` backend: a DynamoDB table (or an emulator such as
 * dynalite or DynamoDB Local) shared by every host that can reach it.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend(
 *   { region: "eu-west-1", table: "stormlock" },
 *   { name: "dynamodb", section: "backend.dynamodb" },
 * );
 * ```
 */
export const backend = defineBackend({
  name: "dynamodb",
  options: {
    table: {
      kind: "text",
      default: "stormlock",
      doc: "The table; its hash key is `resource` (type S).",
    },
    region: {
      kind: "text",
      doc:
        "The AWS region, e.g. `eu-west-1`. Default: `AWS_REGION` or the profile's region; with `endpoint`, `us-east-1`.",
    },
    endpoint: {
      kind: "url",
      schemes: ["http:", "https:"],
      doc:
        "A custom endpoint, e.g. `http://127.0.0.1:8000` for DynamoDB Local; without credentials in it.",
    },
    profile: {
      kind: "text",
      doc: "The AWS shared-config profile for region and credentials.",
    },
    access_key_id: {
      kind: "text",
      doc: "Static credentials; otherwise the AWS default credential chain.",
    },
    secret_access_key: {
      kind: "text",
      doc: "The secret of `access_key_id`; never shown in any message.",
    },
    timeout: {
      kind: "duration",
      default: "3s",
      doc: "Bound on each operation, every request in it included.",
    },
    create_table: {
      kind: "boolean",
      default: false,
      doc: "Create a missing table on first use, as `stormlock init` does.",
    },
  },
  together: [["access_key_id", "secret_access_key"]],
  capabilities: {
    clock: "host",
    init: true,
    list: true,
    history: true,
    fencing: true,
    events: false,
    queue: true,
  },
  async open(settings, context) {
    const { table, endpoint, profile } = settings;
    if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
      throw context.optionError(
        "table",
        `"${
          table.slice(0, 60)
        }" is not a DynamoDB table name (3 to 255 of A-Z, a-z, 0-9, _ . -)`,
      );
    }
    if (endpoint && (endpoint.username || endpoint.password)) {
      throw context.optionError(
        "endpoint",
        "it holds credentials; set access_key_id and secret_access_key instead",
      );
    }
    if (settings.region !== undefined && !REGION.test(settings.region)) {
      throw context.optionError(
        "region",
        `"${
          settings.region.slice(0, 60)
        }" is not an AWS region; use a name like us-east-1 or eu-west-1`,
      );
    }
    const credentials = settings.access_key_id && settings.secret_access_key
      ? {
        accessKeyId: settings.access_key_id,
        secretAccessKey: settings.secret_access_key,
      }
      : undefined;
    const region = settings.region ??
      await chainRegion(profile, endpoint !== undefined, context);
    const client = new DynamoDBClient({
      region,
      endpoint: endpoint?.href,
      profile,
      // Static credentials are used as they are; otherwise the SDK's chain
      // (environment, profile, SSO, then container or instance roles,
      // which AWS_EC2_METADATA_DISABLED=true turns off).
      credentials,
      // "standard", not "auto": auto asks the instance metadata service.
      defaultsMode: "standard",
      // One attempt: the kit bounds the operation, and retrying belongs to
      // the wait loop above it, not to a storm of SDK retries.
      maxAttempts: 1,
      requestHandler: { logger: SILENT },
      // The default user agent reads the OS release, which would need
      // --allow-sys=osRelease; it is only telemetry.
      defaultUserAgentProvider: () =>
        Promise.resolve([["aws-sdk-js"], ["lang/js"], ["md/stormlock"]]),
      // The SDK must not write to the terminal; failures reach the user
      // through classify.
      logger: SILENT,
    });
    const label = endpoint
      ? `DynamoDB at ${endpoint.hostname}:${
        endpoint.port || (endpoint.protocol === "https:" ? "443" : "80")
      }`
      : `DynamoDB at dynamodb.${region}.amazonaws.com:443`;
    return new DynamoDbStore(client, label, {
      table,
      createTable: settings.create_table,
      keep: settings.history,
      keepMs: settings.history_age * 1000,
      where: {
        table,
        section: context.section,
        profile,
      },
      secrets: credentials ? [credentials.secretAccessKey] : [],
    }, context);
  },
  classify(error, failed) {
    if (!(error instanceof AwsFailure)) return undefined;
    const { table, section, profile } = error.where;
    const inner = error.cause as Error & {
      $metadata?: { httpStatusCode?: number };
      $response?: { statusCode?: number };
    };
    const name = inner?.name ?? "Error";
    // One line: the SDK adds advice on lines of its own.
    const message = shorten(error.message.split("\n")[0].replace(/\.$/, ""));
    const status = inner?.$metadata?.httpStatusCode ??
      inner?.$response?.statusCode;
    const all = [...causes(inner)];
    const text = all.map((e) =>
      `${(e as Error)?.message} ${(e as { code?: unknown })?.code}`
    ).join(" ");
    if (name === "ResourceNotFoundException") {
      return {
        config:
          `has no table "${table}": it does not exist; run \`stormlock init\` or set create_table = true in [${section}]`,
      };
    }
    if (name === "CredentialsProviderError") {
      return new ConfigError(
        `No AWS credentials found for ${failed.label}${
          profile ? ` in profile "${profile}"` : ""
        }: set access_key_id and secret_access_key in [${section}], a profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a credential_process profile also needs --allow-run)`,
        { cause: inner },
      );
    }
    // Before timeouts: a parser giving up is no timeout.
    if (NO_HTTP.test(text)) {
      return {
        unavailable:
          `does not speak HTTP/DynamoDB at that endpoint (${message}); check endpoint and its port in [${section}]`,
      };
    }
    if (
      NOT_DYNAMODB.test(text) || name === "UnknownOperationException" ||
      name === "Unknown" || name === "UnknownError"
    ) {
      return {
        unavailable:
          `does not speak HTTP/DynamoDB at that endpoint: it answered HTTP ${
            status ?? "?"
          }, not as DynamoDB does; check endpoint and its port in [${section}]`,
      };
    }
    if (
      name === "TimeoutError" || name === "RequestTimeout" ||
      /ETIMEDOUT|timed? ?out/i.test(text)
    ) {
      return "timeout";
    }
    // Node's system errors: ECONNREFUSED, ENOTFOUND, ECONNRESET…
    const code = all.map((e) => (e as { code?: unknown })?.code).find((c) =>
      typeof c === "string" && /^E[A-Z]+$/.test(c)
    );
    if (code) {
      return {
        unavailable:
          `could not be reached (${code}); check endpoint and region in [${section}]`,
      };
    }
    if (AUTH_ERRORS.has(name)) {
      return {
        unavailable: `refused the credentials (${name}): ${message}; ${
          name === "AccessDeniedException"
            ? `give them IAM access to table "${table}"`
            : `check the credentials and region in [${section}]`
        }`,
      };
    }
    if (THROTTLED.has(name)) {
      return {
        unavailable:
          `is throttling requests (${name}); retry later, or raise the table's capacity`,
      };
    }
    if (name === "ValidationException" && /size/i.test(message)) {
      return new UsageError(
        `The lease item for "${
          (failed.resource ?? "").slice(0, 100)
        }" is too large for DynamoDB (at most 400 KB per item): ${message}; keep principal, host, reason and link small`,
        { cause: inner },
      );
    }
    if (name === "ValidationException") {
      return {
        config:
          `rejected the request to ${failed.action} on table "${table}": ${message}; ${
            /key element|key schema|hash key|partition key/i.test(message)
              ? "the table's hash key must be resource (type S), or choose another table"
              : "choose a table of Stormlock's own"
          } in [${section}]`,
      };
    }
    return {
      unavailable:
        `failed to ${failed.action} (${name}): ${message}; fix what the service names, or retry if it was transient`,
    };
  },
});
