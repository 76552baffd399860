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
 * - `P \0history\0 R`: a list of JSON events, newest first, trimmed to
 *   `history` entries and `history_age`; the key itself expires
 *   `history_age` after the last event.
 * - `P \0index`: a sorted set of resources scored by `expires`, kept by
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
import { Redis } from "ioredis";
import { isIP } from "node:net";
import {
  type AcquireRequest,
  defineBackend,
  type KitContext,
  type LeaseRecord,
  type Operation,
  type Store,
} from "../lib/kit/backend.ts";
import { MAX_TIMER_MS } from "../lib/kit/deadline.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../lib/kit/types.ts";

// Shared by every script: the field order of replies, and the lease key's
// fields, or false when there is none, or 'foreign' when it is no hash.
const COMMON = `
local FIELDS = {'id', 'principal', 'created', 'expires', 'fence', 'host', 'reason', 'link'}
local function lease(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return false end
  if kind ~= 'hash' then return 'foreign' end
  return redis.call('HMGET', key, unpack(FIELDS))
end
local function reply(status, f)
  local out = {status}
  for i = 1, #FIELDS do out[i + 1] = f[i] end
  return out
end
`;

// For scripts that write: the server's clock in epoch ms (a script that
// reads TIME and then writes needs effect replication before Redis 5),
// and the writers of leases, shadows and events.
const WRITER = COMMON + `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(n) return string.format('%.0f', n) end
local function put(key, f)
  redis.call('HDEL', key, unpack(FIELDS))
  local args = {}
  for i, name in ipairs(FIELDS) do
    if f[i] then args[#args + 1] = name; args[#args + 1] = f[i] end
  end
  redis.call('HSET', key, unpack(args))
end
-- Tells watchers of the resource (ARGV[1]) that its lock changed. A user
-- whose ACL predates events (no PUBLISH) still changes locks; watch fails
-- for it, and waiters poll.
local function announce(channel, kind)
  redis.pcall('PUBLISH', channel, kind)
end
-- ARGV[1..3] of every writer: resource, events kept, their age in ms.
local function record(key, kind, at, f, by)
  local e = {kind = kind, at = at, id = f[1], principal = f[2],
    created = tonumber(f[3]), expires = tonumber(f[4]), by = by}
  if f[5] then e.fence = tonumber(f[5]) end
  if f[6] then e.host = f[6] end
  if f[7] then e.reason = f[7] end
  if f[8] then e.link = f[8] end
  redis.call('LPUSH', key, cjson.encode(e))
  redis.call('LTRIM', key, 0, tonumber(ARGV[2]) - 1)
  local cutoff = now - tonumber(ARGV[3])
  while true do
    local last = redis.call('LINDEX', key, -1)
    if not last then break end
    local ok, old = pcall(cjson.decode, last)
    if not (ok and type(old) == 'table' and tonumber(old.at)
      and tonumber(old.at) < cutoff) then break end
    redis.call('RPOP', key)
  end
  redis.call('PEXPIRE', key, ARGV[3])
end
`;

// KEYS lease, state, history, index; ARGV resource, kept, age, id,
// principal, ttl ms, host, reason, link ('' for none), events channel.
const ACQUIRE = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if f then return reply('held', f) end
local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local ended = tonumber(old[4])
if old[1] and ended and ended <= now then
  record(KEYS[3], 'expired', ended, old)
end
local fence = redis.call('HINCRBY', KEYS[2], 'last', 1)
local function given(s) if s == '' then return false end return s end
local expires = ms(now + tonumber(ARGV[6]))
f = {ARGV[4], ARGV[5], ms(now), expires, tostring(fence),
  given(ARGV[7]), given(ARGV[8]), given(ARGV[9])}
