/**
 * `stormlock serve`: a live status page and a JSON API over the configured
 * store, with the same lease and event shapes as the CLI's `--json`.
 *
 * Read-only unless breaking is allowed, loopback unless a token is set,
 * and every `/api` call carries the token in a header (never a cookie), so
 * another site can't ride on a visitor's session.
 *
 * @module
 */
import { eventJson, leaseJson } from "./format.ts";
import { Lock } from "./lock.ts";
import type { ListedLease, Stormlock } from "./lock.ts";
import { StormlockError, UsageError } from "./kit/errors.ts";
import { resourceNameProblem, shorten } from "./kit/text.ts";
import { VERSION } from "./kit/version.ts";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./serve_page.ts";

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
export type ServeStore = Pick<Stormlock, "list" | "lock">;

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
   * The bearer token every `/api` call must carry. Required on a
   * non-loopback address, and for breaking.
   */
  token?: string;
  /**
   * Whether `POST /api/locks/{resource}/break` may end leases. Needs a token.
   * @default false
   */
  allowBreak?: boolean;
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
   * The per-client request rate.
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
 * import { parseListen } from "@stormlock/stormlock";
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
 * import { isLoopback } from "@stormlock/stormlock";
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
function resourceOf(segment: string): string {
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
  const problem = resourceNameProblem(name);
  if (problem) {
    throw new HttpError(400, `The resource name ${problem}; use another name`);
  }
  return name;
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
      'The body must be a JSON object: {"id", "reason"}',
    );
  }
  return value as Record<string, unknown>;
}

/** Per-client token buckets; idle ones are forgotten. */
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

/**
 * Polls the store while anyone listens, and tells every listener when the
 * set of locks changes, or the store fails or recovers. No backend
 * announces changes yet, so polling is the only way.
 */
class Watcher {
  readonly #listeners = new Set<Send>();
  #last: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(readonly store: ServeStore, readonly pollMs: number) {}

