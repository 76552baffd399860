/**
 * The Redis backend: one Redis server (not a cluster, not Redlock). Every
 * change is one Lua script, so its check-and-set, its fence, its index
 * entry and its history event are one atomic step on the server, with
 * times from the server's clock (`TIME`), never ours.
 *
 * Keys, for `P` the prefix and `R` a resource:
 *
 * - `P R`: the lease, a hash with `id`, `principal`, `created`, `expires`
 *   (epoch ms), `fence` and, when given, `host`, `reason`, `link`. Its
 *   Redis expiry is `expires` (`PEXPIREAT`), so Redis deletes it when the
 *   lease ends. Stormlock 0.1 wrote the same hash without the last four
 *   fields; such a lease reads with fence 0.
 * - `P \0state\0 R`: never expires. `last` is the fence counter
 *   (`HINCRBY`), which survives release, expiry and break. The other fields
 *   shadow the live lease, and are cleared by release and break, so when
 *   acquire finds the lease key gone but a shadow whose `expires` has
 *   passed, that lease expired: it records `expired` at that time.
 * - `P \0holders\0 R`: only for a lock with slots or shared holds, its
 *   holders beyond the first (which is the lease above, so single-holder
 *   readers, 0.1 among them, still see the lock held): a sorted set of
 *   JSON records scored by fence. When the first ends, the lowest-fence
 *   live one moves into the lease key. It is kept until its latest
 *   holder's expiry plus `history_age`, so a late acquire still records
 *   their expiry.
 * - `P \0history\0 R`: a list of JSON events, newest first, trimmed to
 *   `history` entries and `history_age`; the key itself expires
 *   `history_age` after the last event.
 * - `P \0index`: a sorted set of resources scored by their latest
 *   holder's `expires`, kept by
 *   the scripts, so `list` never scans the keyspace. Stale entries are
 *   dropped lazily, by acquire and list.
 *
 * Every key is under the prefix, so one ACL pattern `~P*` covers them. A
 * lease key could only collide with the others for a resource whose name
 * starts with NUL, and such names are refused.
 *
 * Change events: the acquire, release and break scripts `PUBLISH` the kind
 * of change to `P \0events\0 R`, inside the script, so the message goes out
 * with the change itself (and only when it happened). Channels are under
 * the prefix too, so one ACL pattern `&P*` covers them. `watch` subscribes
 * on one connection of its own per store, made on first use.
 *
 * @module
 */
