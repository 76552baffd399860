/**
 * `stormlock serve`: the team lock server. A live status page, and a JSON
 * API over the configured store for reading and for the lock primitives
 * (acquire, renew, release, break, watch) that the `http` backend calls,
 * with the same lease and event shapes as the CLI's `--json`.
 *
 * The file is laid out as HTTP plumbing (responses, bodies, limits), who
 * the caller is (`authenticate`), and one table of routes. No lock state
 * lives in the server process: several servers over one store act as one.
 * Every `/api` call carries its token in a header (never a cookie), so
 * another site can't ride on a visitor's session.
 *
 * @module
 */
import { eventJson, leaseJson } from "../output/format.ts";
import { handOverRequest } from "../../composition/request.ts";
import { parseRequestName } from "../../composition/events.ts";
import type { ListedLease, Stormlock } from "../../composition/lock.ts";
import { backendsInUse } from "../../composition/config.ts";
import {
  AcquireUnknownError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../../kit/errors.ts";
import { assertLeaseId } from "../../kit/lease.ts";
import { queueView, WAIT_MARK } from "../../composition/queue.ts";
import { INTERNAL_MARK, isBookkeeping } from "../../kit/reserved.ts";
import { MAX_TTL_SECONDS } from "../../kit/duration.ts";
import type { Backend, Lease, LeaseEvent } from "../../kit/types.ts";
import { resourceNameProblem, shorten } from "../../kit/text.ts";
import {
  type Identity,
  resourceAllowed,
  type Scope,
  type TokenStore,
} from "./identity.ts";
import { Metrics } from "./metrics.ts";
import { VERSION } from "../../kit/version.ts";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./page.ts";

/** The address `serve` listens on when none is given. */
export const DEFAULT_LISTEN = "127.0.0.1:7878";

/** The longest request path accepted, in bytes of its encoded form. */
export const MAX_PATH = 4096;

/** The largest request body accepted, in bytes. */
export const MAX_BODY = 16 * 1024;

/** The most event streams open at once; each costs a timer, not a poll. */
const MAX_STREAMS = 256;

/** The most event streams one client address may hold of them. */
const MAX_STREAMS_PER_CLIENT = 16;
/** The most header bytes a request may send (Deno's own limit is higher). */
const MAX_HEADER_BYTES = 16 * 1024;

/** The shortest token accepted: guessing it must be out of reach. */
export const MIN_TOKEN_LENGTH = 16;

/**
 * What the server reads: a {@linkcode Stormlock} handle, or anything with
 * its `list` and `lock` (tests wrap one to simulate an outage).
 * @example
 * ```ts ignore
 * import { openStormlock, type ServeStore } from "@stormlock/stormlock";
 * const store: ServeStore = await openStormlock();
 * ```
 */
export type ServeStore =
  & Pick<Stormlock, "list" | "lock">
  & Partial<Pick<Stormlock, "backend" | "config">>;

/**
 * Turns a bearer token that is not a named or shared one into an identity,
 * such as an OIDC verifier; `undefined` when it does not apply.
 * @example
 * ```ts ignore
 * const verifier: TokenVerifier = { identify: async (token) => undefined };
 * ```
 */
export interface TokenVerifier {
  /**
   * The identity of `token`, or `undefined` when the token is not for it.
   * @throws {ForbiddenError} when the token is for it but refused, saying why.
   */
  identify(token: string): Promise<Identity | undefined>;
}

/**
 * A per-client token bucket: `burst` requests at once, refilled at
 * `perSecond`.
 * @example
 * ```ts
 * import type { RateLimit } from "@stormlock/stormlock";
 * const rate: RateLimit = { burst: 120, perSecond: 20 };
 * ```
 */
export interface RateLimit {
  /** Requests a client may make at once. */
  burst: number;
  /** Requests per second a client regains. */
  perSecond: number;
}

/**
 * How {@linkcode serveStatus} and {@linkcode createServeHandler} behave.
 * @example
 * ```ts
 * import type { ServeOptions } from "@stormlock/stormlock";
 * const options: ServeOptions = { listen: "127.0.0.1:7878", token: "s3cret-s3cret-s3cret" };
 * ```
 */
export interface ServeOptions {
  /**
   * `HOST:PORT`, `[IPV6]:PORT` or `PORT`; port 0 picks a free one.
   * @default "127.0.0.1:7878"
   */
  listen?: string;
  /**
   * A shared bearer token: it names nobody, so callers with it are
   * recorded under the principal they claim. It grants `read` and
   * `acquire`, and `break` with `allowBreak`.
   */
  token?: string;
  /**
   * Whether the shared token may break leases.
   * @default false
   */
  allowBreak?: boolean;
  /** Named tokens, from the tokens file: each names its principal. */
  tokens?: TokenStore;
  /** Other token verifiers, such as OIDC rules, tried in order. */
  verifiers?: TokenVerifier[];
  /** PEM certificate chain: serve over TLS (with `tlsKey`). */
  tlsCert?: string;
  /** PEM private key of `tlsCert`. */
  tlsKey?: string;
  /** Receives operator warnings, such as no TLS off loopback. */
  onWarn?: (message: string) => void;
  /**
   * Who a break from the page is recorded as; `undefined` means the
   * resource's configured principal followed by ` via serve`.
   */
  breaker?: string;
  /**
   * How often the store is polled for `/api/events`, in milliseconds.
   * @default 1000
   */
  pollMs?: number;
  /**
   * The request rate per principal (per address before authentication).
   * @default { burst: 120, perSecond: 20 }
   */
  rate?: RateLimit;
  /** Called once the server listens, with its URL. */
  onListen?: (url: string) => void;
  /** Receives unexpected errors (bugs), which are answered with a 500. */
  onError?: (error: unknown) => void;
}

/**
 * A listening address, parsed.
 * @example
 * ```ts
 * import type { ListenAddress } from "@stormlock/stormlock";
 * const address: ListenAddress = { hostname: "127.0.0.1", port: 7878 };
 * ```
 */
export interface ListenAddress {
  /** The host name or IP address, without brackets. */
  hostname: string;
  /** The TCP port; 0 picks a free one. */
  port: number;
}

/**
 * Parses `--listen`: `HOST:PORT`, `[IPV6]:PORT`, or a bare `PORT` on
 * 127.0.0.1.
 *
 * @param text The address as given.
 * @returns The host and port.
 * @throws {UsageError} on anything else.
 * @example
 * ```ts
 * import { parseListen } from "./server.ts";
 * parseListen("0.0.0.0:8080"); // { hostname: "0.0.0.0", port: 8080 }
 * parseListen("[::1]:7878"); // { hostname: "::1", port: 7878 }
 * ```
 */
export function parseListen(text: string): ListenAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(
    text,
  ) ?? /^()()(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new UsageError(
      `Bad --listen "${
        shorten(text, 60)
      }": give ADDRESS:PORT, e.g. 127.0.0.1:7878, [::1]:7878 or 0.0.0.0:7878`,
    );
  }
  const hostname = match[1] || match[2] || "127.0.0.1";
  // Digits and dots are an IPv4 address, never a name to look up.
  if (
    /^[\d.]+$/.test(hostname) &&
    !/^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/
      .test(hostname)
  ) {
    throw new UsageError(
      `Bad --listen "${
        shorten(text, 60)
      }": ${hostname} is not an IPv4 address (four numbers 0-255); give e.g. 127.0.0.1:7878`,
    );
  }
  return { hostname, port };
}