put(KEYS[1], f)
redis.call('PEXPIREAT', KEYS[1], expires)
put(KEYS[2], f)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ms(now))
redis.call('ZADD', KEYS[4], expires, ARGV[1])
record(KEYS[3], 'acquired', now, f)
announce(ARGV[10], 'acquired')
return reply('acquired', f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, ttl ms, '1' to set the
// reason, the reason. Returns nil when the id is not the live lease.
const RENEW = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f or f[1] ~= ARGV[4] then return false end
local kind = 'renewed'
if ARGV[6] == '1' and ARGV[7] ~= (f[7] or '') then
  kind = 'reason-changed'
  f[7] = ARGV[7] ~= '' and ARGV[7]
end
f[4] = ms(now + tonumber(ARGV[5]))
put(KEYS[1], f)
redis.call('PEXPIREAT', KEYS[1], f[4])
put(KEYS[2], f)
redis.call('ZADD', KEYS[4], f[4], ARGV[1])
record(KEYS[3], kind, now, f)
return reply(kind, f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, kind ('released' or
// 'broken'), then the breaker's principal, host and reason, and the events
// channel. Returns nil when the id is not the live lease.
const END = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f or f[1] ~= ARGV[4] then return false end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], unpack(FIELDS))
redis.call('ZREM', KEYS[4], ARGV[1])
local by = nil
if ARGV[5] == 'broken' then
  by = {principal = ARGV[6], reason = ARGV[8]}
  if ARGV[7] ~= '' then by.host = ARGV[7] end
end
record(KEYS[3], ARGV[5], now, f, by)
announce(ARGV[9], ARGV[5])
return reply(ARGV[5], f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, events channel. Records
// the expiry of lease id (gone from KEYS[1], its shadow past its expiry)
// and clears the shadow; 1 if it did, 0 when renewed, ended or not due.
const EXPIRE = WRITER + `
local f = lease(KEYS[1])
if f then return 0 end
local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local ended = tonumber(old[4])
if old[1] ~= ARGV[4] or not ended or ended > now then return 0 end
record(KEYS[3], 'expired', ended, old)
redis.call('HDEL', KEYS[2], unpack(FIELDS))
redis.call('ZREM', KEYS[4], ARGV[1])
announce(ARGV[5], 'expired')
return 1
`;

// KEYS lease. Redis never returns a key past its expiry.
const READ = COMMON + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f then return false end
return reply('lease', f)
`;

// KEYS history; ARGV how many. Returns the server's time, then the events.
const HISTORY = `
local t = redis.call('TIME')
local out = {t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  out[#out + 1] = e
end
return out
`;

// KEYS index; ARGV key prefix, name prefix. Returns, for each live lease
// whose name starts with the name prefix, its name and fields. The lease
// keys are named by the index, so they can't be passed as KEYS: this is
// why the backend needs one server, not a cluster.
const LIST = WRITER + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now))
local out = {}
local p = ARGV[2]
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now), '+inf')) do
  if string.sub(name, 1, #p) == p then
    local f = lease(ARGV[1] .. name)
    if not f then
      redis.call('ZREM', KEYS[1], name)
    else
      if f == 'foreign' then f = {} end
      out[#out + 1] = name
      for i = 1, #FIELDS do out[#out + 1] = f[i] or false end
    end
  end
end
return out
`;

const FIELD_COUNT = 8;

/** A script's reply: a status, then the lease's fields in FIELDS order. */
type Reply = (string | null)[];

/** The scripts, as ioredis exposes them after `defineCommand`. */
interface Scripts {
  stormlockAcquire(...args: (string | number)[]): Promise<Reply>;
  stormlockRenew(...args: (string | number)[]): Promise<Reply | null>;
  stormlockEnd(...args: (string | number)[]): Promise<Reply | null>;
  stormlockExpire(...args: (string | number)[]): Promise<number>;
  stormlockRead(key: string): Promise<Reply | null>;
  stormlockHistory(key: string, limit: number): Promise<string[]>;
  stormlockList(
    index: string,
    keyPrefix: string,
    namePrefix: string,
  ): Promise<(string | null)[]>;
}

type Client = Redis & Scripts;

/** Where and how to connect, from `url` and `ca_cert`. */
interface Target {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
  ca?: string;
}

/** Epoch ms as Stormlock writes them; anything else reads as missing. */
function digits(value: string | null | undefined): string | undefined {
  return value && /^\d{1,16}$/.test(value) ? value : undefined;
}

/** The record in a reply's fields, from `offset` on. */
function toRecord(fields: (string | null)[], offset = 1): LeaseRecord {
  const [id, principal, created, expires, fence, host, reason, link] = fields
    .slice(offset, offset + FIELD_COUNT);
  return {
    id,
    principal,
    // The kit also takes ISO text; here it can only be another tool's.
    created: digits(created),
    expires: digits(expires),
    fence,
    host,
    reason,
    link,
  };
}

const EVENT_KINDS: readonly string[] = [
  "acquired",
  "renewed",
  "released",
  "reason-changed",
  "expired",
  "broken",
];

/** What to do about a Redis error reply, by its leading code. */
function replyRemedy(message: string): string {
  if (/^READONLY\b/.test(message)) {
    return "point the url at the primary, not a replica";
  }
  if (/^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN)\b/.test(message)) {
    return "the server is not ready; retry shortly";
  }
  if (/^OOM\b/.test(message)) {
    return "free memory on the server or raise its maxmemory";
  }
  if (/^MISCONF\b/.test(message)) {
    return "fix the server's persistence error (see its log)";
  }
  if (/^(ERR unknown command|ERR .*EVALSHA|NOSCRIPT)/.test(message)) {
    return "use Redis 6 or newer with Lua scripting enabled";
  }
  return "fix what the server names, or retry if it was transient";
}

/**
 * Removes the AUTH arguments ioredis attaches to a failed command's error,
 * so a password never reaches a printed `cause`.
 */
function scrub<T>(error: T): T {
  const command = (error as { command?: { name?: string; args?: unknown[] } })
    ?.command;
  if (command && /^(auth|hello)$/i.test(command.name ?? "")) {
    command.args = ["(hidden)"];
  }
  return error;
}

/**
 * The target `url` names, checked beyond its scheme. Messages never repeat
 * the URL, which may hold a password.
 */
function parseTarget(url: URL, context: KitContext): Target {
  const fail = (why: string) => context.optionError("url", why);
  if (!url.hostname) throw fail("the URL names no host");
  if (url.port === "0") {
    throw fail("port 0 is not a port; use 1 to 65535 (6379 if left out)");
  }
  if (url.search || url.hash) {
    throw fail("query parameters and fragments are not supported");
  }
  const path = url.pathname.replace(/^\//, "");
  // SELECT takes a C int; whether the server has that many is its call.
  if (!/^\d{0,10}$/.test(path) || Number(path) > 2 ** 31 - 1) {
    throw fail("the path must be a database number, e.g. /0");
  }
  if (url.username && !url.password) {
    throw fail(
      "a user needs a password; use redis://user:password@host, or redis://:password@host for the default user",
    );
  }
  const decode = (part: string) => {
    try {
      return part === "" ? undefined : decodeURIComponent(part);
    } catch {
      throw fail("the user or password is badly encoded");
    }
  };
  return {
    // URL keeps the brackets of an IPv6 address; sockets want it bare.
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port ? Number(url.port) : 6379,
    username: decode(url.username),
    password: decode(url.password),
    db: path === "" ? 0 : Number(path),
    tls: url.protocol === "rediss:",
  };
}

/**
 * Sends AUTH, when there is a password. ioredis would send it too, but it
 * prints a warning of its own to stderr when the server needs none; a
 * password the server does not need is ignored here, as there, silently.
 */
async function login(client: Redis, target: Target): Promise<void> {
  const { username, password } = target;
  if (password === undefined) return;
  try {
    if (username === undefined) await client.auth(password);
    else await client.auth(username, password);
  } catch (error) {
    const message = (error as Error)?.message ?? "";
    // Redis 6 and later, and Redis 5 and earlier.
    if (!/without any password configured|no password is set/.test(message)) {
      throw error;
    }
  }
}

/** A connection and the last error its socket reported. */
interface Connection {
  client: Client;
  lastError?: unknown;
}

/**
 * The store's subscriber: a connection in subscriber mode, and the
 * callbacks of the watches on each channel. Once its connection drops it
 * is dead: its watches hear nothing more (waiters poll), and the next
 * watch opens a new one.
 */
interface Subscriber {
  client: Redis;
  /** Settles when it is connected and logged in. */
  ready: Promise<void>;
  /** Per channel: its watches, and the SUBSCRIBE that serves them. */
  channels: Map<
    string,
    { watches: Set<() => void>; subscribed: Promise<unknown> }
  >;
  lastError?: unknown;
  dead: boolean;
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
  #connection?: Connection;
  #connecting?: Promise<Client>;
  #subscriber?: Subscriber;

  constructor(
    target: Target,
    settings: { prefix: string; timeout: number; keep: number; ageMs: number },
    context: KitContext,
  ) {
    this.#target = target;
    this.#prefix = settings.prefix;
    // ioredis sets a timer from it; one past the longest fires at once.
    this.#connectMs = Math.min(settings.timeout, MAX_TIMER_MS);
    this.#keep = [String(settings.keep), String(settings.ageMs)];
    this.#context = context;
    const host = target.host.includes(":") ? `[${target.host}]` : target.host;
    this.label = `Redis at ${host}:${target.port}`;
  }

  /** A client, not yet connected, for the target. */
  #client(): Redis {
    const { host, port, tls, ca } = this.#target;
    return new Redis({
      host,
      port,
      // No username, password or db: login sends them, after connecting.
      // SNI takes names only; an address is checked against the IP SANs.
      tls: tls
        ? { ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}) }
        : undefined,
      // ioredis otherwise queues commands and reconnects forever; we want
      // one attempt per operation and a clear error. The kit's deadline
      // bounds each command, so there is no per-command timer.
      lazyConnect: true,
      connectTimeout: this.#connectMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      reconnectOnError: () => false,
      enableOfflineQueue: false,
      autoResubscribe: false,
      disableClientInfo: true,
      // Its INFO would come before login's AUTH, and fail.
      enableReadyCheck: false,
      // disconnect() half-closes and waits this long for the peer before
      // destroying the socket; a dead peer would hold the process open.
      disconnectTimeout: 0,
    });
  }

  /** Opens a fresh connection; a broken one is never reused. */
  async #open(): Promise<Client> {
    const { db } = this.#target;
    const client = this.#client() as Client;
    const connection: Connection = { client };
    // Connection errors arrive as events too; without a listener ioredis
    // prints them. The last one names the real cause of a failure.
    client.on("error", (error: unknown) => {
      connection.lastError = error;
    });
    const scripts = {
      stormlockAcquire: [4, ACQUIRE],
      stormlockRenew: [4, RENEW],
      stormlockEnd: [4, END],
      stormlockExpire: [4, EXPIRE],
      stormlockRead: [1, READ],
      stormlockHistory: [1, HISTORY],
      stormlockList: [1, LIST],
    } as const;
    for (const [name, [numberOfKeys, lua]] of Object.entries(scripts)) {
      client.defineCommand(name, { numberOfKeys, lua });
    }
    this.#connection = connection;
    try {
      await client.connect();
      await login(client, this.#target);
    } catch (error) {
      this.#discard(client);
      throw connection.lastError ?? error;
    }
    if (db !== 0) {
      try {
        await client.select(db);
      } catch (error) {
        this.#discard(client);
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

  /** The connected client, connecting first when needed. */
  #connect(): Promise<Client> {
    // A client is ready before #open has logged it in; #connecting says so.
    const client = this.#connection?.client;
    if (client?.status === "ready" && !this.#connecting) {
      return Promise.resolve(client);
    }
    if (!this.#connecting) {
      const connecting = this.#open().finally(() => {
        if (this.#connecting === connecting) this.#connecting = undefined;
      });
      this.#connecting = connecting;
    }
    return this.#connecting;
  }

  /** Drops a connection at once, even one to a server that never answers. */
  #discard(client = this.#connection?.client): void {
    if (!client) return;
    if (this.#connection?.client === client) {
      // The next operation starts a fresh connection instead of waiting on
      // this one's failure.
      this.#connection = undefined;
      this.#connecting = undefined;
    }
    client.disconnect();
  }

  /**
   * Runs one exchange with the server. When the kit's deadline passes, the
   * connection's state is unknown: it is dropped, and the next operation
   * connects afresh.
   */
  async #run<T>(op: Operation, body: (client: Client) => Promise<T>) {
    const connection = this.#connection;
    op.onExpire(() => this.#discard());
    try {
      return await body(await this.#connect());
    } catch (error) {
      // A command on a socket that failed says only "Connection is
      // closed"; the socket's own error says why.
      const cause = /Connection is closed/.test((error as Error)?.message)
        ? (this.#connection ?? connection)?.lastError ?? error
        : error;
      throw scrub(cause);
    }
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
  #writeKeys(resource: string): (string | number)[] {
    return [
      this.#key(resource),
      `${this.#prefix}\0state\0${resource}`,
      `${this.#prefix}\0history\0${resource}`,
      `${this.#prefix}\0index`,
      resource,
      ...this.#keep,
    ];
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
      ...this.#writeKeys(resource),
      request.id,
      request.principal,
      request.ttlSeconds * 1000,
      request.host ?? "",
      request.reason ?? "",
      request.link ?? "",
      this.#channel(resource),
    ];
    return this.#run(op, async (client) => {
      const reply = await client.stormlockAcquire(...args);
      const lease = this.#lease(resource, reply);
      if (reply[0] === "held") {
        throw new this.#context.errors.LockHeldError(lease);
      }
      return lease;
    });
  }

  /** Ends the live lease `leaseId`, recording `kind`; or throws. */
  #end(
    op: Operation,
    resource: string,
    leaseId: string,
    kind: "released" | "broken",
    by?: Breaker,
  ): Promise<Lease> {
    const args = [
      ...this.#writeKeys(resource),
      leaseId,
      kind,
      by?.principal ?? "",
      by?.host ?? "",
      by?.reason ?? "",
      this.#channel(resource),
    ];
    return this.#run(op, async (client) => {
      const reply = await client.stormlockEnd(...args);
      if (!reply) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(resource, reply);
    });
  }

  async release(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<void> {
    await this.#end(op, resource, leaseId, "released");
  }

  breakLease(
    resource: string,
    leaseId: string,
    by: Breaker,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(op, resource, leaseId, "broken", by);
  }

  expire(resource: string, leaseId: string, op: Operation): Promise<boolean> {
    const args = [
      ...this.#writeKeys(resource),
      leaseId,
      this.#channel(resource),
    ];
    return this.#run(
      op,
      async (client) => await client.stormlockExpire(...args) === 1,
    );
  }

  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const args = [
      ...this.#writeKeys(resource),
      leaseId,
      ttlSeconds * 1000,
      change.reason === undefined ? "0" : "1",
      change.reason ?? "",
    ];
    return this.#run(op, async (client) => {
      const reply = await client.stormlockRenew(...args);
      if (!reply) {
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      return this.#lease(resource, reply);
    });
  }

  current(resource: string, op: Operation): Promise<Lease | null> {
    const key = this.#key(resource);
    return this.#run(op, async (client) => {
      const reply = await client.stormlockRead(key);
      return reply && this.#lease(resource, reply);
    });
  }

  list(prefix: string, op: Operation): Promise<Lease[]> {
    return this.#run(op, async (client) => {
      const flat = await client.stormlockList(
        `${this.#prefix}\0index`,
        this.#prefix,
        prefix,
      );
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
    return this.#run(op, async (client) => {
      const [now, ...entries] = await client.stormlockHistory(key, limit);
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
    return this.#run(op, async (client) => {
      const names: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await client.scan(
          cursor,
          "MATCH",
          `${glob(head)}${glob(prefix)}*`,
          "COUNT",
          1000,
        );
        cursor = next;
        if (keys.length === 0) continue;
        const newest = await Promise.all(
          keys.map((key) => client.lindex(key, 0)),
        );
        keys.forEach((key, i) => {
          let at = NaN;
          try {
            at = Number(JSON.parse(newest[i] ?? "{}")?.at);
          } catch { /* not Stormlock's: skipped */ }
          if (at >= sinceMs) names.push(key.slice(head.length));
        });
      } while (cursor !== "0");
      return names;
    });
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
      EVENT_KINDS.includes(data.kind as string) &&
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

  /** The live subscriber, opening one (connected lazily) when needed. */
  #subscribe(): Subscriber {
    const live = this.#subscriber;
    if (live && !live.dead) return live;
    const client = this.#client();
    const subscriber: Subscriber = {
      client,
      ready: Promise.resolve(),
      channels: new Map(),
      dead: false,
    };
    client.on("error", (error: unknown) => {
      subscriber.lastError = error;
    });
    client.on("message", (channel: string) => {
      for (const watch of subscriber.channels.get(channel)?.watches ?? []) {
        try {
          watch();
        } catch { /* a watcher's failure is its own */ }
      }
    });
    // No reconnecting: its watches go quiet, and their waiters poll.
    client.on("close", () => this.#dropSubscriber(subscriber));
    subscriber.ready = (async () => {
      try {
        await client.connect();
        await login(client, this.#target);
      } catch (error) {
        this.#dropSubscriber(subscriber);
        throw subscriber.lastError ?? error;
      }
    })();
    this.#subscriber = subscriber;
    return subscriber;
  }

  /** Ends a subscriber at once; its watches hear nothing more. */
  #dropSubscriber(subscriber: Subscriber | undefined): void {
    if (!subscriber) return;
    if (this.#subscriber === subscriber) this.#subscriber = undefined;
    if (subscriber.dead) return;
    subscriber.dead = true;
    subscriber.channels.clear();
    subscriber.client.disconnect();
  }

  /**
   * Subscribes to the resource's channel on the store's subscriber, which
   * every watch of this store shares (one SUBSCRIBE per channel). When the
   * deadline passes first, the subscriber is dropped: its state is unknown.
   */
  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    this.#key(resource);
    if (signal.aborted) return;
    const subscriber = this.#subscribe();
    const channel = this.#channel(resource);
    let settled = false;
    op.onExpire(() => {
      if (!settled) this.#dropSubscriber(subscriber);
    });
    // Its own function, so the same onChange may watch twice.
    const watch = () => onChange();
    const leave = () => {
      const entry = subscriber.channels.get(channel);
      if (!entry?.watches.delete(watch) || entry.watches.size > 0) return;
      subscriber.channels.delete(channel);
      if (!subscriber.dead) {
        subscriber.client.unsubscribe(channel).catch(() => {});
      }
    };
    try {
      await subscriber.ready;
      if (signal.aborted) return;
      let entry = subscriber.channels.get(channel);
      if (!entry) {
        entry = {
          watches: new Set(),
          subscribed: subscriber.client.subscribe(channel),
        };
        subscriber.channels.set(channel, entry);
      }
      entry.watches.add(watch);
      signal.addEventListener("abort", leave, { once: true });
      try {
        await entry.subscribed;
      } catch (error) {
        signal.removeEventListener("abort", leave);
        entry.watches.delete(watch);
        if (subscriber.channels.get(channel) === entry) {
          subscriber.channels.delete(channel);
        }
        throw error;
      }
      if (subscriber.dead) {
        // Dropped as it subscribed: this watch would hear nothing.
        throw subscriber.lastError ?? new Error("Connection is closed.");
      }
    } catch (error) {
      const cause = /Connection is closed/.test((error as Error)?.message)
        ? subscriber.lastError ?? error
        : error;
      throw scrub(cause);
    } finally {
      settled = true;
    }
  }

  close(): void {
    this.#discard();
    this.#dropSubscriber(this.#subscriber);
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
  options: {
    url: {
      kind: "url",
      schemes: ["redis:", "rediss:"],
      default: "redis://127.0.0.1:6379",
      doc:
        "`redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS. Percent-encode special characters in the user and password. Use `redis://:password@host` for the default user (`requirepass`), and `redis://user:password@host` for an ACL user. Query parameters are refused.",
    },
    prefix: {
      kind: "text",
      default: "stormlock:",
      doc: "Goes in front of each resource name to make its keys.",
    },
    timeout: {
      kind: "duration",
      default: "3s",
      doc:
        "The limit on each operation, including connecting and authenticating.",
    },
    ca_cert: {
      kind: "pem",
      doc:
        "A PEM file of CAs to trust for `rediss://`, for a server with a private CA. Only allowed with `rediss://`.",
    },
  },
  capabilities: {
    clock: "server",
    list: true,
    history: true,
    fencing: true,
    events: true,
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
  classify(error, failed) {
    // Redis ends some messages with a period; ours continue after them.
    const message = ((error as Error)?.message ?? String(error))
      .replace(/\.$/, "");
    if (message === "Command timed out" || /ETIMEDOUT/.test(message)) {
      return "timeout";
    }
    // Within a script, the code may follow the script's name.
    if (/\bWRONGTYPE\b/.test(message)) {
      return {
        config:
          "holds data under the prefix that Stormlock did not write (WRONGTYPE); set another prefix",
      };
    }
    // Without AUTH, Redis 7 refuses a long command with a protocol error.
    if (
      /\b(WRONGPASS|NOAUTH)\b|Protocol error: unauthenticated/.test(message)
    ) {
      return {
        unavailable:
          `refused the credentials: ${message}; check the user and password in the url`,
      };
    }
    if (/\bNOPERM\b/.test(message)) {
      return {
        unavailable:
          `denied the user permission to ${failed.action}: ${message}; grant it the commands and keys (~PREFIX*) listed in the README`,
      };
    }
    // SELECT's own failure is caught where it is sent, naming the option.
    if (/DB index is out of range|invalid DB index/i.test(message)) {
      return {
        config: `has no such database: ${message}; fix the /db part of url`,
      };
    }
    if (/^Protocol error/.test(message)) {
      return {
        unavailable:
          "does not answer in the Redis protocol; check the host, the port, and redis:// versus rediss://",
      };
    }
    if ((error as Error)?.name === "ReplyError") {
      return {
        unavailable: `failed to ${failed.action}: ${message}; ${
          replyRemedy(message)
        }`,
      };
    }
    return {
      unavailable:
        `is unreachable: ${message}; check that the server is up and the url is right`,
    };
  },
});
