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
import { RedisConnection, type Script } from "./client.ts";
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
import { MAX_TIMER_MS } from "../../lib/kit/deadline.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

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

// KEYS lease, state, history, index, waiters; ARGV resource, kept, age,
// id, principal, ttl ms, host, reason, link ('' for none), events
// channel, and the queue role: 'check' to refuse a free lock while the
// waiters set (KEYS[5], the lock's) has a live member, 'member' to join
// it (KEYS[5] is then the waited-for lock's), '' for neither.
const ACQUIRE = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if f then return reply('held', f) end
if ARGV[11] == 'check' then
  local waiting, first = 0, nil
  -- Every score is 0, so this is name (ticket) order; ZRANGEBYSCORE is
  -- already in the least-privilege ACL.
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '+inf')) do
    local w = lease(ARGV[12] .. name)
    if type(w) == 'table' then
      waiting = waiting + 1
      first = first or w
    else
      redis.call('ZREM', KEYS[5], name)
    end
  end
  if first then
    local out = reply('queued', first)
    out[#FIELDS + 2] = tostring(waiting)
    return out
  end
end
local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local ended = tonumber(old[4])
if old[1] and ended and ended <= now then
  record(KEYS[3], 'expired', ended, old)
end
local fence
if redis.call('HMGET', KEYS[2], 'last')[1] then
  fence = redis.call('HINCRBY', KEYS[2], 'last', 1)
else
  -- No counter: a first acquire, or one evicted. Go on from the newest
  -- fence on record, so a fence never goes back while any record remains.
  local floor = tonumber(old[5]) or 0
  local ok, e = pcall(cjson.decode, redis.call('LINDEX', KEYS[3], 0) or '')
  if ok and type(e) == 'table' and tonumber(e.fence) then
    floor = math.max(floor, tonumber(e.fence))
  end
  fence = floor + 1
  redis.call('HSET', KEYS[2], 'last', fence)
end
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
if ARGV[11] == 'member' then redis.call('ZADD', KEYS[5], 0, ARGV[1]) end
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
// 'broken'), then the breaker's principal, host and reason, the events
// channel, and 'member' for a waiter's registration (leaving KEYS[5]).
// Returns nil when the id is not the live lease.
const END = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f or f[1] ~= ARGV[4] then return false end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], unpack(FIELDS))
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[10] == 'member' then redis.call('ZREM', KEYS[5], ARGV[1]) end
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

/** The scripts, each sent by its SHA-1 (EVAL the first time). */
const SCRIPTS = {
  acquire: { lua: ACQUIRE, keys: 5 },
  renew: { lua: RENEW, keys: 5 },
  end: { lua: END, keys: 5 },
  expire: { lua: EXPIRE, keys: 5 },
  read: { lua: READ, keys: 1 },
  history: { lua: HISTORY, keys: 1 },
  list: { lua: LIST, keys: 1 },
} satisfies Record<string, Script>;

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

/**
 * The store's subscriber: a connection in subscriber mode, and the
 * callbacks of the watches on each channel. Once its connection drops it
 * is dead: its watches hear nothing more (waiters poll), and the next
 * watch opens a new one.
 */
interface Subscriber {
  /** The connection, once it is open and logged in. */
  client?: RedisConnection;
  /** Settles when it is connected and logged in. */
  ready: Promise<RedisConnection>;
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
  #client?: RedisConnection;
  #connecting?: Promise<RedisConnection>;
  #subscriber?: Subscriber;

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

  /** The connected client, connecting first when needed. */
  #connect(): Promise<RedisConnection> {
    const client = this.#client;
    if (client && !client.closed) return Promise.resolve(client);
    if (!this.#connecting) {
      const connecting = this.#open().then((client) => {
        if (this.#connecting === connecting) this.#client = client;
        else client.close(); // discarded while it connected
        return client;
      }).finally(() => {
        if (this.#connecting === connecting) this.#connecting = undefined;
      });
      this.#connecting = connecting;
    }
    return this.#connecting;
  }

  /** Drops the connection at once, even one to a server that never answers. */
  #discard(): void {
    const client = this.#client;
    // The next operation starts a fresh connection instead of waiting on
    // this one's failure.
    this.#client = undefined;
    this.#connecting?.then((late) => late.close(), () => {});
    this.#connecting = undefined;
    client?.close();
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
    op.onExpire(() => this.#discard());
    const client = await this.#connect();
    return read(await client.evalScript(script, args));
  }

  /** Sends one plain command, under the same deadline rules as #run. */
  async #command(op: Operation, args: (string | number)[]): Promise<unknown> {
    op.onExpire(() => this.#discard());
    const client = await this.#connect();
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
    ];
    return this.#run(op, SCRIPTS.acquire, args, (reply: Reply) => {
      const lease = this.#lease(resource, reply);
      if (reply[0] === "held") {
        throw new this.#context.errors.LockHeldError(lease);
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

  /** Ends the live lease `leaseId`, recording `kind`; or throws. */
  #end(
    op: Operation,
    resource: string,
    leaseId: string,
    kind: "released" | "broken",
    by?: Breaker,
  ): Promise<Lease> {
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

  end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease> {
    return this.#end(op, resource, leaseId, ending.kind, ending.by);
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
    const key = this.#key(resource);
    return this.#run(op, SCRIPTS.read, [key], (reply: Reply | null) => {
      return reply && this.#lease(resource, reply);
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

  /** The live subscriber, opening one when needed. */
  #subscribe(): Subscriber {
    const live = this.#subscriber;
    if (live && !live.dead) return live;
    const subscriber: Subscriber = {
      ready: this.#login(),
      channels: new Map(),
      dead: false,
    };
    subscriber.ready = subscriber.ready.then((client) => {
      subscriber.client = client;
      if (subscriber.dead) {
        client.close();
        throw new Error("Connection is closed.");
      }
      client.onMessage = (channel) => {
        for (const watch of subscriber.channels.get(channel)?.watches ?? []) {
          try {
            watch();
          } catch { /* a watcher's failure is its own */ }
        }
      };
      // No reconnecting: its watches go quiet, and their waiters poll.
      client.onClose = () => {
        subscriber.lastError ??= client.lastError;
        this.#dropSubscriber(subscriber);
      };
      return client;
    }, (error) => {
      subscriber.lastError ??= error;
      this.#dropSubscriber(subscriber);
      throw error;
    });
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
    subscriber.client?.close();
    // Still connecting: closed as soon as it is open.
    subscriber.ready.catch(() => {});
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
        subscriber.client?.send(["UNSUBSCRIBE", channel]).catch(() => {});
      }
    };
    try {
      const client = await subscriber.ready;
      if (signal.aborted) return;
      let entry = subscriber.channels.get(channel);
      if (!entry) {
        entry = {
          watches: new Set(),
          subscribed: client.send(["SUBSCRIBE", channel]),
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
      throw cause;
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
    queue: true,
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
          `denied the user permission to ${failed.action}: ${message}; grant it the commands and keys (~PREFIX*) listed in docs/backends/redis.md`,
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