/**
 * Why `serve` can't listen on `where`, as one line with a fix; other
 * errors (such as a Deno permission) are returned as they are.
 */
function listenError(error: unknown, where: string): unknown {
  const start = `Can't listen on ${where}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return new UsageError(
      `${start}: the port is in use by another program; stop it, or pick another port (port 0 picks a free one)`,
    );
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return new UsageError(
      `${start}: this host has no such address; use one of its own addresses, 127.0.0.1, or 0.0.0.0 for all`,
    );
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return new UsageError(
      `${start}: the system refused it (ports below 1024 need privileges); pick a port from 1024 up`,
    );
  }
  if (/lookup address|Name or service not known/i.test(String(error))) {
    return new UsageError(
      `${start}: the name does not resolve to an address of this host; give an IP address such as 127.0.0.1`,
    );
  }
  return error;
}

/**
 * Whether a host name or address only reaches this machine.
 *
 * @param hostname A name or IP address, with or without IPv6 brackets.
 * @example
 * ```ts
 * import { isLoopback } from "./server.ts";
 * isLoopback("127.0.0.1"); // true
 * isLoopback("0.0.0.0"); // false
 * ```
 */
export function isLoopback(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host.endsWith(".localhost") ||
    host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ||
    /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A request refused on purpose: its status and one clear line. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly code?: string,
  ) {
    super(message);
  }
}

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
  ].join("; "),
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=()",
};

function respond(
  body: BodyInit | null,
  status: number,
  type: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: {
      ...SECURITY_HEADERS,
      "content-type": type,
      "cache-control": "no-store",
      ...headers,
    },
  });
}

function json(
  value: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return respond(
    `${JSON.stringify(value)}\n`,
    status,
    "application/json; charset=utf-8",
    headers,
  );
}

/** The HTTP status of a library error. */
function statusOf(error: StormlockError): number {
  switch (error.code) {
    case "USAGE":
      return 400;
    case "FORBIDDEN":
      return 403;
    case "CONFIG":
      return 501;
    case "LOCK_HELD":
    case "LEASE_NOT_HELD":
      return 409;
    case "BACKEND_UNAVAILABLE":
      return 503;
    default:
      return 500;
  }
}

/** Compares secrets in time that does not depend on where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

/** Decodes one resource path segment, or refuses it clearly. */
function resourceOf(
  segment: string,
  queue: boolean | "requests",
): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new HttpError(
      400,
      "The resource name is not valid percent-encoded UTF-8; encode it with encodeURIComponent",
    );
  }
  if (name === "") {
    throw new HttpError(400, "The resource name is empty; name a resource");
  }
  const own = queue === "requests"
    ? parseRequestName(name) !== undefined && isBookkeeping(name)
    : queue && isBookkeeping(name);
  checkName(name, own, "resource name");
  return name;
}

/**
 * Refuses reserved characters in a name, except in the waiting queue's own
 * names (`bookkeeping`), which the http backend's queue sends: those may
 * have them after a well-formed lock name.
 */
function checkName(name: string, bookkeeping: boolean, what: string): void {
  const base = bookkeeping ? name.slice(0, name.indexOf(INTERNAL_MARK)) : name;
  const problem = resourceNameProblem(base);
  if (problem) {
    throw new HttpError(
      400,
      `The ${what} ${problem}; use another name`,
      {},
      "USAGE",
    );
  }
}

/** The lock a name belongs to: itself, or the lock a queue name serves. */
function lockOf(name: string): string {
  const at = name.indexOf(INTERNAL_MARK);
  return at === -1 ? name : name.slice(0, at);
}

function limitOf(text: string | null): number {
  if (text === null) return 20;
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > 100_000) {
    throw new HttpError(
      400,
      `Bad limit "${shorten(text, 20)}": give a whole number from 1 to 100000`,
    );
  }
  return Number(text);
}

/** Reads a JSON object body of at most {@linkcode MAX_BODY} bytes. */
async function readJsonBody(
  request: Request,
): Promise<Record<string, unknown>> {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    throw new HttpError(
      415,
      "Send the body as JSON with Content-Type: application/json",
    );
  }
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > MAX_BODY) {
    throw new HttpError(413, `The body is over ${MAX_BODY} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body) {
      size += chunk.length;
      if (size > MAX_BODY) {
        throw new HttpError(413, `The body is over ${MAX_BODY} bytes`);
      }
      chunks.push(chunk);
    }
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new HttpError(400, "The body is not valid JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(
      400,
      "The body must be a JSON object",
    );
  }
  return value as Record<string, unknown>;
}

