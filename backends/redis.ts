/**
 * The Redis backend. Each lease is a hash at `prefix + resource` with the
 * fields `id`, `principal`, `created` and `expires` (epoch milliseconds),
 * and a Redis expiry at `expires`. Acquire, release and renew are Lua
 * scripts, so each check-and-set is one atomic step on the server, and their
 * times come from the server's clock (`TIME`), not ours.
 *
 * @module
 */
import { Redis } from "ioredis";
import { isIP } from "node:net";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../lib/kit/errors.ts";
import { deniedPermission } from "../lib/kit/permissions.ts";
import { resolveConfigPath } from "../lib/config.ts";
import { DeadlineError, MAX_TIMER_MS, withDeadline } from "../lib/kit/deadline.ts";
import {
  formatTimeout,
  optionError,
  textOption,
  timeoutOption,
} from "../lib/kit/options.ts";
import { newLeaseId } from "../lib/kit/lease.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Lease,
} from "../lib/kit/types.ts";

/** Options of `[backend.redis]`. */
export const optionNames = ["url", "prefix", "timeout", "ca_cert"] as const;

/** The server used when `url` is not set. */
export const DEFAULT_URL = "redis://127.0.0.1:6379";
/** The key prefix used when `prefix` is not set. */
export const DEFAULT_PREFIX = "stormlock:";
/** The bound on each operation when `timeout` is not set, in ms. */
export const DEFAULT_TIMEOUT_MS = 3000;

/** Where and how to connect: the parsed `url` plus TLS settings. */
export interface RedisTarget {
  /** Host name or address. */
  host: string;
  /** TCP port. */
  port: number;
  /** ACL user name, if any. */
  username?: string;
  /** The password; never shown in any message. */
  password?: string;
  /** The database number from the URL's path. */
  db: number;
  /** Whether to use TLS (`rediss://`). */
  tls: boolean;
  /** PEM CA certificates to trust for TLS, instead of the system's. */
  ca?: string;
}

// The server's clock in epoch milliseconds. Scripts that read TIME and then
// write need effect replication, which Redis before 5 does not default to.
const PROLOGUE = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// KEYS[1] lease key; ARGV id, principal, ttl ms. Returns the new lease's
// fields, or the holder's, which may not be a lease's: toLease checks them.
const ACQUIRE = PROLOGUE + `
if redis.call('EXISTS', KEYS[1]) == 1 then
  local holder = redis.call('HMGET', KEYS[1], 'id', 'principal', 'created', 'expires')
  return {'held', holder[1], holder[2], holder[3], holder[4]}
end
local created = string.format('%.0f', now)
local expires = string.format('%.0f', now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'principal', ARGV[2],
  'created', created, 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires)
return {'acquired', ARGV[1], ARGV[2], created, expires}
`;

// KEYS[1] lease key; ARGV id. Returns 1 when released, 0 when not held.
const RELEASE = `
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`;

// KEYS[1] lease key; ARGV id, ttl ms. Returns the renewed lease's fields, or
// nil when the id is not the live lease.
const RENEW = PROLOGUE + `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return false end
local expires = string.format('%.0f', now + tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires)
return redis.call('HMGET', KEYS[1], 'id', 'principal', 'created', 'expires')
`;