  /** Adds a listener, sending it the current state first. */
  async add(send: Send): Promise<void> {
    const state = await this.#read();
    if (this.#closed) return;
    this.#last ??= state.key;
    send(state.event, state.data);
    if (state.missing) send("partial", { missing: state.missing });
    this.#listeners.add(send);
    this.#schedule();
  }

  remove(send: Send): void {
    this.#listeners.delete(send);
  }

  get size(): number {
    return this.#listeners.size;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }

  async #read(): Promise<
    { event: string; data: unknown; key: string; missing?: unknown[] }
  > {
    try {
      // A backend that is down leaves the others' locks shown, with a
      // "partial" event naming it after the "locks" one.
      const missing: { backend: string; error: string }[] = [];
      const leases = (await this.store.list("", {
        onUnavailable: (backend, error) =>
          missing.push({ backend, error: errorText(error) }),
      })).map(leaseJson);
      return {
        event: "locks",
        data: leases,
        key: JSON.stringify([leases, missing]),
        ...(missing.length > 0 ? { missing } : {}),
      };
    } catch (error) {
      const data = { error: errorText(error) };
      return { event: "unavailable", data, key: `!${JSON.stringify(data)}` };
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
        const state = await this.#read();
        if (state.key !== this.#last) {
          this.#last = state.key;
          for (const send of [...this.#listeners]) {
            send(state.event, state.data);
            if (state.missing) send("partial", { missing: state.missing });
          }
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

/**
 * Builds the page and API handler over `store`.
 *
 * @param store The configured store, usually from `openStormlock()`.
 * @param options Token, break policy, poll interval and rate limit.
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
  if (token !== undefined && /\s/.test(token)) {
    throw new UsageError(
      'The serve token contains whitespace, which an Authorization header can\'t carry, so no request would match it; use a token without spaces or line breaks, e.g. from "openssl rand -hex 32"',
    );
  }
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) {
    throw new UsageError(
      `The serve token is ${token.length} characters long; use at least ${MIN_TOKEN_LENGTH}, e.g. from "openssl rand -hex 32"`,
    );
  }
  if (options.allowBreak && token === undefined) {
    throw new UsageError(
      "--allow-break needs a token (--token or STORMLOCK_SERVE_TOKEN): a break changes state, so callers must prove who may",
    );
  }
  const watcher = new Watcher(store, options.pollMs ?? 1000);
  const limiter = new RateLimiter(
    options.rate ?? { burst: 120, perSecond: 20 },
  );
  // Each live event stream, and the client that opened it.
  const streams = new Map<
    ReadableStreamDefaultController<Uint8Array>,
    string
  >();
  const encoder = new TextEncoder();

  function checkAuth(request: Request): void {
    if (token === undefined) return;
    const header = request.headers.get("authorization") ?? "";
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const challenge = { "www-authenticate": 'Bearer realm="stormlock"' };
    if (!match) {
      throw new HttpError(
        401,
        "This server needs a token: send Authorization: Bearer TOKEN",
        challenge,
      );
    }
    if (!sameSecret(match[1], token)) {
      throw new HttpError(401, "The token was refused", challenge);
    }
  }

  /** Without a token, only loopback Host names: no DNS rebinding. */
  function checkHost(request: Request, url: URL): void {
    if (token !== undefined) return;
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

  function allow(methods: string[], method: string): void {
    if (!methods.includes(method)) {
      throw new HttpError(
        405,
        `${method} is not allowed here; use ${methods.join(" or ")}`,
        { allow: methods.join(", ") },
      );
    }
  }

  function events(client: string): Response {
    let send: Send | undefined;
    let ping: ReturnType<typeof setInterval> | undefined;
    let control: ReadableStreamDefaultController<Uint8Array>;
    const stop = () => {
      if (send) watcher.remove(send);
      clearInterval(ping);
      streams.delete(control);
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        control = controller;
        streams.set(controller, client);
        send = (event, data) => {
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
        watcher.add(send).catch(stop);
      },
      cancel: stop,
    });
    return respond(body, 200, "text/event-stream; charset=utf-8", {
      "x-accel-buffering": "no",
    });
  }

  async function breakLease(
    request: Request,
    resource: string,
  ): Promise<Response> {
    if (!options.allowBreak) {
      throw new HttpError(
        403,
        "Breaking leases is off; start serve with --allow-break and a token",
      );
    }
    const body = await readJsonBody(request);
    if (typeof body.id !== "string" || typeof body.reason !== "string") {
      throw new HttpError(
        400,
        'Give the lease to break and why: {"id": "LEASE_ID", "reason": "TEXT"}',
      );
    }
    const lock = await store.lock(resource);
    const breaker = new Lock(lock.backend, {
      ...lock.settings,
      principal: options.breaker ?? `${lock.settings.principal} via serve`,
    });
    return json(leaseJson(await breaker.breakLease(body.id, body.reason)));
  }

  async function route(
    request: Request,
    url: URL,
    method: string,
    client: string,
  ): Promise<Response> {
    const path = url.pathname;
    if (path === "/" || path === "/index.html") {
      allow(["GET", "HEAD"], method);
      return respond(PAGE_HTML, 200, "text/html; charset=utf-8");
    }
    if (path === "/app.js") {
      allow(["GET", "HEAD"], method);
      return respond(PAGE_JS, 200, "text/javascript; charset=utf-8");
    }
    if (path === "/app.css") {
      allow(["GET", "HEAD"], method);
      return respond(PAGE_CSS, 200, "text/css; charset=utf-8");
    }
    if (path === "/healthz") {
      allow(["GET", "HEAD"], method);
      return json({ ok: true });
    }
    if (path !== "/api" && !path.startsWith("/api/")) {
      throw new HttpError(404, `No such page: ${shorten(path, 100)}`);
    }
    checkAuth(request);
    if (path === "/api/info") {
      allow(["GET", "HEAD"], method);
      return json({
        version: VERSION,
        allowBreak: options.allowBreak === true,
        token: token !== undefined,
      });
    }
    if (path === "/api/events") {
      allow(["GET"], method);
      let mine = 0;
      for (const owner of streams.values()) if (owner === client) mine++;
      if (mine >= MAX_STREAMS_PER_CLIENT) {
        throw new HttpError(
          429,
          `This client has ${mine} live pages open, the most one client may; close some, or poll /api/locks`,
          { "retry-after": "10" },
        );
      }
      if (streams.size >= MAX_STREAMS) {
        throw new HttpError(
          503,
          `Too many live pages (${MAX_STREAMS}); close some, or poll /api/locks`,
          { "retry-after": "10" },
        );
      }
      return events(client);
    }
    if (path === "/api/locks") {
      allow(["GET", "HEAD"], method);
      const prefix = url.searchParams.get("prefix") ?? "";
      const leases: ListedLease[] = await store.list(prefix);
      return json(leases.map(leaseJson));
    }
    const parts = path.split("/"); // "", "api", "locks", resource, action?
    if (parts[2] === "locks" && parts.length >= 4 && parts.length <= 5) {
      const resource = resourceOf(parts[3]);
      const action = parts[4];
      if (action === undefined) {
        allow(["GET", "HEAD"], method);
        const lock = await store.lock(resource);
        const lease = await lock.current();
        if (!lease) {
          return json(
            { error: `No current lease on "${shorten(resource)}"`, resource },
            404,
          );
        }
        const request = await lock.handOverRequest(lease);
        return json(leaseJson({ ...lease, request }));
      }
      if (action === "history") {
        allow(["GET", "HEAD"], method);
        const limit = limitOf(url.searchParams.get("limit"));
        const events = await (await store.lock(resource)).history(limit);
        return json(events.map(eventJson));
      }
      if (action === "break") {
        allow(["POST"], method);
        return await breakLease(request, resource);
      }
    }
    throw new HttpError(404, `No such API path: ${shorten(path, 100)}`);
  }

  async function handler(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Promise<Response> {
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
      const wait = limiter.take(client);
      if (wait > 0) {
        throw new HttpError(
          429,
          `Too many requests; try again in ${wait} s`,
          { "retry-after": String(wait) },
        );
      }
      const url = new URL(raw);
      checkHost(request, url);
      const method = request.method === "HEAD" ? "HEAD" : request.method;
      return await route(request, url, method, client);
    } catch (error) {
      if (error instanceof HttpError) {
        return json({ error: error.message }, error.status, error.headers);
      }
      if (error instanceof StormlockError) {
        return json({ error: error.message }, statusOf(error));
      }
      options.onError?.(error);
      return json({ error: "Internal error; see the server's log" }, 500);
    }
  }

  return {
    handler,
    close() {
      watcher.close();
      for (const stream of streams.keys()) {
        try {
          stream.close();
        } catch { /* already closed */ }
      }
      streams.clear();
    },
  };
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
 * @param options Address, token, break policy, poll interval, rate limit.
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
  if (!isLoopback(hostname) && options.token === undefined) {
    throw new UsageError(
      `serve on ${hostname}, which is not loopback, needs a token: pass --token or set STORMLOCK_SERVE_TOKEN`,
    );
  }
  const app = createServeHandler(store, options);
  const where = `${
    hostname.includes(":") ? `[${hostname}]` : hostname
  }:${port}`;
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname,
      port,
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
  if (options.token === undefined && !isLoopback(addr.hostname)) {
    // A name such as x.localhost may resolve anywhere: the address bound
    // is what counts.
    app.close();
    server.shutdown().catch(() => {});
    throw new UsageError(
      `serve on ${hostname} listens on ${addr.hostname}, which is not loopback, so it needs a token: pass --token or set STORMLOCK_SERVE_TOKEN`,
    );
  }
  const host = addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  const url = `http://${host}:${addr.port}`;
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
