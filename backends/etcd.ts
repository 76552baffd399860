/**
 * The etcd backend. Each lease is a key `prefix + resource` attached to an
 * etcd lease of the lease's TTL, so the etcd server's lease clock expires
 * it. The key's value is JSON: our lease id (128-bit hex, not the etcd
 * lease number), the principal, and the created and expiry times.
 *
 * - acquire grants an etcd lease, then puts the key in a transaction on
 *   `create_revision == 0` (the key is absent). A loser revokes its lease.
 * - renew grants a new etcd lease, moves the key onto it by compare-and-swap
 *   on the key's `mod_revision`, and revokes the old one (or the new one,
 *   if the key was not moved; if etcd's answer is lost, neither).
 * - release deletes the key by compare-and-swap, then revokes its lease.
 *
 * etcd has no clock to read, so created and expiry times are taken from
 * this host's clock when the lease is granted, plus the TTL etcd granted
 * (which may be longer than asked: etcd has a minimum, often 2 s). Expiry
 * itself is enforced by the server's lease clock. etcd deletes an expired
 * lease's key up to about half a second late; a key past its recorded
 * expiry is checked against the server's remaining TTL, so a lease counts
 * as gone at its expiry, and an acquirer waits out the sweep.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  EtcdUserNotFoundError,
  GRPCDeadlineExceededError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
} from "etcd3";
import type { IKeyValue, IOptions, IRequestOp } from "etcd3";
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
import { DeadlineError, sleep, withDeadline } from "../lib/kit/deadline.ts";
import { optionError, textOption, timeoutOption } from "../lib/kit/options.ts";
import { newLeaseId } from "../lib/kit/lease.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Lease,
} from "../lib/kit/types.ts";

/** Options of `[backend.etcd]`. */
export const optionNames = [
  "hosts",
  "host",
  "port",
  "prefix",
  "ca_cert",
  "cert_cert",
  "cert_key",
  "user",
  "password",
  "timeout",
] as const;

/** The host used when neither `hosts` nor `host` is set. */
export const DEFAULT_HOST = "127.0.0.1";
/** The port used when a host names none. */
export const DEFAULT_PORT = 2379;
/** The key prefix used when `prefix` is not set. */
export const DEFAULT_PREFIX = "/stormlock/";
/** The bound on each operation when `timeout` is not set, in ms. */
export const DEFAULT_TIMEOUT_MS = 3000;

/**
 * etcd deletes the keys of an expired lease in a sweep that runs every
 * 500 ms, then through consensus. An acquirer that finds an expired
 * holder's key waits this long for the sweep before calling it held.
 */
const SWEEP_WAIT_MS = 1500;
/** How far a recorded expiry may stray from the server's and still agree. */
const CLOCK_SLACK_MS = 250;

/** Where and how to connect, parsed from the options. */
export interface EtcdSettings {
  /** `host:port` of each member. */
  hosts: string[];
  /** Whether the connection uses TLS. */
  tls: boolean;
  /** The CA that signed the server's certificate (PEM). */
  caCert?: Uint8Array;
  /** The client certificate (PEM), for servers that ask for one. */
  clientCert?: Uint8Array;
  /** The client certificate's private key (PEM). */
  clientKey?: Uint8Array;
  /** The etcd user, if the server has authentication on. */
  user?: string;
  /** The user's password; never shown in any message. */
  password?: string;
  /** Prepended to every resource name to make its key. */
  prefix: string;
  /** The bound on each operation, in ms. */
  timeoutMs: number;
}

/** What the key's value holds. Times are epoch milliseconds. */
interface LeaseRecord {
  id: string;
  principal: string;
  created: number;
  expires: number;
}

/** A key as read from etcd, with its parsed value. */
interface Holder {
  kv: IKeyValue;
  record: LeaseRecord;
}

/** The deadline of one operation, shared by every call it makes. */
class Deadline {
  readonly at: number;
  constructor(timeoutMs: number) {
    this.at = Date.now() + timeoutMs;
  }
  /** Call options that end the call at the deadline. */
  get options(): { deadline: number } {
    return { deadline: this.at };
  }
  /** Milliseconds left. */
  get left(): number {
    return this.at - Date.now();
  }
}

