/**
 * The etcd backend, over etcd's v3 JSON gateway (`POST /v3/...` on every
 * member's client port) with `fetch`: no gRPC client to load.
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
 *
 * The byte 0xFF never occurs in UTF-8, so no resource name can reach the
 * shadow or history keys, and a prefix range over lease keys never sees
 * them; all keys stay inside `P`'s range, so one etcd role on the prefix
 * covers them.
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
  Classified,
  DefinedBackend,
  Ending,
  KitContext,
  LeaseRecord,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import { sleep } from "../../lib/kit/deadline.ts";
import type {
  Breaker,
  Lease,
  LeaseEvent,
  LeaseEventKind,
} from "../../lib/kit/types.ts";

/** The host used when neither `hosts` nor `host` is set. */
export const DEFAULT_HOST = "127.0.0.1";
/** The port used when a host names none. */
export const DEFAULT_PORT = 2379;
/** The key prefix used when `prefix` is not set. */
export const DEFAULT_PREFIX = "/stormlock/";

/**
 * etcd deletes the keys of an expired lease in a sweep that runs every
 * 500 ms, then through consensus. An acquirer that finds an expired
 * holder's key waits this long for the sweep before calling it held.
 */
const SWEEP_WAIT_MS = 1500;
/** How far a recorded expiry may stray from the server's and still agree. */
const CLOCK_SLACK_MS = 250;
/** Keys per page when listing. */
const PAGE = 500;
/** The oldest events read with each change, to trim by count and age. */
const OLDEST = 8;

/** How many times an unneeded etcd lease's revoke is tried. */
const REVOKE_ATTEMPTS = 4;
/** gRPC status codes the gateway reports in `code`. */
const CODE = { permissionDenied: 7, unavailable: 14, unauthenticated: 16 };

// Errors the store throws; `classify` words them.

/** etcd answered with a gRPC error. */
class EtcdReplyError extends Error {
  constructor(
    readonly code: number,
    readonly text: string,
    readonly member: string,
    /** Who asked, and for which prefix, for the remedy. */
    readonly about: { user?: string; prefix: string },
  ) {
    super(`${text} (gRPC code ${code})`);
    this.name = "EtcdReplyError";
  }
}

/** No member could be reached, or none had a leader, within the deadline. */
class UnreachableError extends Error {
  constructor(readonly failures: Map<string, string>, cause?: unknown) {
    super(
      [...failures].map(([member, why]) => `${member}: ${why}`).join("; "),
      { cause },
    );
    this.name = "UnreachableError";
  }
}

/** Something answered that is not etcd's JSON gateway. */
class NotEtcdError extends Error {
  constructor(member: string, status: number, path: string) {
    super(
      `${member} answered HTTP ${status} to ${path}, not etcd's v3 JSON gateway`,
    );
    this.name = "NotEtcdError";
  }
}

/**
 * etcd refuses, through its gateway, client certificates that carry a
 * CommonName once authentication is on: the gateway can't pass the CN on.
 */
class CommonNameError extends Error {
  constructor(readonly member: string) {
    super(`${member} refused a client certificate with a CommonName`);
    this.name = "CommonNameError";
  }
}

/** `fetch` refuses the port outright (a "bad port" in the Fetch standard). */
class BlockedPortError extends Error {
  constructor(readonly member: string, cause: unknown) {
    super(`fetch refuses port ${member.replace(/^.*:/, "")}`, { cause });
    this.name = "BlockedPortError";
  }
}