/** Token buckets per principal or address; idle ones are forgotten. */
class RateLimiter {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  constructor(readonly rate: RateLimit) {}

  /** Takes one token for `client`; returns seconds to wait, or 0. */
  take(client: string, now = Date.now()): number {
    const { burst, perSecond } = this.rate;
    const bucket = this.#buckets.get(client) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(
      burst,
      bucket.tokens + ((now - bucket.at) / 1000) * perSecond,
    );
    bucket.at = now;
    this.#buckets.delete(client); // re-insert: the map stays in LRU order
    this.#buckets.set(client, bucket);
    if (this.#buckets.size > 10_000) {
      this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    if (bucket.tokens < 1) return Math.ceil((1 - bucket.tokens) / perSecond);
    bucket.tokens -= 1;
    return 0;
  }
}

type Send = (event: string, data: unknown) => void;

/** What the watcher tells each listener: the live locks, or an outage. */
type WatchState =
  | {
    event: "locks";
    leases: ListedLease[];
    /** Backends that were down: their locks are missing from `leases`. */
    missing?: { backend: string; error: string }[];
  }
  | { event: "unavailable"; error: string };

/**
 * Polls the store while anyone listens, and tells every listener when the
 * set of locks changes, or the store fails or recovers. Each listener
 * formats what it may see itself (lease ids are shown to their holders).
 */
class Watcher {
  readonly #listeners = new Set<(state: WatchState) => void>();
  #last: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(readonly store: ServeStore, readonly pollMs: number) {}