/** cockatiel's policy type, as etcd3's options take it. */
type Policy = NonNullable<NonNullable<IOptions["faultHandling"]>["global"]>;

/**
 * A policy in the shape etcd3 expects from cockatiel that runs each call
 * once per host at most: it moves on to the next host only when no
 * connection could be made (the request was never sent), so nothing is
 * applied twice, and it never waits between attempts.
 */
function failoverPolicy(hostCount: number): Policy {
  const policy = {
    async execute<T>(fn: (context: unknown) => Promise<T> | T): Promise<T> {
      const signal = new AbortController().signal;
      for (let attempt = 1;; attempt++) {
        try {
          return await fn({ signal, attempt });
        } catch (error) {
          if (attempt >= hostCount || !neverConnected(error)) throw error;
        }
      }
    },
  };
  return policy as unknown as Policy;
}

function neverConnected(error: unknown): boolean {
  return error instanceof GRPCUnavailableError &&
    /No connection established|Name resolution failed/.test(error.message);
}

/** An etcd lease store. Expiry uses the etcd server's lease clock. */
export class EtcdBackend implements Backend {
  readonly #client: Etcd3;
  readonly #settings: EtcdSettings;
  /** `host:port` list for messages: never a credential. */
  readonly #where: string;
  #closed = false;

  /** Builds the client; it connects on first use. */
  constructor(settings: EtcdSettings) {
    this.#settings = settings;
    this.#where = settings.hosts.join(", ");
    const { timeoutMs } = settings;
    const scheme = settings.tls ? "https://" : "http://";
    const options: IOptions = {
      hosts: settings.hosts.map((host) => scheme + host),
      // etcd3's defaults retry and open circuit breakers; a dead server
      // must fail once, within the timeout.
      faultHandling: {
        global: failoverPolicy(settings.hosts.length),
        host: () => failoverPolicy(1),
      },
      // Bounds the calls we don't make ourselves: the password exchange.
      defaultCallOptions: (context) =>
        context.isStream ? {} : { deadline: Date.now() + timeoutMs },
    };
    if (settings.caCert || settings.clientCert) {
      const buffer = (bytes?: Uint8Array) => bytes && Buffer.from(bytes);
      options.credentials = {
        // Without a CA, gRPC trusts the system's CAs.
        rootCertificate: buffer(settings.caCert) as Buffer,
        privateKey: buffer(settings.clientKey),
        certChain: buffer(settings.clientCert),
      };
    }
    if (settings.user !== undefined) {
      options.auth = {
        username: settings.user,
        password: settings.password ?? "",
      };
    }
    this.#client = new Etcd3(options);
  }