// Bytes and base64: the gateway's JSON carries keys and values as base64.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function bytes(...parts: (string | number[] | Uint8Array)[]): Uint8Array {
  const chunks = parts.map((part) =>
    typeof part === "string"
      ? encoder.encode(part)
      : part instanceof Uint8Array
      ? part
      : Uint8Array.from(part)
  );
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function b64(data: Uint8Array | string): string {
  const raw = typeof data === "string" ? encoder.encode(data) : data;
  let binary = "";
  for (let i = 0; i < raw.length; i += 0x8000) {
    binary += String.fromCharCode(...raw.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function unb64(text = ""): Uint8Array {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** The first key after every key that starts with `key`. */
function prefixEnd(key: Uint8Array): Uint8Array {
  const end = key.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.slice(0, i + 1);
    }
  }
  return new Uint8Array([0]); // All keys.
}

// The gateway's JSON.

interface Kv {
  key: string;
  value?: string;
  create_revision: string;
  mod_revision: string;
  lease?: string;
}
interface RangeReply {
  header: { revision: string };
  kvs?: Kv[];
  more?: boolean;
  count?: string;
}
interface TxnReply {
  header: { revision: string };
  succeeded?: boolean;
  responses?: { response_range?: RangeReply }[];
}
type RequestOp =
  | { request_range: Record<string, unknown> }
  | { request_put: { key: string; value: string; lease?: string } }
  | { request_delete_range: { key: string; range_end?: string } };
interface Compare {
  key: string;
  target: "CREATE" | "MOD";
  result: "EQUAL";
  create_revision?: string;
  mod_revision?: string;
  /** Compares every key in [key, range_end) (none: the empty key's). */
  range_end?: string;
}

/** One cluster member. */
interface Member {
  /** `host:port`, for messages. */
  name: string;
  /** `http://host:port` or `https://host:port`. */
  url: string;
}

/** What a connection failure says, without the URL Deno prefixes. */
function connectionReason(error: unknown): string {
  const inner = (error as Error)?.cause ?? error;
  const text = String((inner as Error)?.message ?? inner);
  return text
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \((\w+)\): /, "")
    .replace(/ \(os error \d+\)/, "")
    .split("\n")[0];
}

/**
 * Whether a connection failure may pass: an established connection was
 * lost (the member restarted, or a proxy dropped it). A refusal, a name
 * that does not resolve, or a TLS failure will not pass within a command.
 */
function isLostConnection(reason: string): boolean {
  return /reset|closed|broken pipe|incomplete|unexpected eof/i.test(reason) &&
    !/certificate|tls|handshake|alert/i.test(reason);
}

/** One response of a watch stream, as the gateway words it. */
interface WatchResult {
  header?: { revision?: string };
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: { type?: "PUT" | "DELETE"; kv?: { mod_revision?: string } }[];
}

/**
 * A watch stream's line as a result, or `undefined` if it is not one.
 * @throws {EtcdReplyError} when the line is an error.
 */
function watchResult(
  line: unknown,
  member: Member,
  about: { user?: string; prefix: string },
): WatchResult | undefined {
  if (typeof line !== "object" || line === null) return undefined;
  const { result, error } = line as { result?: unknown; error?: unknown };
  if (typeof error === "object" && error !== null) {
    // grpc-gateway words a stream's error { grpc_code, message } (v1) or
    // { code, message } (v2).
    const { grpc_code, code, message } = error as Record<string, unknown>;
    throw new EtcdReplyError(
      Number(grpc_code ?? code ?? 2),
      String(message ?? "watch failed").replace(/^etcdserver: /, ""),
      member.name,
      about,
    );
  }
  return typeof result === "object" && result !== null
    ? result as WatchResult
    : undefined;
}

/**
 * A watch's response body, read as JSON lines. Its `revision` is the
 * newest the watch has seen, so a reconnect can go on after it.
 */
class WatchStream {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = "";
  readonly #stop: AbortSignal;
  readonly #onStop: () => void;
  #cancelled?: Promise<void>;
  /** The newest revision seen. */
  revision = "0";

  constructor(
    body: ReadableStream<Uint8Array>,
    /** The member's index. */
    readonly member: number,
    stop: AbortSignal,
  ) {
    this.#reader = body.getReader();
    // An aborted fetch does not always end a body already being read:
    // cancel it outright, which also ends a pending read.
    this.#stop = stop;
    this.#onStop = () => void this.cancel();
    if (stop.aborted) this.cancel();
    else stop.addEventListener("abort", this.#onStop, { once: true });
  }

  /**
   * The next line, parsed; `undefined` once the stream ends.
   * @throws {SyntaxError} when a line is not JSON.
   */
  async next(): Promise<unknown> {
    for (;;) {
      const end = this.#buffer.indexOf("\n");
      if (end >= 0) {
        const line = this.#buffer.slice(0, end).trim();
        this.#buffer = this.#buffer.slice(end + 1);
        if (line !== "") return JSON.parse(line);
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        const rest = this.#buffer.trim();
        this.#buffer = "";
        return rest === "" ? undefined : JSON.parse(rest);
      }
      this.#buffer += this.#decoder.decode(value, { stream: true });
    }
  }

  /** Cancels the body, so nothing stays open. Never throws. */
  cancel(): Promise<void> {
    if (!this.#cancelled) {
      this.#stop.removeEventListener("abort", this.#onStop);
      this.#cancelled = this.#reader.cancel().catch(() => {
        // Aborted or closed already.
      });
    }
    return this.#cancelled;
  }
}

/**
 * A client for the members' JSON gateways: one shared HTTP client (with
 * the TLS material), the auth token, and failover between members.
 */
class Gateway {
  readonly members: Member[];
  readonly #client: Deno.HttpClient;
  readonly #user?: string;
  readonly #password?: string;
  readonly #about: { user?: string; prefix: string };
  /** The member that answered last; calls start there. */
  #preferred = 0;
  #token?: Promise<string>;

