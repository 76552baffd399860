/**
 * The DynamoDB backend: one item per resource in a table whose hash key is
 * `resource` (type S). The item holds everything about the resource, so
 * every change is one conditional write to one item, which DynamoDB
 * applies atomically; no transactions are needed (and none are used:
 * DynamoDB emulators such as dynalite lack them).
 *
 * The item's layout, and what it costs, are in `items.ts`.
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
  type DynamoDBClient,
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
import { sleep } from "../../lib/kit/deadline.ts";
import { secretValues } from "../../lib/kit/options.ts";
import type { Breaker, Lease, LeaseEvent } from "../../lib/kit/types.ts";
import { openClient } from "./client.ts";
import {
  AwsFailure,
  awsName,
  classifyDynamoDbError,
  type Where,
} from "./errors.ts";
import { admits } from "../../lib/kit/holders.ts";
import { encodeEvent, HOLDER_ATTRIBUTES, type Item, Items } from "./items.ts";
import { checkSettings, options, together } from "./options.ts";

type AnyCommand = Parameters<DynamoDBClient["send"]>[0];

/** Thrown out of an acquire's step when the lock's queue is marked. */
const QUEUE_MARKED = Symbol("queue marked");

/**
 * The longest pause, in milliseconds, between rounds of read-and-write
 * after losing a race: a random part of it, so racers spread out (20
 * shared holders joining at once need 20 winning writes).
 */
const MAX_BACKOFF_MS = 40;
/** How often `init` looks whether a new table is ACTIVE. */
const POLL_MS = 250;

/** A lease store in one DynamoDB table. Expiry uses this host's clock. */
class DynamoDbStore implements Store {
  readonly label: string;
  readonly #client: DynamoDBClient;
  readonly #table: string;
  readonly #items: Items;
  readonly #keepMs: number;
  readonly #where: Where;
  readonly #secrets: readonly string[];
  readonly #context: KitContext;

  constructor(
    client: DynamoDBClient,
    label: string,
    settings: {
      table: string;
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
    this.#keepMs = settings.keepMs;
    this.#items = new Items(context, label, {
      count: settings.keep,
      ms: settings.keepMs,
    });
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
        Key: this.#items.key(resource),
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
    const version = this.#items.counter(resource, before, "version");
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
          Key: this.#items.key(resource),
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