  /** Turns anything etcd3 throws into one of our errors. */
  #translate(error: unknown, action: string): Error {
    if (error instanceof StormlockError) return error;
    const message = String((error as Error)?.message ?? error);
    const options = { cause: error };
    const unavailable = (what: string) =>
      new BackendUnavailableError(`etcd at ${this.#where} ${what}`, options);
    const user = this.#settings.user === undefined
      ? "this client"
      : `user "${this.#settings.user}"`;
    const denied = deniedPermission(error);
    if (denied) {
      return new ConfigError(
        `No permission to reach etcd at ${this.#where}: Deno needs ${denied.need}; run main.ts with ${denied.flag}`,
        options,
      );
    }
    if (
      error instanceof DeadlineError ||
      error instanceof GRPCDeadlineExceededError
    ) {
      return unavailable(
        `did not answer within ${
          this.#settings.timeoutMs / 1000
        }s; check that it is running and reachable, or raise timeout`,
      );
    }
    if (
      error instanceof EtcdAuthenticationFailedError ||
      error instanceof EtcdUserNotFoundError
    ) {
      return unavailable(
        `rejected ${user}: wrong user name or password; fix user and password in [backend.etcd]`,
      );
    }
    if (/user name is empty/.test(message)) {
      return unavailable(
        "requires authentication; set user and password, or a client certificate",
      );
    }
    if (error instanceof GRPCUnauthenticatedError) {
      return unavailable(
        `did not accept the credentials of ${user}: ${
          message.replace(/^\d+ UNAUTHENTICATED: /, "")
        }; check user and password, or the client certificate, in [backend.etcd]`,
      );
    }
    if (error instanceof EtcdPermissionDeniedError) {
      return unavailable(
        `denied ${user} access to keys under "${this.#settings.prefix}"; grant it a role with readwrite on that prefix`,
      );
    }
    if (error instanceof ClientClosedError) {
      // Only close() closes the client; this operation raced it.
      return closedError(options);
    }
    if (error instanceof GRPCUnavailableError) {
      return unavailable(
        `is unavailable: ${
          unavailableReason(message)
        }; check that the server is up and that hosts (or host and port) in [backend.etcd] are right`,
      );
    }
    const first = message.split("\n")[0];
    if (/authentication is not enabled/.test(message)) {
      return unavailable(
        `failed to ${action}: ${first}; remove user and password from [backend.etcd], or enable auth on the server`,
      );
    }
    return unavailable(
      `failed to ${action}: ${first}; fix what the server names, or retry if it was transient`,
    );
  }

  /**
   * Runs one operation within the timeout: every call gets the same gRPC
   * deadline, and our own timer backs it up.
   */
  async #run<T>(
    action: string,
    body: (deadline: Deadline) => Promise<T>,
  ): Promise<T> {
    if (this.#closed) throw closedError();
    const deadline = new Deadline(this.#settings.timeoutMs);
    try {
      // A little later than the deadline, so gRPC's own error wins;
      // withDeadline holds it to the longest timer.
      return await withDeadline(
        this.#settings.timeoutMs + 200,
        () => body(deadline),
      );
    } catch (error) {
      throw this.#translate(error, action);
    }
  }

  #key(resource: string): Buffer {
    return Buffer.from(this.#settings.prefix + resource);
  }

  #parse(resource: string, kv: IKeyValue): Holder {
    try {
      const record = JSON.parse(kv.value.toString());
      if (
        typeof record.id === "string" &&
        typeof record.principal === "string" &&
        Number.isFinite(record.created) && Number.isFinite(record.expires) &&
        kv.lease !== "0"
      ) {
        return { kv, record };
      }
    } catch {
      // Not JSON: reported below.
    }
    throw new ConfigError(
      `etcd key "${this.#settings.prefix}${resource}" holds a value Stormlock did not write; choose another prefix in [backend.etcd]`,
    );
  }

  async #read(resource: string, deadline: Deadline): Promise<Holder | null> {
    const { kvs } = await this.#client.kv.range(
      { key: this.#key(resource) },
      deadline.options,
    );
    return kvs.length === 0 ? null : this.#parse(resource, kvs[0]);
  }

  /**
   * Grants an etcd lease. Times come from our clock as we ask, so they
   * are never later than the server's.
   */
  async #grant(ttlSeconds: number, deadline: Deadline) {
    const asked = Date.now();
    const granted = await this.#client.leaseClient.leaseGrant(
      { TTL: ttlSeconds },
      deadline.options,
    );
    if (granted.error) throw new Error(granted.error);
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
  async #revoke(leaseNo: string): Promise<void> {
    try {
      await this.#client.leaseClient.leaseRevoke(
        { ID: leaseNo },
        new Deadline(this.#settings.timeoutMs).options,
      );
    } catch {
      // Already gone, or the server is unreachable.
    }
  }

  /**
   * When the server will expire the holder, or `null` if it has. etcd
   * reports the remaining TTL truncated to whole seconds, so the recorded
   * expiry is used when it falls within that second, and the server's
   * figure when the holder's clock disagrees with the server.
   */
  async #serverExpiry(
    holder: Holder,
    deadline: Deadline,
  ): Promise<number | null> {
    const { TTL } = await this.#client.leaseClient.leaseTimeToLive(
      { ID: holder.kv.lease },
      deadline.options,
    );
    const ttl = Number(TTL);
    const now = Date.now();
    if (ttl < 0) return null; // The lease is gone.
    const { expires } = holder.record;
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
  async #isLive(holder: Holder, deadline: Deadline): Promise<boolean> {
    if (holder.record.expires > Date.now()) return true;
    return (await this.#serverExpiry(holder, deadline)) !== null;
  }

  /** The holder as others see it, with the server-checked expiry. */
  async #visible(
    resource: string,
    holder: Holder,
    deadline: Deadline,
  ): Promise<Lease | null> {
    const expires = await this.#serverExpiry(holder, deadline);
    if (expires === null) return null;
    return toLease(resource, { ...holder.record, expires });
  }

  /** Our own live lease, or `LeaseNotHeldError`. */
  async #own(
    resource: string,
    leaseId: string,
    deadline: Deadline,
  ): Promise<Holder> {
    const holder = await this.#read(resource, deadline);
    if (
      !holder || holder.record.id !== leaseId ||
      !(await this.#isLive(holder, deadline))
    ) {
      throw new LeaseNotHeldError(resource, leaseId);
    }
    return holder;
  }

  /**
   * Puts the key on the etcd lease if it is absent, in one transaction.
   * @returns `null` when it was put, else the holder, read in the same
   * transaction.
   */
  async #create(
    resource: string,
    value: Buffer,
    leaseNo: string,
    deadline: Deadline,
  ): Promise<Holder | null> {
    const key = this.#key(resource);
    const result = await this.#client.kv.txn({
      compare: [{ key, target: "Create", result: "Equal", create_revision: 0 }],
      success: [{ request_put: { key, value, lease: leaseNo } }],
      failure: [{ request_range: { key } }],
    }, deadline.options);
    if (result.succeeded) return null;
    return this.#parse(resource, result.responses[0].response_range.kvs[0]);
  }

  /**
   * Applies `success` in one transaction if the key is still as `holder`
   * read it.
   * @returns Whether it was applied.
   */
  async #ifUnchanged(
    holder: Holder,
    success: IRequestOp[],
    deadline: Deadline,
  ): Promise<boolean> {
    const result = await this.#client.kv.txn({
      compare: [{
        key: holder.kv.key,
        target: "Mod",
        result: "Equal",
        mod_revision: holder.kv.mod_revision,
      }],
      success,
    }, deadline.options);
    return result.succeeded;
  }

  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease> {
    return this.#run("acquire", async (deadline) => {
      const granted = await this.#grant(ttlSeconds, deadline);
      const record: LeaseRecord = {
        id: newLeaseId(),
        principal,
        created: granted.created,
        expires: granted.expires,
      };
      const value = Buffer.from(JSON.stringify(record));
      const sweepEnd = Date.now() + SWEEP_WAIT_MS;
      let won = false;
      try {
        for (;;) {
          const holder = await this.#create(
            resource,
            value,
            granted.leaseNo,
            deadline,
          );
          if (!holder) {
            won = true;
            return toLease(resource, record);
          }
          const visible = await this.#visible(resource, holder, deadline);
          if (visible) throw new LockHeldError(visible);
          // The holder expired, but etcd's sweep has not deleted its key.
          if (Date.now() > sweepEnd || deadline.left < 500) {
            throw new LockHeldError(toLease(resource, holder.record));
          }
          await sleep(100);
        }
      } finally {
        // A lost race must not leave its etcd lease behind.
        if (!won) await this.#revoke(granted.leaseNo);
      }
    });
  }

  release(resource: string, leaseId: string): Promise<void> {
    return this.#run("release", async (deadline) => {
      const holder = await this.#own(resource, leaseId, deadline);
      const deleted = await this.#ifUnchanged(
        holder,
        [{ request_delete_range: { key: holder.kv.key } }],
        deadline,
      );
      if (!deleted) throw new LeaseNotHeldError(resource, leaseId);
      await this.#revoke(holder.kv.lease);
    });
  }

  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease> {
    return this.#run("renew", async (deadline) => {
      const holder = await this.#own(resource, leaseId, deadline);
      // An etcd lease's TTL is fixed when granted (a keep-alive restarts
      // it), so a new TTL needs a new lease.
      const granted = await this.#grant(ttlSeconds, deadline);
      const record = { ...holder.record, expires: granted.expires };
      // Whether the key moved onto the new lease: unknown until etcd
      // answers, since a lost answer may follow a move that landed.
      let moved: boolean | undefined;
      try {
        moved = await this.#ifUnchanged(holder, [{
          request_put: {
            key: holder.kv.key,
            value: Buffer.from(JSON.stringify(record)),
            lease: granted.leaseNo,
          },
        }], deadline);
        if (!moved) throw new LeaseNotHeldError(resource, leaseId);
      } finally {
        // Revoke only the etcd lease the key is known not to be on: revoking
        // the one it is on deletes it. Without an answer, both are left to
        // expire by their TTLs.
        if (moved !== undefined) {
          await this.#revoke(moved ? holder.kv.lease : granted.leaseNo);
        }
      }
      return toLease(resource, record);
    });
  }

  current(resource: string): Promise<Lease | null> {
    return this.#run("read", async (deadline) => {
      const holder = await this.#read(resource, deadline);
      return holder && await this.#visible(resource, holder, deadline);
    });
  }

  isHeld(resource: string, leaseId: string): Promise<boolean> {
    return this.#run("read", async (deadline) => {
      const holder = await this.#read(resource, deadline);
      return !!holder && holder.record.id === leaseId &&
        await this.#isLive(holder, deadline);
    });
  }

  close(): Promise<void> {
    this.#closed = true;
    try {
      // Synchronous: it closes the gRPC channels without waiting on them.
      this.#client.close();
    } catch {
      // Closing twice or mid-connect is harmless.
    }
    return Promise.resolve();
  }
}