import { RedisConnection, type Script } from "./client.ts";
import { classify } from "./errors.ts";
import { options, parseTarget, type Target } from "./options.ts";
import {
  FIELD_COUNT,
  type ScriptReply as Reply,
  SCRIPTS,
  toRecord,
} from "./scripts.ts";
import type {
  AcquireRequest,
  Ending,
  KitContext,
  LeaseRecord,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { isEventKind } from "../../lib/kit/record.ts";
import { LazyConnection } from "../../lib/kit/connection.ts";
import { MAX_TIMER_MS } from "../../lib/kit/deadline.ts";
import { Subscriber } from "../../lib/kit/subscriber.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

/**
 * Sends AUTH, when there is a password, then SELECT when the url names a
 * database other than 0. A password the server does not need is ignored,
 * silently.
 */
async function login(client: RedisConnection, target: Target): Promise<void> {
  const { username, password } = target;
  if (password === undefined) return;
  try {
    await client.send(
      username === undefined
        ? ["AUTH", password]
        : ["AUTH", username, password],
    );
  } catch (error) {
    const message = (error as Error)?.message ?? "";
    // Redis 6 and later, and Redis 5 and earlier.
    if (!/without any password configured|no password is set/.test(message)) {
      throw error;
    }
  }
}

/** A lock store on one Redis server. Expiry uses the server's clock. */
class RedisStore implements Store {
  readonly label: string;
  readonly #target: Target;
  readonly #prefix: string;
  readonly #connectMs: number;
  readonly #context: KitContext;
  /** Events kept, and their age in ms, as script arguments. */
  readonly #keep: [string, string];
  readonly #connection = new LazyConnection<RedisConnection>({
    open: () => this.#open(),
    close: (client) => client.close(),
    isOpen: (client) => !client.closed,
  });
  /** SUBSCRIBEs to each resource's channel, for every watch of the store. */
  readonly #subscriber = new Subscriber<RedisConnection>({
    open: async (onMessage, onClose) => {
      const client = await this.#login();
      client.onMessage = onMessage;
      client.onClose = () => onClose(client.lastError);
      return client;
    },
    subscribe: (client, channel) => client.send(["SUBSCRIBE", channel]),
    unsubscribe: (client, channel) => client.send(["UNSUBSCRIBE", channel]),
    close: (client) => client.close(),
    answered: (error) => (error as Error)?.name === "ReplyError",
    closedError: () => new Error("Connection is closed."),
  });

  constructor(
    target: Target,
    settings: { prefix: string; timeout: number; keep: number; ageMs: number },
    context: KitContext,
  ) {
    this.#target = target;
    this.#prefix = settings.prefix;
    // One past the longest timer fires at once.
    this.#connectMs = Math.min(settings.timeout, MAX_TIMER_MS);
    this.#keep = [String(settings.keep), String(settings.ageMs)];
    this.#context = context;
    const host = target.host.includes(":") ? `[${target.host}]` : target.host;
    this.label = `Redis at ${host}:${target.port}`;
  }

  /** Opens a connection and logs in; used for commands and for watches. */
  async #login(): Promise<RedisConnection> {
    const client = await RedisConnection.open({
      ...this.#target,
      connectMs: this.#connectMs,
    });
    try {
      await login(client, this.#target);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** Opens a fresh connection; a broken one is never reused. */
  async #open(): Promise<RedisConnection> {
    const { db } = this.#target;
    const client = await this.#login();
    if (db !== 0) {
      try {
        await client.send(["SELECT", db]);
      } catch (error) {
        client.close();
        throw this.#selectError(error, db);
      }
    }
    return client;
  }

  /** A failed SELECT, as the config mistake it usually is. */
  #selectError(error: unknown, db: number): unknown {
    const message = (error as Error)?.message ?? "";
    if (!/DB index is out of range|invalid DB index/i.test(message)) {
      return error;
    }
    return this.#context.optionError(
      "url",
      `${this.label} has no database ${db} (${message}); use 0 to 15, or as many as the server's "databases" setting allows`,
    );
  }

  /**
   * Runs one script. When the kit's deadline passes, the connection's
   * state is unknown: it is dropped, and the next operation connects
   * afresh.
   */
  async #run<T>(
    op: Operation,
    script: Script,
    args: (string | number)[],
    // deno-lint-ignore no-explicit-any
    read: (reply: any) => T,
  ): Promise<T> {
    const client = await this.#connection.use(op);
    return read(await client.evalScript(script, args));
  }

  /** Sends one plain command, under the same deadline rules as #run. */
  async #command(op: Operation, args: (string | number)[]): Promise<unknown> {
    const client = await this.#connection.use(op);
    return await client.send(args);
  }

  /** The lease key; the side keys start with NUL after the prefix. */
  #key(resource: string): string {
    if (resource.startsWith("\0")) {
      throw new this.#context.errors.UsageError(
        `Bad resource name ${
          JSON.stringify(resource.slice(0, 20))
        }: the redis backend keeps names starting with NUL for itself`,
      );
    }
    return this.#prefix + resource;
  }

  /** The channel the scripts announce a resource's changes on. */
  #channel(resource: string): string {
    return `${this.#prefix}\0events\0${resource}`;
  }

  /** The keys every writing script takes, and its first arguments. */
  #writeKeys(resource: string, op: Operation): (string | number)[] {
    return [
      this.#key(resource),
      `${this.#prefix}\0state\0${resource}`,
      `${this.#prefix}\0history\0${resource}`,
      `${this.#prefix}\0index`,
      this.#waitersKey(op.waitsFor ?? resource),
      this.#holdersKey(resource),
      resource,
      ...this.#keep,
    ];
  }

  /**
   * The set of a lock's waiter registrations (by name), which its acquire
   * reads in the same script: for a registration, its lock's set.
   */
  #waitersKey(lock: string): string {
    return `${this.#prefix}\0waiters\0${lock}`;
  }

  /** The sorted set of a lock's holders beyond the first. */
  #holdersKey(resource: string): string {
    return `${this.#prefix}\0holders\0${resource}`;
  }

  /** How a write touches the queue: see the scripts' comments. */
  #queueRole(op: Operation, check?: string): string {
    if (op.waitsFor !== undefined) return "member";
    return check ? "check" : "";
  }

  /** The lease in a script's reply; rejects one Stormlock did not write. */
  #lease(resource: string, reply: Reply): Lease {
    // A key that is no hash has no fields; the kit rejects it as it would
    // any record without an id.
    return this.#context.leaseFromRecord(
      resource,
      reply[0] === "foreign" ? { id: null } as LeaseRecord : toRecord(reply),
    );
  }

  acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    const { resource } = request;
    const args = [
      ...this.#writeKeys(resource, op),
      request.id,
      request.principal,
      request.ttlSeconds * 1000,
      request.host ?? "",
      request.reason ?? "",
      request.link ?? "",
      this.#channel(resource),
      this.#queueRole(op, request.waiters),
      this.#prefix,
      request.limit ?? 1,
    ];
    return this.#run(op, SCRIPTS.acquire, args, (reply: Reply) => {
      const lease = this.#lease(resource, reply);
      if (reply[0] === "held") {
        throw new this.#context.errors.LockHeldError(lease, {
          holders: Number(reply[FIELD_COUNT + 1]),
        });
      }
      if (reply[0] === "queued") {
        throw new this.#context.errors.LockHeldError(lease, {
          waiting: Number(reply[FIELD_COUNT + 1]),
          queued: true,
        });
      }
      return lease;
    });
  }

  /** Ends the live lease `leaseId` as `ending` says; or throws. */
  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    const { kind, by } = ending;
    const args = [
      ...this.#writeKeys(resource, op),
      leaseId,
      kind,
      by?.principal ?? "",
      by?.host ?? "",
      by?.reason ?? "",
      this.#channel(resource),
      this.#queueRole(op),
    ];
    return this.#run(op, SCRIPTS.end, args, (reply: Reply | null) => {
      if (!reply) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(resource, reply);
    });
  }

  expire(resource: string, leaseId: string, op: Operation): Promise<boolean> {
    const args = [
      ...this.#writeKeys(resource, op),
      leaseId,
      this.#channel(resource),
    ];
    return this.#run(op, SCRIPTS.expire, args, (reply: number) => reply === 1);
  }

  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const args = [
      ...this.#writeKeys(resource, op),
      leaseId,
      ttlSeconds * 1000,
      change.reason === undefined ? "0" : "1",
      change.reason ?? "",
    ];
    return this.#run(op, SCRIPTS.renew, args, (reply: Reply | null) => {
      if (!reply) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(resource, reply);
    });
  }

  /**
   * Warns unless Redis is set never to evict keys: under memory pressure
   * an evicting policy drops held leases, fence counters and history.
   */
  async checkSetup(op: Operation): Promise<string[]> {
    let reply: unknown;
    try {
      reply = await this.#command(op, ["CONFIG", "GET", "maxmemory-policy"]);
    } catch {
      return [
        `could not read maxmemory-policy (CONFIG GET is not allowed); make sure it is noeviction, or Redis may evict held leases and reset fences (see docs/backends/redis.md)`,
      ];
    }
    const policy = Array.isArray(reply) ? String(reply[1] ?? "") : "";
    if (policy === "" || policy === "noeviction") return [];
    return [
      `maxmemory-policy is ${policy}, so under memory pressure Redis may evict held leases and reset fences; set maxmemory-policy noeviction (see docs/backends/redis.md)`,
    ];
  }

  current(resource: string, op: Operation): Promise<Lease | null> {
    const keys = [this.#key(resource), this.#holdersKey(resource)];
    return this.#run(op, SCRIPTS.read, keys, (reply: Reply | null) => {
      return reply && this.#lease(resource, reply);
    });
  }

  holders(resource: string, op: Operation): Promise<Lease[]> {
    const keys = [this.#key(resource), this.#holdersKey(resource)];
    return this.#run(op, SCRIPTS.holders, keys, (flat: Reply) => {
      if (flat[0] === "foreign") return [this.#lease(resource, flat)];
      const leases: Lease[] = [];
      for (let i = 0; i < flat.length; i += FIELD_COUNT) {
        leases.push(
          this.#context.leaseFromRecord(resource, toRecord(flat, i)),
        );
      }
      return leases;
    });
  }

  list(prefix: string, op: Operation): Promise<Lease[]> {
    const args = [`${this.#prefix}\0index`, this.#prefix, prefix];
    return this.#run(op, SCRIPTS.list, args, (flat: Reply) => {
      const leases: Lease[] = [];
      for (let i = 0; i < flat.length; i += FIELD_COUNT + 1) {
        const resource = flat[i] ?? "";
        leases.push(
          this.#context.leaseFromRecord(resource, toRecord(flat, i + 1)),
        );
      }
      return leases;
    });
  }

  history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    this.#key(resource);
    const key = `${this.#prefix}\0history\0${resource}`;
    const ageMs = Number(this.#keep[1]);
    return this.#run(op, SCRIPTS.history, [key, limit], (reply: Reply) => {
      const [now, ...entries] = reply as string[];
      const events: LeaseEvent[] = [];
      for (const entry of entries) {
        const event = this.#event(resource, entry);
        if (event.at.getTime() >= Number(now) - ageMs) events.push(event);
      }
      return events;
    });
  }

  recentResources(
    prefix: string,
    sinceMs: number,
    op: Operation,
  ): Promise<string[]> {
    const glob = (text: string) => text.replace(/[*?[\]\\]/g, "\\$&");
    const head = `${this.#prefix}\0history\0`;
    return (async () => {
      const names: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await this.#command(op, [
          "SCAN",
          cursor,
          "MATCH",
          `${glob(head)}${glob(prefix)}*`,
          "COUNT",
          1000,
        ]) as [string, string[]];
        cursor = String(next);
        for (const key of keys ?? []) {
          const newest = await this.#command(op, ["LINDEX", key, 0]);
          let at = NaN;
          try {
            at = Number(JSON.parse(String(newest ?? "{}"))?.at);
          } catch { /* not Stormlock's: skipped */ }
          if (at >= sinceMs) names.push(String(key).slice(head.length));
        }
      } while (cursor !== "0");
      return names;
    })();
  }

  /** One history entry; rejects one Stormlock did not write. */
  #event(resource: string, entry: string): LeaseEvent {
    let data: Record<string, unknown> | undefined;
    try {
      data = JSON.parse(entry);
    } catch {
      data = undefined;
    }
    const by = data?.by as Record<string, unknown> | undefined;
    const valid = typeof data === "object" && data !== null &&
      isEventKind(data.kind) &&
      Number.isSafeInteger(data.at) &&
      (by === undefined ||
        typeof by.principal === "string" && typeof by.reason === "string" &&
          (by.host === undefined || typeof by.host === "string"));
    const lease = this.#context.leaseFromRecord(
      resource,
      valid ? data as unknown as LeaseRecord : { id: null } as LeaseRecord,
    );
    const event: LeaseEvent = {
      ...lease,
      kind: data!.kind as LeaseEventKind,
      at: new Date(data!.at as number),
    };
    if (by) event.by = by as unknown as Breaker;
    return event;
  }

  /**
   * Subscribes to the resource's channel on the store's subscriber, which
   * every watch of this store shares (one SUBSCRIBE per channel).
   */
  watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    this.#key(resource);
    const channel = this.#channel(resource);
    return this.#subscriber.watch(
      { topic: channel, keys: [channel] },
      onChange,
      signal,
      op,
    );
  }

  close(): void {
    this.#connection.close();
    this.#subscriber.close();
  }
}

/**
 * The `redis` backend: one Redis server, many hosts.
 *
 * @example
 * ```ts ignore
 * const locks = await backend.createBackend(
 *   { url: "redis://127.0.0.1:6379" },
 *   { name: "redis", section: "backend.redis" },
 * );
 * ```
 */
export const backend = defineBackend({
  name: "redis",
  options,
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
    const target = parseTarget(settings.url, context);
    if (settings.ca_cert !== undefined) {
      if (!target.tls) {
        throw context.optionError(
          "ca_cert",
          "it needs a rediss:// url; redis:// does not use TLS",
        );
      }
      target.ca = settings.ca_cert;
    }
    return new RedisStore(target, {
      prefix: settings.prefix,
      timeout: settings.timeout,
      keep: settings.history,
      ageMs: settings.history_age * 1000,
    }, context);
  },
  classify,
});