// KEYS[1] lease key. Returns the key's fields, or nil when there is no key:
// HMGET alone answers the same for a hash with none of the fields.
const READ = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('HMGET', KEYS[1], 'id', 'principal', 'created', 'expires')
`;

type Fields = [
  id: string | null,
  principal: string | null,
  created: string | null,
  expires: string | null,
];

/** The scripts, as ioredis exposes them after `defineCommand`. */
interface Scripts {
  stormlockAcquire(
    key: string,
    id: string,
    principal: string,
    ttlMs: number,
  ): Promise<string[]>;
  stormlockRelease(key: string, id: string): Promise<number>;
  stormlockRenew(
    key: string,
    id: string,
    ttlMs: number,
  ): Promise<Fields | null>;
  stormlockRead(key: string): Promise<Fields | null>;
}

type Client = Redis & Scripts;

/** Whether the operation ran out of time, by our bound or the client's. */
function isTimeout(error: unknown): boolean {
  const message = (error as Error)?.message ?? "";
  return error instanceof DeadlineError ||
    message === "Command timed out" || /ETIMEDOUT/.test(message);
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

function notALease(where: string, resource: string, cause?: unknown) {
  return new ConfigError(
    `Redis at ${where}: the key for "${resource}" holds data that is not a Stormlock lease; set another prefix`,
    { cause },
  );
}

/** An epoch-milliseconds field as Stormlock writes it, or `undefined`. */
function toTime(field: string | null): Date | undefined {
  if (field === null || !/^\d{1,16}$/.test(field)) return undefined;
  const time = new Date(Number(field));
  return Number.isNaN(time.getTime()) ? undefined : time;
}

/**
 * The lease a key's fields describe: the one check every path that reads a
 * lease goes through.
 *
 * @throws {ConfigError} when they are not a lease Stormlock wrote.
 */
function toLease(where: string, resource: string, fields: Fields): Lease {
  const [id, principal, created, expires] = fields;
  const createdTime = toTime(created);
  const expiresTime = toTime(expires);
  if (!id || principal === null || !createdTime || !expiresTime) {
    throw notALease(where, resource);
  }
  return {
    resource,
    id,
    principal,
    created: createdTime,
    expires: expiresTime,
  };
}

/**
 * Removes the AUTH arguments ioredis attaches to a failed command's error,
 * so a password never reaches a printed `cause`.
 */
function scrub(error: unknown): unknown {
  const command = (error as { command?: { name?: string; args?: unknown[] } })
    ?.command;
  if (command && /^(auth|hello)$/i.test(command.name ?? "")) {
    command.args = ["(hidden)"];
  }
  return error;
}

/**
 * Sends AUTH, when there is a password. ioredis would send it too, but it
 * prints a warning of its own to stderr when the server needs none; a
 * password the server does not need is ignored here, as there, silently.
 */
async function login(
  client: Client,
  username: string | undefined,
  password: string | undefined,
): Promise<void> {
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

/** A lock store on one Redis server. Expiry uses the server's clock. */
export class RedisBackend implements Backend {
  readonly #target: RedisTarget;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  /** `host:port`, the only part of the URL any message shows. */
  readonly #where: string;
  #client?: Client;
  #connecting?: Promise<Client>;
  #closed = false;

  /**
   * Builds the backend. It connects on first use, not here.
   * @param target Where to connect.
   * @param prefix Prepended to each resource name to make its key.
   * @param timeoutMs Bound on each operation, connecting included.
   */
  constructor(target: RedisTarget, prefix: string, timeoutMs: number) {
    this.#target = target;
    this.#prefix = prefix;
    this.#timeoutMs = timeoutMs;
    const host = target.host.includes(":") ? `[${target.host}]` : target.host;
    this.#where = `${host}:${target.port}`;
  }

  /** The one place client errors become Stormlock errors. */
  #translate(error: unknown, action: string, resource: string): Error {
    if (error instanceof StormlockError) return error;
    const cause = scrub(error);
    // Redis ends some messages with a period; ours continue after them.
    const message = ((error as Error)?.message ?? String(error))
      .replace(/\.$/, "");
    const unavailable = (what: string) =>
      new BackendUnavailableError(`Redis at ${this.#where} ${what}`, { cause });
    const denied = deniedPermission(error);
    if (denied) {
      return new ConfigError(
        `No permission to reach Redis at ${this.#where}: Deno needs ${denied.need}; run main.ts with ${denied.flag}`,
        { cause },
      );
    }
    if (isTimeout(error)) {
      return unavailable(
        `did not answer within ${
          formatTimeout(this.#timeoutMs)
        } (timeout); check that it is up and reachable`,
      );
    }
    // Within a script, older servers put the error after the script's name.
    if (/\bWRONGTYPE\b/.test(message)) {
      return notALease(this.#where, resource, cause);
    }
    if (/^(WRONGPASS|NOAUTH)/.test(message)) {
      return unavailable(
        `refused the credentials: ${message}; check the user and password in the url`,
      );
    }
    if (/^NOPERM/.test(message)) {
      return unavailable(
        `denied the user permission to ${action}: ${message}; grant it the commands and keys (~PREFIX*) listed in the README`,
      );
    }
    if (/^Protocol error/.test(message)) {
      return unavailable(
        "does not answer in the Redis protocol; check the host, the port, and redis:// versus rediss://",
      );
    }
    if ((error as Error)?.name === "ReplyError") {
      return unavailable(
        `failed to ${action}: ${message}; ${replyRemedy(message)}`,
      );
    }
    return unavailable(
      `is unreachable: ${message}; check that the server is up and the url is right`,
    );
  }

  /** Opens a fresh connection; a broken one is never reused. */
  async #open(): Promise<Client> {
    const { host, port, username, password, db, tls, ca } = this.#target;
    // ioredis sets timers from these; one past the longest fires at once.
    const timeoutMs = Math.min(this.#timeoutMs, MAX_TIMER_MS);
    const client = new Redis({
      host,
      port,
      // No username, password or db: #login sends them, after connecting.
      // SNI takes names only; an address is checked against the IP SANs.
      tls: tls
        ? { ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}) }
        : undefined,
      // ioredis otherwise queues commands and reconnects forever; we want
      // one bounded attempt per operation and a clear error.
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      reconnectOnError: () => false,
      enableOfflineQueue: false,
      autoResubscribe: false,
      disableClientInfo: true,
      // Its INFO would come before #login's AUTH, and fail.
      enableReadyCheck: false,
      // disconnect() half-closes and waits this long for the peer before
      // destroying the socket; a dead peer would hold the process open.
      disconnectTimeout: 0,
    }) as Client;
    // Connection errors arrive as events too; without a listener ioredis
    // prints them. The last one names the real cause of a failed connect.
    let lastError: unknown;
    client.on("error", (error: unknown) => {
      lastError = error;
    });
    client.defineCommand("stormlockAcquire", { numberOfKeys: 1, lua: ACQUIRE });
    client.defineCommand("stormlockRelease", { numberOfKeys: 1, lua: RELEASE });
    client.defineCommand("stormlockRenew", { numberOfKeys: 1, lua: RENEW });
    client.defineCommand("stormlockRead", { numberOfKeys: 1, lua: READ });
    this.#client = client;
    try {
      await client.connect();
      await login(client, username, password);
      if (db !== 0) await client.select(db);
      return client;
    } catch (error) {
      this.#discard(client);
      throw lastError ?? error;
    }
  }

  /** The connected client, connecting first when needed. */
  #connect(): Promise<Client> {
    // A client is ready before #open has logged it in; #connecting says so.
    if (this.#client?.status === "ready" && !this.#connecting) {
      return Promise.resolve(this.#client);
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
  #discard(client = this.#client): void {
    if (!client) return;
    if (this.#client === client) {
      // The next operation starts a fresh connection instead of waiting on
      // this one's failure.
      this.#client = undefined;
      this.#connecting = undefined;
    }
    client.disconnect();
  }

  /**
   * Runs one operation, connecting included, within the timeout, and
   * translates its errors.
   */
  async #run<T>(
    action: string,
    resource: string,
    body: (client: Client) => Promise<T>,
  ): Promise<T> {
    if (this.#closed) {
      throw new UsageError("The redis backend is closed; open a new one");
    }
    try {
      return await withDeadline(
        this.#timeoutMs,
        () => this.#connect().then(body),
      );
    } catch (error) {
      // The connection's state is unknown after a timeout; start afresh.
      if (isTimeout(error)) this.#discard();
      throw this.#translate(error, action, resource);
    }
  }

  #key(resource: string): string {
    return this.#prefix + resource;
  }

  /** The lease at `resource`'s key, or `null` if there is none. */
  async #read(client: Client, resource: string): Promise<Lease | null> {
    // One script is atomic, and Redis never returns an expired key.
    const fields = await client.stormlockRead(this.#key(resource));
    return fields && toLease(this.#where, resource, fields);
  }

  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease> {
    return this.#run("acquire", resource, async (client) => {
      const [status, ...fields] = await client.stormlockAcquire(
        this.#key(resource),
        newLeaseId(),
        principal,
        ttlSeconds * 1000,
      );
      const lease = toLease(this.#where, resource, fields as Fields);
      if (status === "held") throw new LockHeldError(lease);
      return lease;
    });
  }

  release(resource: string, leaseId: string): Promise<void> {
    return this.#run("release", resource, async (client) => {
      const released = await client.stormlockRelease(
        this.#key(resource),
        leaseId,
      );
      if (released !== 1) throw new LeaseNotHeldError(resource, leaseId);
    });
  }

  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease> {
    return this.#run("renew", resource, async (client) => {
      const fields = await client.stormlockRenew(
        this.#key(resource),
        leaseId,
        ttlSeconds * 1000,
      );
      if (!fields) throw new LeaseNotHeldError(resource, leaseId);
      return toLease(this.#where, resource, fields);
    });
  }

  current(resource: string): Promise<Lease | null> {
    return this.#run(
      "read",
      resource,
      (client) => this.#read(client, resource),
    );
  }

  isHeld(resource: string, leaseId: string): Promise<boolean> {
    return this.#run("read", resource, async (client) => {
      return (await this.#read(client, resource))?.id === leaseId;
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#discard();
    return Promise.resolve();
  }
}