  constructor(
    members: Member[],
    tls: { caCerts?: string[]; cert?: string; key?: string },
    auth: { user?: string; password?: string; prefix: string },
  ) {
    this.members = members;
    this.#client = Deno.createHttpClient(
      tls.cert && tls.key
        ? { caCerts: tls.caCerts, cert: tls.cert, key: tls.key }
        : { caCerts: tls.caCerts },
    );
    this.#user = auth.user;
    this.#password = auth.password;
    this.#about = { user: auth.user, prefix: auth.prefix };
  }

  /**
   * Calls `path` on the preferred member, moving on to the next when one
   * can't be reached or answers that it has no leader. Once every member
   * failed, it fails at once if none can be reached at all (refused, no
   * such host, TLS refused); after a "no leader" or a lost connection it
   * pauses and goes round again until the deadline. A request is thus sent again
   * after a lost answer: callers re-read and recognize their own writes.
   */
  call<T>(path: string, body: unknown, op: Operation): Promise<T> {
    return this.#failover(op, (member) =>
      this.#authorized(
        member,
        op,
        (headers) => this.#post<T>(member, path, body, op, headers),
      ));
  }

  /**
   * Opens a watch on `key` (base64) with `POST /v3/watch`, failing over
   * like {@linkcode Gateway.call}, and resolves once etcd reports it
   * created. The stream lives until `stop` aborts or it ends; `op` bounds
   * only the setup. `after` (a member's index) starts the round past that
   * member, for a reconnect.
   */
  watch(
    key: string,
    startRevision: string | undefined,
    op: Operation,
    stop: AbortSignal,
    after?: number,
  ): Promise<WatchStream> {
    const body = {
      create_request: startRevision === undefined
        ? { key }
        : { key, start_revision: startRevision },
    };
    return this.#failover(
      op,
      (member, index) =>
        this.#authorized(
          member,
          op,
          (headers) => this.#openWatch(member, index, body, stop, headers),
        ),
      after === undefined ? undefined : after + 1,
    );
  }

  /** Runs `attempt` on each member in turn, as `call` describes. */
  async #failover<T>(
    op: Operation,
    attempt: (member: Member, index: number) => Promise<T>,
    start?: number,
  ): Promise<T> {
    const failures = new Map<string, string>();
    let first = start ?? this.#preferred;
    for (;;) {
      let transient = false;
      let lastError: unknown;
      for (let i = 0; i < this.members.length; i++) {
        const index = (first + i) % this.members.length;
        const member = this.members[index];
        try {
          const reply = await attempt(member, index);
          this.#preferred = index;
          return reply;
        } catch (error) {
          if (op.signal.aborted) throw op.signal.reason ?? error;
          lastError = error;
          if (
            error instanceof EtcdReplyError &&
            error.code === CODE.unavailable
          ) {
            transient = true;
            failures.set(member.name, `answered "${error.text}"`);
          } else if (error instanceof TypeError) {
            // fetch could not connect, or lost the connection.
            const reason = connectionReason(error);
            transient ||= isLostConnection(reason);
            failures.set(member.name, reason);
          } else {
            throw error;
          }
        }
      }
      const left = op.deadline - Date.now();
      if (!transient || left < 250) {
        throw new UnreachableError(failures, lastError);
      }
      await sleep(Math.min(100, left - 200));
      first = this.#preferred;
    }
  }

  /**
   * Runs `send` with the auth header, signing in first when `user` is
   * set, and once more with a fresh token if etcd calls it invalid.
   */
  async #authorized<T>(
    member: Member,
    op: Operation,
    send: (headers: Record<string, string>) => Promise<T>,
    fresh = false,
  ): Promise<T> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
    };
    if (this.#user !== undefined) {
      headers.authorization = await this.#authToken(member, op, fresh);
    }
    try {
      return await send(headers);
    } catch (error) {
      // Tokens lapse after some idle minutes, or when the member restarts.
      if (
        !fresh && this.#user !== undefined &&
        error instanceof EtcdReplyError &&
        /invalid auth token/.test(error.text)
      ) {
        return await this.#authorized(member, op, send, true);
      }
      throw error;
    }
  }

  /** One member's watch stream, once its first line says it is created. */
  async #openWatch(
    member: Member,
    index: number,
    body: unknown,
    stop: AbortSignal,
    headers: Record<string, string>,
  ): Promise<WatchStream> {
    const path = "/v3/watch";
    const response = await this.#fetch(member, path, body, stop, headers);
    if (!response.ok || !response.body) {
      this.#check(member, path, response, await response.text());
      throw new NotEtcdError(member.name, response.status, path);
    }
    const stream = new WatchStream(response.body, index, stop);
    try {
      let line: unknown;
      try {
        line = await stream.next();
      } catch (error) {
        if (error instanceof SyntaxError) {
          throw new NotEtcdError(member.name, response.status, path);
        }
        throw error;
      }
      if (line === undefined) {
        // The member closed the stream unanswered: as if the connection
        // was lost, so the next member is tried.
        throw new TypeError("connection closed before the watch was created");
      }
      const result = watchResult(line, member, this.#about);
      if (!result) throw new NotEtcdError(member.name, response.status, path);
      if (result.canceled) {
        const reason = String(result.cancel_reason ?? "watch canceled")
          .replace(/^etcdserver: /, "");
        throw new EtcdReplyError(
          /permission denied/.test(reason) ? CODE.permissionDenied : 2,
          reason,
          member.name,
          this.#about,
        );
      }
      if (result.created !== true) {
        throw new NotEtcdError(member.name, response.status, path);
      }
      stream.revision = result.header?.revision ?? "0";
      return stream;
    } catch (error) {
      await stream.cancel();
      throw error;
    }
  }

  #authToken(member: Member, op: Operation, fresh: boolean): Promise<string> {
    if (fresh || !this.#token) {
      const token = this.#post<{ token: string }>(
        member,
        "/v3/auth/authenticate",
        { name: this.#user, password: this.#password },
        op,
        { "content-type": "application/json" },
      ).then((reply) => reply.token);
      // A failed sign-in is not kept: the next call tries again.
      token.catch(() => {
        if (this.#token === token) this.#token = undefined;
      });
      this.#token = token;
    }
    return this.#token;
  }

  async #post<T>(
    member: Member,
    path: string,
    body: unknown,
    op: Operation,
    headers: Record<string, string>,
  ): Promise<T> {
    const response = await this.#fetch(member, path, body, op.signal, headers);
    return this.#check<T>(member, path, response, await response.text());
  }

  async #fetch(
    member: Member,
    path: string,
    body: unknown,
    signal: AbortSignal,
    headers: Record<string, string>,
  ): Promise<Response> {
    try {
      return await fetch(member.url + path, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        client: this.#client,
        signal,
      });
    } catch (error) {
      if (/are blocked|bad port/i.test(String((error as Error)?.message))) {
        throw new BlockedPortError(member.name, error);
      }
      throw error;
    }
  }

  /** The reply in `text`, or the error etcd (or something else) gave. */
  #check<T>(member: Member, path: string, response: Response, text: string): T {
    if (response.status === 400 && /^CommonName of client/.test(text)) {
      throw new CommonNameError(member.name);
    }
    let reply: { error?: string; message?: string; code?: number };
    try {
      reply = JSON.parse(text);
    } catch {
      throw new NotEtcdError(member.name, response.status, path);
    }
    if (typeof reply !== "object" || reply === null) {
      throw new NotEtcdError(member.name, response.status, path);
    }
    if (typeof reply.error === "object" && reply.error !== null) {
      watchResult(reply, member, this.#about); // Throws the stream's error.
    }
    if (!response.ok || reply.code !== undefined && reply.code !== 0) {
      const message = reply.message ?? reply.error;
      if (typeof message !== "string") {
        throw new NotEtcdError(member.name, response.status, path);
      }
      throw new EtcdReplyError(
        Number(reply.code ?? 2),
        message.replace(/^etcdserver: /, ""),
        member.name,
        this.#about,
      );
    }
    return reply as T;
  }

  close(): void {
    try {
      this.#client.close();
    } catch {
      // Closed already.
    }
  }
}