function closedError(options?: ErrorOptions): UsageError {
  return new UsageError("The etcd backend is closed; open a new one", options);
}

function toLease(resource: string, record: LeaseRecord): Lease {
  return {
    resource,
    id: record.id,
    principal: record.principal,
    created: new Date(record.created),
    expires: new Date(record.expires),
  };
}

/** The useful part of gRPC's UNAVAILABLE message. */
function unavailableReason(message: string): string {
  const last = /Last error: (?:Error: )?(.*?)(?:\. Resolution note:.*)?$/s
    .exec(message);
  // gRPC appends when the error happened; our caller knows that.
  const reason = last?.[1]?.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)$/, "")
    .trim();
  if (reason && reason !== "null") return reason;
  return message.replace(/^\d+ UNAVAILABLE: /, "").replace(
    /\.? Resolution note:.*$/s,
    "",
  ).split("\n")[0];
}

/** Parses one entry of `hosts`: `host`, `host:port` or a URL of either. */
function parseHost(
  entry: string,
  fail: (why: string) => ConfigError,
): { host: string; tls?: boolean } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(entry)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") {
    throw fail(`"${scheme}://" is not supported; use http:// or https://`);
  }
  let url: URL;
  try {
    url = new URL(scheme ? entry : `http://${entry}`);
  } catch {
    throw fail("a host is not host:port or a URL");
  }
  // Never echo the entry here: it may hold a password.
  if (url.username || url.password) {
    throw fail("put credentials in user and password, not in the host");
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search) {
    throw fail("a host must not have a path");
  }
  const port = url.port === "" ? DEFAULT_PORT : Number(url.port);
  return {
    host: `${url.hostname}:${port}`,
    tls: scheme === undefined ? undefined : scheme === "https",
  };
}