  /**
   * Reads, decides and writes until the write wins, or the operation's
   * time is nearly up.
   */
  async #change<T>(
    resource: string,
    op: Operation,
    step: (item: Item | undefined, now: number) => {
      set: Record<string, AttributeValue>;
      remove: readonly string[];
      result: T;
    },
  ): Promise<T> {
    for (let round = 0;; round++) {
      const item = await this.#load(resource, op);
      const { set, remove, result } = step(item, Date.now());
      if (await this.#write(resource, item, set, remove, op)) return result;
      const pause = Math.random() * Math.min(MAX_BACKOFF_MS, 2 ** round);
      if (Date.now() + pause + 2 * MAX_BACKOFF_MS >= op.deadline) break;
      await sleep(pause);
    }
    throw new this.#context.errors.BackendUnavailableError(
      `${this.label}: the lock on "${resource}" kept changing hands; try again`,
    );
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
          Key: this.#items.key(lock),
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
    this.#items.key(resource);
    this.#items.checkText(
      resource,
      request.principal,
      request.host,
      request.reason,
      request.link,
    );
    const limit = request.limit ?? 1;
    return this.#change(resource, op, (item, now) => {
      const live = this.#items.live(resource, item, now);
      if (!admits(live, limit)) {
        throw new this.#context.errors.LockHeldError(live[0], {
          holders: live.length,
        });
      }
      if (deferring && Number(item?.waiting_until?.N) > now) {
        throw QUEUE_MARKED;
      }
      const fence = this.#items.counter(resource, item, "fence")! + 1;
      const lease: Lease = {
        resource,
        id: request.id,
        principal: request.principal,
        fence,
        created: new Date(now),
        expires: new Date(now + request.ttlSeconds * 1000),
      };
      if (request.host) lease.host = request.host;
      if (request.reason) lease.reason = request.reason;
      if (request.link) lease.link = request.link;
      if (limit !== 1) lease.limit = limit;
      const change = this.#items.leave(resource, item, now, [...live, lease], [
        encodeEvent("acquired", lease, now),
      ], fence);
      return { ...change, result: lease };
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
    this.#items.key(resource);
    if (by) this.#items.checkText(resource, by.principal, by.host, by.reason);
    return this.#change(resource, op, (item, now) => {
      const live = this.#items.live(resource, item, now);
      const lease = live.find((holder) => holder.id === leaseId);
      if (!lease) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      // The fence counter stays, so the next lease's is higher.
      const change = this.#items.leave(
        resource,
        item,
        now,
        live.filter((holder) => holder !== lease),
        [encodeEvent(kind, lease, now, by)],
      );
      return { ...change, result: lease };
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
    this.#items.key(resource);
    const notDue = new Error("not due");
    try {
      return await this.#change(resource, op, (item, now) => {
        const old = this.#items.holdersOf(resource, item)
          .find((holder) => holder.id === leaseId);
        if (!old || old.expires.getTime() > now) throw notDue;
        // Records the expiry of `old`, and of any other lapsed holder.
        const change = this.#items.leave(
          resource,
          item,
          now,
          this.#items.live(resource, item, now),
          [],
        );
        return { ...change, result: true };
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
    this.#items.key(resource);
    return this.#change(resource, op, (item, now) => {
      const live = this.#items.live(resource, item, now);
      const before = live.find((holder) => holder.id === leaseId);
      if (!before) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const lease: Lease = {
        ...before,
        expires: new Date(now + ttlSeconds * 1000),
      };
      const changed = change.reason !== undefined &&
        change.reason !== (before.reason ?? "");
      if (changed) {
        this.#items.checkText(
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
      const holders = live.map((holder) => holder === before ? lease : holder);
      const written = this.#items.leave(resource, item, now, holders, [event]);
      return { ...written, result: lease };
    });
  }

  async current(resource: string, op: Operation): Promise<Lease | null> {
    return (await this.holders(resource, op))[0] ?? null;
  }

  async holders(resource: string, op: Operation): Promise<Lease[]> {
    const item = await this.#load(resource, op, HOLDER_ATTRIBUTES);
    return this.#items.live(resource, item, Date.now());
  }

  /**
   * Scans the whole table, page by page (a page is at most 1 MB), keeping
   * every live holder under `prefix`: one read unit per 4 KB of every item.
   */
  async list(prefix: string, op: Operation): Promise<Lease[]> {
    const attributes = ["resource", ...HOLDER_ATTRIBUTES];
    const names = Object.fromEntries(
      attributes.map((name) => [`#${name}`, name]),
    );
    const now = Date.now();
    const values: Record<string, AttributeValue> = {
      ":now": { N: String(now) },
    };
    // The top-level lease may have lapsed while others in `holders` live.
    let filter =
      "((attribute_exists(#lease) AND #expires > :now) OR attribute_exists(#holders))";
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
        leases.push(...this.#items.live(resource, item, now));
      }
      start = page.LastEvaluatedKey;
    } while (start);
    return leases;
  }

  async history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    const item = await this.#load(resource, op, ["events"]);
    const oldest = Date.now() - this.#keepMs;
    return this.#items.eventsOf(resource, item)
      .map((text) => this.#items.decode(resource, text))
      .filter((event) => event.at.getTime() >= oldest)
      .reverse()
      .slice(0, limit);
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
  options,
  together,
  capabilities: {
    clock: "host",
    init: true,
    list: true,
    history: true,
    fencing: true,
    events: false,
    queue: true,
    holders: true,
  },
  createMissing: (settings) => settings.create_table,
  async open(settings, context) {
    checkSettings(settings, context);
    const { table, profile } = settings;
    const { client, label } = await openClient(settings, context);
    return new DynamoDbStore(client, label, {
      table,
      keep: settings.history,
      keepMs: settings.history_age * 1000,
      where: {
        table,
        section: context.section,
        profile,
      },
      secrets: secretValues(options, settings),
    }, context);
  },
  classify: classifyDynamoDbError,
});