  /** Adds a listener, sending it the current state first. */
  async add(listener: (state: WatchState) => void): Promise<void> {
    const { state, key } = await this.#read();
    if (this.#closed) return;
    this.#last ??= key;
    listener(state);
    this.#listeners.add(listener);
    this.#schedule();
  }

  remove(listener: (state: WatchState) => void): void {
    this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }

  async #read(): Promise<{ state: WatchState; key: string }> {
    try {
      // A backend that is down leaves the others' locks shown, with a
      // "partial" event naming it after the "locks" one.
      const missing: { backend: string; error: string }[] = [];
      const leases = await this.store.list("", {
        onUnavailable: (backend, error) =>
          missing.push({ backend, error: errorText(error) }),
      });
      return {
        state: {
          event: "locks",
          leases,
          ...(missing.length > 0 ? { missing } : {}),
        },
        key: JSON.stringify([leases.map(leaseJson), missing]),
      };
    } catch (error) {
      const text = errorText(error);
      return { state: { event: "unavailable", error: text }, key: `!${text}` };
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(async () => {
      try {
        if (this.#listeners.size === 0) {
          this.#last = undefined;
          return;
        }
        const { state, key } = await this.#read();
        if (key !== this.#last) {
          this.#last = key;
          for (const listener of [...this.#listeners]) listener(state);
        }
      } finally {
        this.#timer = undefined;
        if (this.#listeners.size > 0) this.#schedule();
      }
    }, this.pollMs);
  }
}

function errorText(error: unknown): string {
  if (error instanceof StormlockError) return error.message;
  return "Internal error; see the server's log";
}

/**
 * The request handler behind `stormlock serve`, without a listener, for
 * embedding in another server or testing in-process.
 *
 * @example
 * ```ts ignore
 * import { createServeHandler, openStormlock } from "@stormlock/stormlock";
 * const locks = await openStormlock();
 * const app = createServeHandler(locks, { token: Deno.env.get("TOKEN") });
 * Deno.serve({ port: 8080 }, app.handler);
 * ```
 */
export interface ServeHandler {
  /** Answers one request; `info` gives the client address for rate limits. */
  handler(request: Request, info?: Deno.ServeHandlerInfo): Promise<Response>;
  /** Ends every event stream and stops polling. */
  close(): void;
}

/** What a route's handler gets. */
interface RouteContext {
  request: Request;
  url: URL;
  method: string;
  /** The caller; set on every `/api` route. */
  who: Identity;
  /** The decoded resource, on `/api/locks/{resource}/…` routes. */
  resource: string;
  /** The client's address, for per-client limits. */
  client: string;
}

/** One row of the routes table. */
interface Route {
  /** A name for metrics, e.g. `POST /api/locks/{resource}/acquire`. */
  name: string;
  methods: string[];
  /** `/api/locks/{resource}` routes match on the action after it. */
  path: string | { action: string | undefined };
  /** What the caller needs; `undefined` for public routes. */
  scope?: Scope | "read-or-acquire";
  /**
   * Whether Stormlock's own names (reserved characters after a lock
   * name: the queue, hand-over requests) are accepted: only where the
   * http backend needs them (acquire, renew, release, and reading one
   * lease), never on listing or history routes.
   */
  queue?: true | "requests";
  run(context: RouteContext): Promise<Response> | Response;
}

/** Whether an identity's leases are hidden from other principals. */
function named(who: Identity): boolean {
  return who.via === "token" || who.via === "oidc";
}

/** The text fields a client may send with a lease, checked. */
function textField(
  body: Record<string, unknown>,
  key: string,
  max = 4096,
): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.trim() === "" || value.length > max) {
    throw new HttpError(
      400,
      `"${key}" must be text of 1 to ${max} characters`,
      {},
      "USAGE",
    );
  }
  return value.trim();
}

function ttlField(body: Record<string, unknown>): number {
  const ttl = body.ttl;
  if (
    typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < 1 ||
    ttl > MAX_TTL_SECONDS
  ) {
    throw new HttpError(
      400,
      `"ttl" must be whole seconds from 1 to ${MAX_TTL_SECONDS}`,
      {},
      "USAGE",
    );
  }
  return ttl;
}

function idField(body: Record<string, unknown>): string {
  if (typeof body.id !== "string") {
    throw new HttpError(
      400,
      'Give the lease id: {"id": "LEASE_ID"}',
      {},
      "USAGE",
    );
  }
  return assertLeaseId(body.id);
}

function linkField(body: Record<string, unknown>): string | undefined {
  const link = textField(body, "link");
  if (
    link !== undefined &&
    (!/^https?:\/\/\S+$/i.test(link) || !URL.canParse(link))
  ) {
    throw new HttpError(400, '"link" must be an http(s) URL', {}, "USAGE");
  }
  return link;
}

/**
 * Builds the page and API handler over `store`.
 *
 * @param store The configured store, usually from `openStormlock()`.
 * @param options Tokens, break policy, poll interval and rate limit.
 * @returns The handler and a `close` that ends its event streams.
 * @throws {UsageError} when breaking is allowed without a token, or the
 * token is too short.
 * @example
 * ```ts ignore
 * import { createServeHandler, openStormlock } from "@stormlock/stormlock";
 * const app = createServeHandler(await openStormlock());
 * const response = await app.handler(new Request("http://127.0.0.1/api/locks"));
 * console.log(await response.json());
 * ```
 */
export function createServeHandler(
  store: ServeStore,
  options: ServeOptions = {},
): ServeHandler {
  const token = options.token;
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new UsageError(
      `The serve token is ${token.length} characters long; use at least ${MIN_TOKEN_LENGTH}, e.g. from "openssl rand -hex 32"`,
    );
  }
  if (token !== undefined && /\s/.test(token)) {
    throw new UsageError(
      'The serve token contains whitespace, which an Authorization header can\'t carry, so no request would match it; use a token without spaces or line breaks, e.g. from "openssl rand -hex 32"',
    );
  }
  if (options.allowBreak && token === undefined) {
    throw new UsageError(
      "--allow-break needs a token (--token or STORMLOCK_SERVE_TOKEN): a break changes state, so callers must prove who may",
    );
  }
  const guarded = token !== undefined || options.tokens !== undefined ||
    (options.verifiers ?? []).length > 0;
  const watcher = new Watcher(store, options.pollMs ?? 1000);
  const limiter = new RateLimiter(
    options.rate ?? { burst: 120, perSecond: 20 },
  );
  const metrics = new Metrics();
  // Each live event stream, and the client address that opened it.
  const streams = new Map<
    ReadableStreamDefaultController<Uint8Array>,
    string
  >();
  const encoder = new TextEncoder();
  const challenge = { "www-authenticate": 'Bearer realm="stormlock"' };

  /** Who is calling, from the bearer token; never from what they claim. */
  async function authenticate(request: Request): Promise<Identity> {
    const header = request.headers.get("authorization");
    if (header === null) {
      if (!guarded) return { principal: "", scopes: ["read"], via: "none" };
      throw new HttpError(
        401,
        "This server needs a token: send Authorization: Bearer TOKEN",
        challenge,
        "UNAUTHENTICATED",
      );
    }
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw new HttpError(
        401,
        "Send the token as Authorization: Bearer TOKEN",
        challenge,
        "UNAUTHENTICATED",
      );
    }
    const given = match[1];
    if (token !== undefined && sameSecret(given, token)) {
      return {
        principal: "",
        scopes: options.allowBreak
          ? ["read", "acquire", "break"]
          : ["read", "acquire"],
        via: "shared",
      };
    }
    const byName = await options.tokens?.identify(given);
    if (byName) return byName;
    for (const verifier of options.verifiers ?? []) {
      const identity = await verifier.identify(given);
      if (identity) return identity;
    }
    throw new HttpError(
      401,
      "The token was refused: it is unknown, revoked or expired",
      challenge,
      "UNAUTHENTICATED",
    );
  }

  function requireScope(who: Identity, scope: Route["scope"]): void {
    if (scope === undefined) return;
    const ok = scope === "read-or-acquire"
      ? who.scopes.includes("read") || who.scopes.includes("acquire")
      : who.scopes.includes(scope);
    if (!ok && scope === "break" && who.via === "shared") {
      throw new HttpError(
        403,
        "Breaking leases is off for the shared token; start serve with --allow-break, or use a named token with the break scope",
        {},
        "FORBIDDEN",
      );
    }
    if (!ok && who.via === "none") {
      throw new HttpError(
        403,
        "This server is read-only without a token; start it with --tokens FILE (see docs/team-server.md) or --token",
        {},
        "FORBIDDEN",
      );
    }
    if (!ok) {
      const wanted = scope === "read-or-acquire" ? "read" : scope;
      throw new HttpError(
        403,
        `${
          who.principal ? `"${shorten(who.principal)}"` : "This caller"
        } lacks the "${wanted}" scope; ask for a token that has it`,
        {},
        "FORBIDDEN",
      );
    }
  }

  function requireResource(who: Identity, resource: string): void {
    if (!resourceAllowed(resource, who.resources)) {
      throw new HttpError(
        403,
        `"${shorten(who.principal)}" may not touch "${
          shorten(resource)
        }"; its token covers ${who.resources!.join(", ")}`,
        {},
        "FORBIDDEN",
      );
    }
  }