/**
 * The members named by `hosts`, or else by `host` and `port`, with the key
 * that named them, for messages.
 */
function parseMembers(options: BackendOptions, context: BackendContext) {
  const fail = (key: string, why: string) => optionError(context, key, why);
  if (options.hosts !== undefined && (options.host ?? options.port)) {
    throw fail("hosts", "set either hosts or host and port, not both");
  }
  let entries: string[];
  if (options.hosts !== undefined) {
    entries = options.hosts.split(",").map((entry) => entry.trim()).filter(
      (entry) => entry !== "",
    );
    if (entries.length === 0) throw fail("hosts", "it is empty");
  } else {
    const host = textOption(options, "host") ?? DEFAULT_HOST;
    const portText = textOption(options, "port") ?? String(DEFAULT_PORT);
    const port = Number(portText);
    if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
      throw fail("port", `"${portText}" is not a port number`);
    }
    if (host.includes("/") || (host.includes(":") && isIP(host) !== 6)) {
      throw fail("host", `"${host}" is not a host name; use hosts for URLs`);
    }
    entries = [isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`];
  }
  const key = options.hosts !== undefined ? "hosts" : "host";
  const members = entries.map((entry) =>
    parseHost(entry, (why) => fail(key, why))
  );
  return { key, members };
}

/**
 * Parses and checks `[backend.etcd]`, reading certificate files.
 *
 * @throws {ConfigError} on a bad value, naming the file, section and key.
 */
export function parseEtcdOptions(
  options: BackendOptions,
  context: BackendContext,
): EtcdSettings {
  const fail = (key: string, why: string) => optionError(context, key, why);
  const timeoutMs = timeoutOption(options, context, DEFAULT_TIMEOUT_MS);
  const { key, members } = parseMembers(options, context);

  const readFile = (option: "ca_cert" | "cert_cert" | "cert_key") => {
    const value = textOption(options, option);
    if (value === undefined) return undefined;
    const path = resolveConfigPath(value, context);
    try {
      return Deno.readFileSync(path);
    } catch (error) {
      const why = (error as Error).message.replace(/ \(os error \d+\).*$/s, "");
      throw fail(option, `cannot read ${path}: ${why}`);
    }
  };
  const caCert = readFile("ca_cert");
  const clientCert = readFile("cert_cert");
  const clientKey = readFile("cert_key");
  if (!clientCert !== !clientKey) {
    throw fail(
      clientCert ? "cert_key" : "cert_cert",
      "cert_cert and cert_key go together; set both or neither",
    );
  }

  const schemes = new Set(members.map((member) => member.tls));
  if (schemes.has(true) && schemes.has(false)) {
    throw fail(key, "mixes http:// and https://; use one for all hosts");
  }
  const certificates = caCert !== undefined || clientCert !== undefined;
  if (schemes.has(false) && certificates) {
    throw fail(key, "uses http:// but certificates are set; use https://");
  }
  const tls = schemes.has(true) || certificates;
  if (tls) {
    const ip = members.find(({ host }) =>
      isIP(host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "")) !== 0
    );
    if (ip) {
      // Deno's TLS refuses an IP address as the server name.
      throw fail(
        key,
        `TLS needs host names, not the address ${ip.host}; use a name in the server's certificate, such as localhost`,
      );
    }
  }

  const user = textOption(options, "user");
  // Not trimmed: spaces may be part of a password.
  const password = options.password || undefined;
  if (user === undefined && password !== undefined) {
    throw fail("password", "it needs user; set both or neither");
  }
  if (user !== undefined && password === undefined) {
    throw fail("user", "it needs password; set both or neither");
  }

  return {
    hosts: members.map(({ host }) => host),
    tls,
    caCert,
    clientCert,
    clientKey,
    user,
    password,
    prefix: options.prefix ?? DEFAULT_PREFIX,
    timeoutMs,
  };
}

/**
 * Builds the backend from `[backend.etcd]`: `hosts` (comma list) or
 * `host` and `port`, `prefix`, `ca_cert`, `cert_cert`, `cert_key`,
 * `user`, `password` and `timeout`. It connects on first use.
 *
 * @throws {ConfigError} on a bad option or an unreadable certificate file.
 */
export function createBackend(
  options: BackendOptions,
  context: BackendContext,
): Backend {
  return new EtcdBackend(parseEtcdOptions(options, context));
}