/**
 * Parses `url` into a {@linkcode RedisTarget}. Messages never repeat the
 * URL, which may hold a password.
 *
 * @param text `redis://[user[:password]@]host[:port][/db]`, or `rediss://`
 * for TLS. User and password are percent-decoded.
 * @param context Names the config file and section in errors.
 * @throws {ConfigError} when it is not such a URL.
 */
export function parseRedisUrl(
  text: string,
  context: BackendContext,
): RedisTarget {
  const fail = (why: string) => optionError(context, "url", why);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw fail(
      "not a URL; use redis://[user:password@]host[:port][/db] or rediss://… for TLS",
    );
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw fail(
      `the scheme is "${url.protocol}"; use redis:// or rediss:// (TLS)`,
    );
  }
  if (!url.hostname) throw fail("the URL names no host");
  if (url.search || url.hash) {
    throw fail("query parameters and fragments are not supported");
  }
  const path = url.pathname.replace(/^\//, "");
  if (!/^\d*$/.test(path)) {
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
 * Builds the backend from `[backend.redis]`: `url` (default
 * `redis://127.0.0.1:6379`), `prefix` (default `stormlock:`), `timeout`
 * (default 3s, bounding each operation, connecting included) and `ca_cert`
 * (a PEM file of CAs to trust for `rediss://`). It connects on first use.
 *
 * @throws {ConfigError} on a bad option value.
 */
export function createBackend(
  options: BackendOptions,
  context: BackendContext,
): Backend {
  const timeoutMs = timeoutOption(options, context, DEFAULT_TIMEOUT_MS);
  const target = parseRedisUrl(
    textOption(options, "url") ?? DEFAULT_URL,
    context,
  );
  const caCert = textOption(options, "ca_cert");
  if (caCert !== undefined) {
    if (!target.tls) {
      throw optionError(
        context,
        "ca_cert",
        "it needs a rediss:// url; redis:// does not use TLS",
      );
    }
    const path = resolveConfigPath(caCert, context);
    try {
      target.ca = Deno.readTextFileSync(path);
    } catch (error) {
      throw optionError(
        context,
        "ca_cert",
        `cannot read ${path}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return new RedisBackend(target, options.prefix ?? DEFAULT_PREFIX, timeoutMs);
}