  /** Without any token, only loopback Host names: no DNS rebinding. */
  function checkHost(request: Request, url: URL): void {
    if (guarded) return;
    if (!isLoopback(url.hostname)) {
      throw new HttpError(
        403,
        `Host "${
          shorten(url.hostname, 80)
        }" is not this server; without a token it answers only loopback names such as 127.0.0.1 and localhost`,
      );
    }
    const origin = request.headers.get("origin");
    if (origin && origin !== "null" && origin !== url.origin) {
      throw new HttpError(403, "Cross-origin requests are refused");
    }
  }

  /** A lease as `who` may see it: another principal's id is hidden. */
  function view<T extends Lease>(lease: T, who: Identity) {
    const shown = leaseJson(lease);
    if (named(who) && lease.principal !== who.principal) {
      return { ...shown, id: null };
    }
    return shown;
  }

  function eventView(event: LeaseEvent, who: Identity) {
    const shown = eventJson(event);
    if (named(who) && event.principal !== who.principal) {
      return { ...shown, id: null };
    }
    return shown;
  }

  /** A library error as JSON, with what a client needs to rebuild it. */
  function errorBody(error: StormlockError, who?: Identity) {
    const body: Record<string, unknown> = {
      error: error.message,
      code: error.code,
    };
    if (error instanceof LockHeldError) {
      body.holder = who ? view(error.holder, who) : leaseJson(error.holder);
      body.waiting = error.waiting;
      body.queued = error.queued;
    }
    if (error instanceof LeaseNotHeldError) {
      body.resource = error.resource;
      body.leaseId = error.leaseId;
      if (error.broken) {
        body.broken = who
          ? eventView(error.broken, who)
          : eventJson(error.broken);
      }
    }
    if (error instanceof AcquireUnknownError) {
      body.resource = error.resource;
      body.leaseId = error.leaseId;
    }
    return body;
  }

  /** The backend of a lock, or of the lock a queue name serves. */
  async function backendOf(resource: string): Promise<Backend> {
    const backend = (await store.lock(lockOf(resource))).backend;
    return resource.includes(INTERNAL_MARK) ? queueView(backend) : backend;
  }

  /** Every lease under `prefix` on every backend, queue entries included. */
  async function rawList(prefix: string): Promise<Lease[]> {
    // A waiter's prefix, "LOCK\u001fwait\u001f", reads that lock's queue.
    const queue = prefix.endsWith(WAIT_MARK);
    checkName(prefix, queue, "prefix");
    if (queue || !store.config || !store.backend) {
      return await (await backendOf(prefix || "default")).list(prefix, {
        internal: true,
      });
    }
    const leases: Lease[] = [];
    for (const name of backendsInUse(store.config)) {
      leases.push(
        ...await (await store.backend(name)).list(prefix, { internal: true }),
      );
    }
    return leases;
  }

  /**
   * Refuses `who` a renew or release of someone else's lease. Ids are
   * unique, so if `id` is not the live lease now it never will be, and
   * the store's own check answers "not held".
   */
  async function requireOwn(
    backend: Backend,
    who: Identity,
    resource: string,
    id: string,
    action: string,
  ): Promise<void> {
    if (!named(who)) return;
    const current = await backend.current(resource);
    if (current?.id === id && current.principal !== who.principal) {
      throw new HttpError(
        403,
        `Lease ${id} on "${shorten(resource)}" belongs to ${
          shorten(current.principal)
        }, not ${
          shorten(who.principal)
        }; you can't ${action} it (only "stormlock break" ends another's lease)`,
        {},
        "FORBIDDEN",
      );
    }
  }

  /** The principal a write is recorded under. */
  function principalOf(who: Identity, body: Record<string, unknown>): string {
    if (who.via === "shared") {
      const claimed = textField(body, "principal", 256);
      if (claimed === undefined) {
        throw new HttpError(
          400,
          'Give the principal: {"principal": "ann@host"}',
          {},
          "USAGE",
        );
      }
      return claimed;
    }
    return who.principal;
  }