// What the keys hold.

/** A lease key's value. Times are epoch ms. */
interface StoredLease {
  id: string;
  principal: string;
  host?: string;
  reason?: string;
  link?: string;
  /** Absent when written at acquire: the key's create_revision is it. */
  fence?: number;
  created: number;
  expires: number;
}

/** The shadow's value: the last lease, and how it ended. */
interface Shadow extends StoredLease {
  state: "held" | "released" | "broken" | "expired";
}

/** An event's value. */
interface EventValue extends StoredLease {
  kind: LeaseEventKind;
  at: number;
  by?: Breaker;
}

/** A lease key as read, with its parsed value. */
interface Holder {
  kv: Kv;
  record: StoredLease;
  lease: Lease;
}

/** What a change reads first, in one read-only transaction. */
interface State {
  /** The revision the read saw. */
  revision: string;
  holder?: Holder;
  shadow?: { kv: Kv; value: Shadow };
  /** The shadow's mod_revision, `0` when absent, even if unreadable. */
  shadowRevision: string;
  /** The resource's oldest events, oldest first, and how many there are. */
  oldest: Kv[];
  events: number;
}

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
  readonly #context: KitContext;
  readonly #settings: EtcdSettings;
  readonly #prefix: Uint8Array;
  /** Open watches: aborting `stop` ends one; `done` when all is closed. */
  readonly #watches = new Set<{ stop: AbortController; done: Promise<void> }>();
  /** Revokes under way in the background. */
  readonly #settling = new Set<Promise<void>>();

  constructor(settings: EtcdSettings, context: KitContext) {
    this.label = `etcd at ${settings.members.map((m) => m.name).join(", ")}`;
    this.#settings = settings;
    this.#context = context;
    this.#prefix = encoder.encode(settings.prefix);
    this.#gateway = new Gateway(settings.members, settings.tls, settings);
  }

  // Keys.

  #leaseKey(resource: string): Uint8Array {
    return bytes(this.#prefix, resource);
  }
  #shadowKey(resource: string): Uint8Array {
    return bytes(this.#prefix, [0xff], "last/", resource);
  }
  #events(resource: string): { key: string; range_end: string } {
    const base = bytes(this.#prefix, [0xff], "history/", resource);
    return {
      key: b64(bytes(base, [0xfe])),
      range_end: b64(bytes(base, [0xff])),
    };
  }
  #eventKey(resource: string, revision: string, index: number): string {
    return b64(bytes(
      this.#prefix,
      [0xff],
      "history/",
      resource,
      [0xfe],
      revision.padStart(20, "0") + index,
    ));
  }

  #call<T>(path: string, body: unknown, op: Operation): Promise<T> {
    return this.#gateway.call<T>(path, body, op);
  }

  // Reading values.

  #parse(resource: string, kv: Kv): Holder {
    let value: StoredLease;
    try {
      value = JSON.parse(decoder.decode(unb64(kv.value)));
    } catch {
      value = null as unknown as StoredLease;
    }
    // Checks every field; a foreign value becomes a ConfigError.
    const lease = this.#context.leaseFromRecord(resource, {
      ...(value as unknown as LeaseRecord),
      fence: kv.create_revision,
    });
    if (!kv.lease || kv.lease === "0") {
      throw new this.#context.errors.ConfigError(
        `${this.label}: the key for "${resource}" has no etcd lease, so Stormlock did not write it; point prefix in [${this.#context.section}] at keys of its own`,
      );
    }
    return { kv, record: value, lease };
  }

  #shadow(kv: Kv | undefined): State["shadow"] {
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
  async #state(resource: string, op: Operation): Promise<State> {
    const reply = await this.#call<TxnReply>("/v3/kv/txn", {
      success: [
        { request_range: { key: b64(this.#leaseKey(resource)) } },
        { request_range: { key: b64(this.#shadowKey(resource)) } },
        { request_range: { ...this.#events(resource), limit: OLDEST } },
      ],
    }, op);
    const [lease, shadow, events] = (reply.responses ?? []).map((r) =>
      r.response_range ?? { header: reply.header }
    );
    const kv = lease?.kvs?.[0];
    return {
      revision: reply.header.revision,
      holder: kv ? this.#parse(resource, kv) : undefined,
      shadow: this.#shadow(shadow?.kvs?.[0]),
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
  async #commit(
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
          key: this.#eventKey(resource, state.revision, index),
          value: b64(JSON.stringify(event)),
        },
      })
    );
    const cutoff = await this.#trimCutoff(resource, state, events.length, op);
    if (cutoff) {
      success.push({
        request_delete_range: {
          key: this.#events(resource).key,
          range_end: b64(bytes(unb64(cutoff), [0])),
        },
      });
    }
    const shadowKey = b64(this.#shadowKey(resource));
    const reply = await this.#call<TxnReply>("/v3/kv/txn", {
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
    const excess = state.events + adding - this.#settings.keep;
    let oldest = state.oldest;
    if (excess > oldest.length) {
      // Only after `history` was lowered: read as many keys as must go.
      const reply = await this.#call<RangeReply>("/v3/kv/range", {
        ...this.#events(resource),
        limit: excess,
        keys_only: true,
      }, op);
      oldest = reply.kvs ?? [];
    }
    const tooOld = Date.now() - this.#settings.keepMs;
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
  async #grant(ttlSeconds: number, op: Operation): Promise<Granted> {
    const asked = Date.now();
    const granted = await this.#call<{ ID: string; TTL: string }>(
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
  async #revoke(leaseNo: string): Promise<void> {
    // A busy server may need more than one go; a lease left behind would
    // live for its whole TTL.
    for (let attempt = 0; attempt < REVOKE_ATTEMPTS; attempt++) {
      try {
        await this.#call(
          "/v3/lease/revoke",
          { ID: leaseNo },
          ownDeadline(this.#settings.timeoutMs),
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
  async #serverExpiry(holder: Holder, op: Operation): Promise<number | null> {
    const { TTL } = await this.#call<{ TTL: string }>(
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
  async #isLive(holder: Holder, op: Operation): Promise<boolean> {
    if (holder.record.expires > Date.now()) return true;
    return (await this.#serverExpiry(holder, op)) !== null;
  }

  /** The holder as others see it, with the server-checked expiry. */
  async #visible(holder: Holder, op: Operation): Promise<Lease | null> {
    const expires = await this.#serverExpiry(holder, op);
    if (expires === null) return null;
    return { ...holder.lease, expires: new Date(expires) };
  }

  #lease(resource: string, record: StoredLease, fence: number | string): Lease {
    return this.#context.leaseFromRecord(resource, { ...record, fence });
  }

  // The primitives.

  async acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    const { resource } = request;
    const leaseKey = b64(this.#leaseKey(resource));
    const sweepEnd = Date.now() + SWEEP_WAIT_MS;
    // The etcd lease is granted only once the lock reads as free, so a
    // crowd refused by a holder leaves no leases behind it.
    let granted: Granted | undefined;
    let won = false;
    // Set while a commit is unanswered: it may land, or have landed.
    let unsure = false;
    // The queue: the transaction also asks that no waiter registration
    // exists, so nobody waiting costs no read; only a refusal reads them.
    const waiters = request.waiters && this.#leaseKey(request.waiters);
    let deferring = waiters !== undefined;
    try {
      let state = await this.#state(resource, op);
      for (;;) {
        const { holder } = state;
        if (holder?.record.id === request.id) {
          won = true; // An attempt whose answer was lost had landed.
          return holder.lease;
        }
        if (holder) {
          const visible = await this.#visible(holder, op);
          if (visible) throw new this.#context.errors.LockHeldError(visible);
          // The holder expired, but etcd's sweep has not deleted its key.
          if (Date.now() > sweepEnd || op.deadline - Date.now() < 500) {
            throw new this.#context.errors.LockHeldError(holder.lease);
          }
          await sleep(100);
          state = await this.#state(resource, op);
          continue;
        }
        granted ??= await this.#grant(request.ttlSeconds, op);
        const record: StoredLease = stripped({
          id: request.id,
          principal: request.principal,
          host: request.host,
          reason: request.reason,
          link: request.link,
          created: granted.created,
          expires: granted.expires,
        });
        const events: EventValue[] = [];
        const last = state.shadow;
        if (last?.value.state === "held") {
          // Its key is gone without a release: etcd expired it.
          const { state: _, ...old } = last.value;
          events.push({
            ...old,
            fence: old.fence ?? Number(last.kv.mod_revision),
            kind: "expired",
            at: old.expires,
          });
        }
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
        unsure = true;
        const result = await this.#commit(
          resource,
          state,
          [{
            key: leaseKey,
            target: "CREATE",
            result: "EQUAL",
            create_revision: "0",
          }, ...noWaiters],
          [
            {
              request_put: {
                key: leaseKey,
                value: b64(JSON.stringify(record)),
                lease: granted.leaseNo,
              },
            },
            this.#putShadow(resource, { ...record, state: "held" }),
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
        state = await this.#state(resource, op);
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
        const op = ownDeadline(this.#settings.timeoutMs);
        try {
          const holder = await this.#read(landed.resource, op);
          if (holder?.kv.lease === leaseNo) return;
        } catch {
          return;
        }
      }
      await this.#revoke(leaseNo);
    })();
    this.#settling.add(work);
    work.finally(() => this.#settling.delete(work));
  }

  #putShadow(resource: string, shadow: Shadow): RequestOp {
    return {
      request_put: {
        key: b64(this.#shadowKey(resource)),
        value: b64(JSON.stringify(shadow)),
      },
    };
  }

  async renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const reading = this.#state(resource, op);
    reading.catch(() => {});
    // An etcd lease's TTL is fixed when granted (a keep-alive restarts
    // it), so a new TTL needs a new lease.
    const granted = await this.#grant(ttlSeconds, op);
    // Whether the key moved onto the new lease: unknown until etcd
    // answers, since a lost answer may follow a move that landed.
    let moved: boolean | undefined;
    let oldLeaseNo: string | undefined;
    try {
      let state = await reading;
      for (;;) {
        const { holder } = state;
        if (holder?.record.id !== leaseId) {
          moved = false;
          throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
        }
        if (holder.kv.lease === granted.leaseNo) {
          moved = true; // An attempt whose answer was lost had landed.
          return holder.lease;
        }
        if (!(await this.#isLive(holder, op))) {
          moved = false;
          throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
        }
        const before = holder.record;
        const record: StoredLease = stripped({
          ...before,
          reason: change.reason ?? before.reason,
          fence: Number(holder.kv.create_revision),
          expires: granted.expires,
        });
        const changed = change.reason !== undefined &&
          change.reason !== before.reason;
        const key = b64(this.#leaseKey(resource));
        const result = await this.#commit(
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
            this.#putShadow(resource, { ...record, state: "held" }),
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
          return this.#lease(resource, record, holder.kv.create_revision);
        }
        state = await this.#state(resource, op);
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
    for (;;) {
      const state = await this.#state(resource, op);
      const { holder, shadow } = state;
      if (
        !holder || holder.record.id !== leaseId ||
        !(await this.#isLive(holder, op))
      ) {
        // After a transaction whose answer was lost, it may have landed.
        if (
          tried && shadow?.value.id === leaseId && shadow.value.state === kind
        ) {
          const { state: _, ...record } = shadow.value;
          return this.#lease(resource, record, record.fence ?? 0);
        }
        throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
      }
      const fence = Number(holder.kv.create_revision);
      const record: StoredLease = { ...holder.record, fence };
      const key = b64(this.#leaseKey(resource));
      const event: EventValue = { ...record, kind, at: Date.now() };
      if (by) event.by = stripped({ ...by });
      const result = await this.#commit(
        resource,
        state,
        {
          key,
          target: "MOD",
          result: "EQUAL",
          mod_revision: holder.kv.mod_revision,
        },
        [
          { request_delete_range: { key } },
          this.#putShadow(resource, { ...record, state: kind }),
        ],
        [event],
        op,
      );
      if (result.succeeded) {
        this.#settle(holder.kv.lease!);
        return holder.lease;
      }
      tried = true;
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
    const state = await this.#state(resource, op);
    const last = state.shadow;
    if (
      state.holder || last?.value.state !== "held" ||
      last.value.id !== leaseId || last.value.expires > Date.now()
    ) return false;
    const { state: _, ...old } = last.value;
    const record = { ...old, fence: old.fence ?? Number(last.kv.mod_revision) };
    const result = await this.#commit(
      resource,
      state,
      {
        key: b64(this.#leaseKey(resource)),
        target: "CREATE",
        result: "EQUAL",
        create_revision: "0",
      },
      [this.#putShadow(resource, { ...record, state: "expired" })],
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

  async #read(resource: string, op: Operation): Promise<Holder | undefined> {
    const reply = await this.#call<RangeReply>("/v3/kv/range", {
      key: b64(this.#leaseKey(resource)),
    }, op);
    const kv = reply.kvs?.[0];
    return kv ? this.#parse(resource, kv) : undefined;
  }

  async current(resource: string, op: Operation): Promise<Lease | null> {
    const holder = await this.#read(resource, op);
    return holder ? await this.#visible(holder, op) : null;
  }

  async isHeld(resource: string, leaseId: string, op: Operation) {
    const holder = await this.#read(resource, op);
    return holder?.record.id === leaseId && await this.#isLive(holder, op);
  }

  /**
   * Pages through the lease keys under the prefix at one revision. The
   * recorded expiry decides liveness (no TTL call per lease); shadow and
   * history keys sort after every lease key, outside the range.
   */
  async list(prefix: string, op: Operation): Promise<Lease[]> {
    const start = bytes(this.#prefix, prefix);
    const end = prefix === ""
      ? b64(bytes(this.#prefix, [0xff]))
      : b64(prefixEnd(start));
    const leases: Lease[] = [];
    let key = b64(start);
    let revision: string | undefined;
    for (;;) {
      const reply: RangeReply = await this.#call("/v3/kv/range", {
        key,
        range_end: end,
        limit: PAGE,
        ...(revision ? { revision } : {}),
      }, op);
      revision ??= reply.header.revision;
      const kvs = reply.kvs ?? [];
      for (const kv of kvs) {
        const name = decoder.decode(
          unb64(kv.key).subarray(this.#prefix.length),
        );
        leases.push(this.#parse(name, kv).lease);
      }
      if (!reply.more || kvs.length === 0) return leases;
      key = b64(bytes(unb64(kvs[kvs.length - 1].key), [0]));
    }
  }

  async history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    const reply = await this.#call<RangeReply>("/v3/kv/range", {
      ...this.#events(resource),
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
   * Watches the lease key with `POST /v3/watch`: every PUT or DELETE of
   * it (acquire, renew, release, break, and expiry, since etcd deletes an
   * expired lease's key) calls `onChange`. Resolves once etcd reports the
   * watch created. If the stream ends or fails, it is opened once more on
   * the next member, from the revision after the last one seen; after
   * that, the watch stops quietly and waiters poll.
   */
  watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    const key = b64(this.#leaseKey(resource));
    const stop = new AbortController();
    const end = () => stop.abort();
    signal.addEventListener("abort", end, { once: true });
    // The deadline bounds the setup only.
    const expire = () => stop.abort(op.signal.reason);
    op.signal.addEventListener("abort", expire, { once: true });
    let ready!: { resolve(): void; reject(error: unknown): void };
    const created = new Promise<void>((resolve, reject) => {
      ready = { resolve, reject };
    });
    const run = async () => {
      let stream: WatchStream;
      try {
        stream = await this.#gateway.watch(key, undefined, op, stop.signal);
      } catch (error) {
        // Stopped by its owner while starting: nothing to report.
        if (signal.aborted) ready.resolve();
        else ready.reject(error);
        return;
      } finally {
        op.signal.removeEventListener("abort", expire);
      }
      ready.resolve();
      await this.#follow(key, stream, onChange, stop);
    };
    const watch = {
      stop,
      done: run().finally(() => {
        signal.removeEventListener("abort", end);
        this.#watches.delete(watch);
      }),
    };
    this.#watches.add(watch);
    return created;
  }

  /** Reads a watch's events until it is stopped or has failed twice. */
  async #follow(
    key: string,
    first: WatchStream,
    onChange: () => void,
    stop: AbortController,
  ): Promise<void> {
    const notify = () => {
      try {
        onChange();
      } catch {
        // The subscriber's trouble, not the watch's.
      }
    };
    let stream = first;
    for (let reconnects = 0;; reconnects++) {
      try {
        for (;;) {
          const line = await stream.next();
          if (line === undefined) break;
          const result = watchResult(line, { name: "", url: "" }, {
            prefix: this.#settings.prefix,
          });
          if (!result) break;
          for (const event of result.events ?? []) {
            stream.revision = later(stream.revision, event.kv?.mod_revision);
            notify();
          }
          stream.revision = later(stream.revision, result.header?.revision);
          if (result.canceled) {
            // Compacted past what it had not sent: something may be missed.
            if (result.compact_revision) notify();
            break;
          }
        }
      } catch {
        // Aborted, or the stream failed.
      } finally {
        await stream.cancel();
      }
      if (stop.signal.aborted || reconnects >= 1) return;
      const timer = setTimeout(() => stop.abort(), this.#settings.timeoutMs);
      try {
        stream = await this.#gateway.watch(
          key,
          stream.revision === "0"
            ? undefined
            : String(BigInt(stream.revision) + 1n),
          {
            signal: stop.signal,
            deadline: Date.now() + this.#settings.timeoutMs,
            onExpire() {},
          },
          stop.signal,
          stream.member,
        );
      } catch {
        return; // Waiters poll.
      } finally {
        clearTimeout(timer);
      }
    }
  }

  async close(): Promise<void> {
    // Revokes still under way finish first (each is bounded).
    await Promise.all([...this.#settling]);
    const watches = [...this.#watches];
    for (const watch of watches) watch.stop.abort();
    await Promise.all(watches.map((watch) => watch.done));
    this.#gateway.close();
  }
}

/** An etcd lease granted for a Stormlock lease. */
interface Granted {
  /** etcd's lease ID. */
  leaseNo: string;
  /** When it was asked for, epoch ms. */
  created: number;
  /** When it runs out, epoch ms. */
  expires: number;
}

/** A deadline of its own, for clean-up that outlives the operation. */
function ownDeadline(ms: number): Operation {
  return {
    signal: AbortSignal.timeout(ms),
    deadline: Date.now() + ms,
    onExpire() {},
  };
}

/** The later of two revisions (decimal text). */
function later(revision: string, other: string | undefined): string {
  if (other === undefined || !/^\d+$/.test(other)) return revision;
  return BigInt(other) > BigInt(revision) ? other : revision;
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
function stripped<T extends object>(value: T): T {
  return Object.fromEntries(
    Object.entries(value).filter(([, field]) => field !== undefined),
  ) as T;
}

// Options.

/** Parses one entry of `hosts`: `host`, `host:port` or a URL of either. */
function parseHost(
  entry: string,
  fail: (why: string) => Error,
): { name: string; tls?: boolean } {
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
    name: `${url.hostname}:${port}`,
    tls: scheme === undefined ? undefined : scheme === "https",
  };
}

/** Whether `host` is an IPv6 address (unbracketed). */
function isIPv6(host: string): boolean {
  if (!host.includes(":")) return false;
  try {
    new URL(`http://[${host}]/`);
    return true;
  } catch {
    return false;
  }
}

/** The members and scheme named by `hosts`, or else `host` and `port`. */
function parseMembers(
  settings: {
    hosts?: string;
    host?: string;
    port?: number;
    ca_cert?: string;
    cert_cert?: string;
  },
  context: KitContext,
): { members: Member[]; tls: boolean } {
  const fail = (key: string) => (why: string) => context.optionError(key, why);
  if (
    settings.hosts !== undefined &&
    (settings.host !== undefined || settings.port !== undefined)
  ) {
    throw fail("hosts")("set either hosts or host and port, not both");
  }
  let entries: string[];
  const key = settings.hosts !== undefined ? "hosts" : "host";
  if (settings.hosts !== undefined) {
    entries = settings.hosts.split(",").map((entry) => entry.trim()).filter(
      (entry) => entry !== "",
    );
    if (entries.length === 0) throw fail("hosts")("it is empty");
  } else {
    const host = settings.host ?? DEFAULT_HOST;
    const port = settings.port ?? DEFAULT_PORT;
    if (host.includes("/") || (host.includes(":") && !isIPv6(host))) {
      throw fail("host")(`"${host}" is not a host name; use hosts for URLs`);
    }
    entries = [isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`];
  }
  const parsed = entries.map((entry) => parseHost(entry, fail(key)));
  const schemes = new Set(parsed.map((member) => member.tls));
  if (schemes.has(true) && schemes.has(false)) {
    throw fail(key)("mixes http:// and https://; use one for all hosts");
  }
  const certificates = settings.ca_cert !== undefined ||
    settings.cert_cert !== undefined;
  if (schemes.has(false) && certificates) {
    throw fail(key)("uses http:// but certificates are set; use https://");
  }
  const tls = schemes.has(true) || certificates;
  const scheme = tls ? "https" : "http";
  return {
    members: parsed.map(({ name }) => ({ name, url: `${scheme}://${name}` })),
    tls,
  };
}

/** What to do about a gRPC error from etcd, by its text and code. */
function replyRemedy(
  error: EtcdReplyError,
  failed: { action: string },
): string {
  const { text, code } = error;
  const { user, prefix } = error.about;
  const who = user === undefined ? "this client" : `user "${user}"`;
  if (/authentication failed|invalid user ID or password/.test(text)) {
    return `rejected ${who}: wrong user name or password; fix user and password in [backend.etcd]`;
  }
  if (code === CODE.permissionDenied) {
    return `denied ${who} access to keys under "${prefix}"; grant it a role with readwrite on that prefix (or change prefix in [backend.etcd])`;
  }
  if (/user name is empty/.test(text)) {
    return "requires authentication; set user and password in [backend.etcd]";
  }
  if (/authentication is not enabled/.test(text)) {
    return `failed to ${failed.action}: ${text}; remove user and password from [backend.etcd], or enable auth on the server`;
  }
  if (code === CODE.unauthenticated) {
    return `did not accept the credentials of ${who}: ${text}; check user and password in [backend.etcd]`;
  }
  return `failed to ${failed.action}: ${text} (gRPC code ${code}); fix what the server names, or retry if it was transient`;
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
  options: {
    hosts: {
      kind: "text",
      doc:
        "Comma-separated cluster members: `host`, `host:port`, `http://host:port` or `https://host:port` (port 2379 by default). Use this or `host`/`port`, not both.",
    },
    host: {
      kind: "text",
      doc:
        "One member's host name or address, when `hosts` is not set. Default: `127.0.0.1`.",
    },
    port: {
      kind: "port",
      doc: "That member's port. Default: `2379`.",
    },
    prefix: {
      kind: "text",
      default: DEFAULT_PREFIX,
      doc: "Prepended to the resource name to make the etcd key.",
    },
    ca_cert: {
      kind: "pem",
      doc:
        "PEM file of the CA that signed the servers' certificates (default: the system's CAs). Setting it turns TLS on.",
    },
    cert_cert: {
      kind: "pem",
      doc:
        "PEM client certificate, for servers started with `--client-cert-auth`. Setting it turns TLS on.",
    },
    cert_key: {
      kind: "pem",
      doc: "PEM private key of `cert_cert`.",
    },
    user: {
      kind: "text",
      doc: "etcd user, for servers with authentication on.",
    },
    password: {
      kind: "text",
      doc: "That user's password. Never printed.",
    },
    timeout: {
      kind: "duration",
      default: "3s",
      doc:
        "Bound on each command's whole exchange with etcd (connecting, signing in, failover and every request).",
    },
  },
  together: [["cert_cert", "cert_key"], ["user", "password"]],
  capabilities: {
    clock: "server",
    list: true,
    history: true,
    fencing: true,
    events: true,
    queue: true,
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
  classify(error, failed): Classified | undefined {
    if (error instanceof BlockedPortError) {
      return {
        config: `can't be reached: Deno's fetch refuses port ${
          error.member.replace(/^.*:/, "")
        } ("bad port" in the Fetch standard); run etcd on another port and fix hosts (or port) in [backend.etcd]`,
      };
    }
    if (error instanceof CommonNameError) {
      return {
        config:
          `refused the client certificate: with authentication on, etcd's JSON gateway refuses certificates that have a CommonName; issue cert_cert without a CN (names in subjectAltName only) and sign in with user and password`,
      };
    }
    if (error instanceof UnreachableError) {
      const why = error.failures.size === 1
        ? [...error.failures.values()][0]
        : error.message;
      return {
        unavailable:
          `is unavailable (${why}); check that the server is up and that hosts (or host and port) in [backend.etcd] are right`,
      };
    }
    if (error instanceof NotEtcdError) {
      return {
        unavailable:
          `is not etcd: ${error.message}; check that hosts names etcd's client port (etcd 3.4 or later)`,
      };
    }
    if (error instanceof EtcdReplyError) {
      return { unavailable: replyRemedy(error, failed) };
    }
    const name = (error as Error)?.name;
    if (name === "AbortError" || name === "TimeoutError") return "timeout";
    return undefined;
  },
});