  function stream(
    client: string,
    /** Whether the per-client limit applies (pages, not waiters). */
    limited: boolean,
    start: (
      send: Send,
      stop: () => void,
    ) => void | Promise<void>,
    onStop: () => void,
  ): Response {
    if (streams.size >= MAX_STREAMS) {
      throw new HttpError(
        503,
        `Too many live streams (${MAX_STREAMS}); close some, or poll /api/locks`,
        { "retry-after": "10" },
      );
    }
    if (limited) {
      let mine = 0;
      for (const owner of streams.values()) if (owner === client) mine++;
      if (mine >= MAX_STREAMS_PER_CLIENT) {
        throw new HttpError(
          429,
          `This client has ${mine} live pages open, the most one client may; close some, or poll /api/locks`,
          { "retry-after": "10" },
        );
      }
    }
    let ping: ReturnType<typeof setInterval> | undefined;
    let control: ReadableStreamDefaultController<Uint8Array>;
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(ping);
      streams.delete(control);
      onStop();
      try {
        control.close();
      } catch { /* already closed */ }
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        control = controller;
        streams.set(controller, client);
        const send: Send = (event, data) => {
          try {
            controller.enqueue(
              encoder.encode(
                `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
              ),
            );
          } catch {
            stop();
          }
        };
        controller.enqueue(encoder.encode(": stormlock events\n\n"));
        // A comment now and then keeps proxies from closing an idle stream.
        ping = setInterval(() => {
          try {
            controller.enqueue(encoder.encode(": ping\n\n"));
          } catch {
            stop();
          }
        }, 15_000);
        Promise.resolve(start(send, stop)).catch(stop);
      },
      cancel: stop,
    });
    return respond(body, 200, "text/event-stream; charset=utf-8", {
      "x-accel-buffering": "no",
    });
  }

  function events(who: Identity, client: string): Response {
    let listener: ((state: WatchState) => void) | undefined;
    return stream(
      client,
      true,
      (send) => {
        listener = (state) => {
          if (state.event === "unavailable") {
            send("unavailable", { error: state.error });
            return;
          }
          send(
            "locks",
            state.leases
              .filter((lease) => resourceAllowed(lease.resource, who.resources))
              .map((lease) => view(lease, who)),
          );
          if (state.missing) send("partial", { missing: state.missing });
        };
        return watcher.add(listener);
      },
      () => listener && watcher.remove(listener),
    );
  }

  /**
   * Change events of one lock, for waiters: from the store's own events
   * where it has them, else by polling the lease.
   */
  function watchLock(resource: string, client: string): Response {
    const abort = new AbortController();
    return stream(client, false, async (send, stop) => {
      const backend = await backendOf(resource);
      const changed = () => send("change", { resource });
      if (backend.capabilities.events) {
        await backend.watch(resource, changed, abort.signal);
        send("ready", { resource });
        return;
      }
      // A quick take-and-release leaves the lease as it was, but not the
      // history, so the latest event is part of what is compared.
      const look = async () => {
        const [lease, latest] = await Promise.all([
          backend.current(resource),
          backend.capabilities.history
            ? backend.history(resource, 1).then((events) => events[0])
            : undefined,
        ]);
        return JSON.stringify([
          lease?.id,
          latest?.kind,
          latest?.id,
          latest?.at.getTime(),
        ]);
      };
      let last = await look();
      send("ready", { resource });
      const poll = async () => {
        while (!abort.signal.aborted) {
          await new Promise((done) =>
            setTimeout(done, Math.min(options.pollMs ?? 1000, 1000))
          );
          if (abort.signal.aborted) return;
          try {
            const now = await look();
            if (now !== last) {
              last = now;
              changed();
            }
          } catch {
            stop(); // The client polls on; its next watch starts afresh.
            return;
          }
        }
      };
      poll();
    }, () => abort.abort());
  }

  const lockRoute = (action: string | undefined) => ({ action });

  /** Every route, in one table: path, methods, scope, and what it does. */
  const routes: Route[] = [
    {
      name: "GET /",
      methods: ["GET", "HEAD"],
      path: "/",
      run: () => respond(PAGE_HTML, 200, "text/html; charset=utf-8"),
    },
    {
      name: "GET /",
      methods: ["GET", "HEAD"],
      path: "/index.html",
      run: () => respond(PAGE_HTML, 200, "text/html; charset=utf-8"),
    },
    {
      name: "GET /app.js",
      methods: ["GET", "HEAD"],
      path: "/app.js",
      run: () => respond(PAGE_JS, 200, "text/javascript; charset=utf-8"),
    },
    {
      name: "GET /app.css",
      methods: ["GET", "HEAD"],
      path: "/app.css",
      run: () => respond(PAGE_CSS, 200, "text/css; charset=utf-8"),
    },
    {
      name: "GET /healthz",
      methods: ["GET", "HEAD"],
      path: "/healthz",
      run: () => json({ ok: true }),
    },
    {
      name: "GET /metrics",
      methods: ["GET", "HEAD"],
      path: "/metrics",
      scope: "read",
      run: async ({ who }) =>
        respond(
          metrics.render(
            (await rawList("")).filter((lease) =>
              resourceAllowed(lease.resource, who.resources)
            ),
          ),
          200,
          "text/plain; version=0.0.4; charset=utf-8",
        ),
    },
    {
      name: "GET /api/info",
      methods: ["GET", "HEAD"],
      path: "/api/info",
      run: ({ who }) =>
        json({
          version: VERSION,
          principal: who.principal || null,
          scopes: who.scopes,
          resources: who.resources ?? null,
          allowBreak: who.scopes.includes("break"),
          token: guarded,
        }),
    },
    {
      name: "GET /api/events",
      methods: ["GET"],
      path: "/api/events",
      scope: "read-or-acquire",
      run: ({ who, client }) => events(who, client),
    },
    {
      name: "GET /api/locks",
      methods: ["GET", "HEAD"],
      path: "/api/locks",
      scope: "read-or-acquire",
      run: async ({ url, who }) => {
        const prefix = url.searchParams.get("prefix") ?? "";
        const leases: ListedLease[] = await store.list(prefix);
        return json(
          leases
            .filter((lease) => resourceAllowed(lease.resource, who.resources))
            .map((lease) => view(lease, who)),
        );
      },
    },
    {
      name: "GET /api/leases",
      methods: ["GET", "HEAD"],
      path: "/api/leases",
      scope: "read-or-acquire",
      run: async ({ url, who }) => {
        const prefix = url.searchParams.get("prefix") ?? "";
        const leases = await rawList(prefix);
        return json(
          leases
            .filter((lease) => resourceAllowed(lease.resource, who.resources))
            .map((lease) => view(lease, who)),
        );
      },
    },
    {
      name: "POST /api/init",
      methods: ["POST"],
      path: "/api/init",
      scope: "acquire",
      run: async ({ request, who }) => {
        const body = await readJsonBody(request);
        const resource = textField(body, "resource", 4096) ?? "default";
        requireResource(who, resource);
        return json({ setup: await (await backendOf(resource)).init() });
      },
    },
    {
      name: "GET /api/locks/{resource}",
      methods: ["GET", "HEAD"],
      path: lockRoute(undefined),
      scope: "read-or-acquire",
      // The http backend reads a lease's hand-over request by its name.
      queue: "requests",
      run: async ({ resource, who }) => {
        const backend = await backendOf(resource);
        const lease = await backend.current(resource);
        if (!lease) {
          return json(
            { error: `No current lease on "${shorten(resource)}"`, resource },
            404,
          );
        }
        // The open hand-over request, as `current --json` shows it.
        const request = await handOverRequest(backend, lease);
        return json(view({ ...lease, request }, who));
      },
    },
    {
      name: "GET /api/locks/{resource}/history",
      methods: ["GET", "HEAD"],
      path: lockRoute("history"),
      scope: "read-or-acquire",
      run: async ({ resource, url, who }) => {
        const limit = limitOf(url.searchParams.get("limit"));
        const events = await (await backendOf(resource)).history(
          resource,
          limit,
        );
        return json(events.map((event) => eventView(event, who)));
      },
    },
    {
      name: "GET /api/locks/{resource}/held",
      methods: ["GET", "HEAD"],
      path: lockRoute("held"),
      scope: "read-or-acquire",
      run: async ({ resource, url }) => {
        const id = assertLeaseId(url.searchParams.get("id") ?? "");
        return json({
          held: await (await backendOf(resource)).isHeld(resource, id),
        });
      },
    },
    {
      name: "GET /api/locks/{resource}/watch",
      methods: ["GET"],
      path: lockRoute("watch"),
      scope: "read-or-acquire",
      run: ({ resource, client }) => watchLock(resource, client),
    },
    {
      name: "POST /api/locks/{resource}/acquire",
      methods: ["POST"],
      path: lockRoute("acquire"),
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const ttl = ttlField(body);
        const id = body.id === undefined ? undefined : idField(body);
        const lease = await (await backendOf(resource)).acquire(
          resource,
          principalOf(who, body),
          ttl,
          {
            host: textField(body, "host", 256),
            reason: textField(body, "reason"),
            link: who.link ?? linkField(body),
            ...(id ? { id } : {}),
          },
        );
        metrics.event("acquired");
        return json(view(lease, who), 201);
      },
    },
    {
      name: "POST /api/locks/{resource}/renew",
      methods: ["POST"],
      path: lockRoute("renew"),
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const id = idField(body);
        const ttl = ttlField(body);
        const reason = textField(body, "reason");
        const backend = await backendOf(resource);
        await requireOwn(backend, who, resource, id, "renew");
        const lease = await backend.renew(
          resource,
          id,
          ttl,
          reason === undefined ? {} : { reason },
        );
        metrics.event(reason === undefined ? "renewed" : "reason-changed");
        return json(view(lease, who));
      },
    },
    {
      name: "POST /api/locks/{resource}/release",
      methods: ["POST"],
      path: lockRoute("release"),
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const id = idField(body);
        const backend = await backendOf(resource);
        await requireOwn(backend, who, resource, id, "release");
        await backend.release(resource, id);
        metrics.event("released");
        return json({ resource, id, released: true });
      },
    },
    {
      // A watcher that saw a TTL pass ends that lease here, recording
      // `expired` even when nobody acquires afterwards. Only a lapsed lease
      // ends, so anyone who may acquire the lock may ask.
      name: "POST /api/locks/{resource}/expire",
      methods: ["POST"],
      path: lockRoute("expire"),
      scope: "acquire",
      run: async ({ request, resource }) => {
        const id = idField(await readJsonBody(request));
        const backend = await backendOf(resource);
        const expired = backend.expire
          ? await backend.expire(resource, id)
          : false;
        return json({ resource, id, expired });
      },
    },
    {
      name: "POST /api/locks/{resource}/break",
      methods: ["POST"],
      path: lockRoute("break"),
      scope: "break",
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const reason = textField(body, "reason");
        if (reason === undefined) {
          throw new HttpError(
            400,
            'Give the lease to break and why: {"id": "LEASE_ID", "reason": "TEXT"} (without "id", the current lease)',
            {},
            "USAGE",
          );
        }
        const backend = await backendOf(resource);
        let id = body.id === undefined || body.id === null
          ? undefined
          : idField(body);
        if (id === undefined) {
          // Ids are hidden from others, so a breaker may name the current one.
          const current = await backend.current(resource);
          if (!current) {
            throw new HttpError(
              404,
              `No current lease on "${shorten(resource)}"; nothing to break`,
            );
          }
          id = current.id;
        }
        const breaker = who.via === "shared" || who.via === "none"
          ? textField(body, "principal", 256) ?? options.breaker ??
            `${(await store.lock(resource)).settings.principal} via serve`
          : who.principal;
        const broken = await backend.breakLease(resource, id, {
          principal: breaker,
          host: textField(body, "host", 256),
          reason,
        });
        metrics.event("broken");
        return json(view(broken, who));
      },
    },
  ];

  function allow(methods: string[], method: string): void {
    if (!methods.includes(method)) {
      throw new HttpError(
        405,
        `${method} is not allowed here; use ${methods.join(" or ")}`,
        { allow: methods.join(", ") },
      );
    }
  }

  /** Finds the route for a path, and the resource it names. */
  function match(path: string): { route: Route; resource: string } {
    const exact = routes.filter((route) => route.path === path);
    if (exact.length > 0) return { route: exact[0], resource: "" };
    const parts = path.split("/"); // "", "api", "locks", resource, action?
    if (
      parts[1] === "api" && parts[2] === "locks" && parts.length >= 4 &&
      parts.length <= 5
    ) {
      const action = parts[4];
      const route = routes.find((route) =>
        typeof route.path === "object" && route.path.action === action
      );
      if (route) {
        return { route, resource: resourceOf(parts[3], route.queue ?? false) };
      }
    }
    if (path === "/api" || path.startsWith("/api/")) {
      throw new HttpError(404, `No such API path: ${shorten(path, 100)}`);
    }
    throw new HttpError(404, `No such page: ${shorten(path, 100)}`);
  }

  async function handler(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Promise<Response> {
    const started = performance.now();
    let routeName = "other";
    let who: Identity | undefined;
    let response: Response;
    try {
      const raw = request.url;
      const pathStart = raw.indexOf("/", raw.indexOf("//") + 2);
      const rawPath = pathStart < 0 ? "/" : raw.slice(pathStart).split("?")[0];
      if (rawPath.length > MAX_PATH || raw.length > 2 * MAX_PATH) {
        throw new HttpError(414, `The path is over ${MAX_PATH} bytes`);
      }
      let headerBytes = 0;
      for (const [name, value] of request.headers) {
        headerBytes += name.length + value.length + 4;
      }
      if (headerBytes > MAX_HEADER_BYTES) {
        throw new HttpError(
          431,
          `The request's headers are over ${
            MAX_HEADER_BYTES / 1024
          } KB; send fewer or shorter ones`,
        );
      }
      const client = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname ??
        "local";
      const url = new URL(raw);
      checkHost(request, url);
      const method = request.method === "HEAD" ? "HEAD" : request.method;
      const { route, resource } = match(url.pathname);
      routeName = route.name;
      allow(route.methods, method);
      const isApi = route.scope !== undefined ||
        url.pathname.startsWith("/api/");
      let key = `address ${client}`;
      if (isApi) {
        try {
          who = await authenticate(request);
        } catch (error) {
          // Failed guesses count against the address.
          const wait = limiter.take(key);
          if (wait > 0) throw tooMany(wait);
          throw error;
        }
        if (named(who)) key = `principal ${who.principal}`;
      }
      const wait = limiter.take(key);
      if (wait > 0) throw tooMany(wait);
      if (who) {
        requireScope(who, route.scope);
        if (resource) requireResource(who, resource);
      }
      response = await route.run({
        request,
        url,
        method,
        who: who ?? { principal: "", scopes: [], via: "none" },
        resource,
        client,
      });
    } catch (error) {
      if (error instanceof HttpError) {
        response = json(
          {
            error: error.message,
            ...(error.code ? { code: error.code } : {}),
          },
          error.status,
          error.headers,
        );
      } else if (error instanceof StormlockError) {
        response = json(errorBody(error, who), statusOf(error));
      } else {
        options.onError?.(error);
        response = json({ error: "Internal error; see the server's log" }, 500);
      }
    }
    metrics.request(
      routeName,
      response.status,
      (performance.now() - started) / 1000,
    );
    return response;
  }

  return {
    handler,
    close() {
      watcher.close();
      for (const stream of [...streams.keys()]) {
        try {
          stream.close();
        } catch { /* already closed */ }
      }
      streams.clear();
    },
  };
}

function tooMany(wait: number): HttpError {
  return new HttpError(
    429,
    `Too many requests; try again in ${wait} s`,
    { "retry-after": String(wait) },
  );
}

/**
 * A running status server.
 * @example
 * ```ts ignore
 * import { openStormlock, serveStatus } from "@stormlock/stormlock";
 * const server = serveStatus(await openStormlock(), { listen: "127.0.0.1:0" });
 * console.log(server.url);
 * await server.shutdown();
 * ```
 */
export interface StatusServer {
  /** The URL it listens on, e.g. `http://127.0.0.1:7878`. */
  readonly url: string;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Ends event streams, stops listening and waits for open requests. */
  shutdown(): Promise<void>;
}

/**
 * Serves the status page and JSON API over `store` until shut down.
 *
 * @param store The configured store, usually from `openStormlock()`.
 * @param options Address, tokens, TLS, break policy, poll interval, rate.
 * @returns The running server.
 * @throws {UsageError} on a bad address, a non-loopback address without a
 * token, `allowBreak` without a token, or a short token.
 * @example
 * ```ts ignore
 * import { openStormlock, serveStatus } from "@stormlock/stormlock";
 * await using locks = await openStormlock();
 * const server = serveStatus(locks, { listen: "127.0.0.1:7878" });
 * await server.finished;
 * ```
 */
export function serveStatus(
  store: ServeStore,
  options: ServeOptions = {},
): StatusServer {
  const { hostname, port } = parseListen(options.listen ?? DEFAULT_LISTEN);
  const guarded = options.token !== undefined ||
    options.tokens !== undefined || (options.verifiers ?? []).length > 0;
  if (!isLoopback(hostname) && !guarded) {
    throw new UsageError(
      `serve on ${hostname}, which is not loopback, needs a token: name a tokens file (--tokens or tokens in [serve]), add [oidc.NAME] rules, or pass --token or STORMLOCK_SERVE_TOKEN`,
    );
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
    throw new UsageError(
      "Give both --tls-cert and --tls-key, or neither",
    );
  }
  const tls = options.tlsCert !== undefined;
  const app = createServeHandler(store, options);
  const where = `${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${port}`;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
      ...(tls ? { cert: options.tlsCert!, key: options.tlsKey! } : {}),
      onListen() {},
      onError(error) {
        options.onError?.(error);
        return json({ error: "Internal error; see the server's log" }, 500);
      },
    }, app.handler);
  } catch (error) {
    app.close();
    throw listenError(error, where);
  }
  const addr = server.addr;
  if (!guarded && !isLoopback(addr.hostname)) {
    // A name such as x.localhost may resolve anywhere: the address bound
    // is what counts.
    app.close();
    server.shutdown().catch(() => {});
    throw new UsageError(
      `serve on ${hostname} listens on ${addr.hostname}, which is not loopback, so it needs a token: name a tokens file (--tokens or tokens in [serve]), add [oidc.NAME] rules, or pass --token or STORMLOCK_SERVE_TOKEN`,
    );
  }
  // Warned only once listening worked, so a listen error stays one line.
  if (!tls && !isLoopback(addr.hostname)) {
    options.onWarn?.(
      `serving plain http on ${addr.hostname}: tokens cross the network in the clear unless a TLS-terminating proxy is in front; give --tls-cert and --tls-key otherwise`,
    );
  }
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  const url = `${tls ? "https" : "http"}://${host}:${addr.port}`;
  options.onListen?.(url);
  return {
    url,
    finished: server.finished,
    async shutdown() {
      app.close();
      await server.shutdown();
    },
  };
}
