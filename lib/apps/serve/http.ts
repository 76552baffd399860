/**
 * The HTTP plumbing of `stormlock serve`: where it listens, the limits on
 * a request (path, headers, body, rate), the security headers on every
 * reply, and JSON replies and refusals. Nothing here knows about locks.
 *
 * @module
 */
import { StormlockError, UsageError } from "../../kit/errors.ts";
import { shorten } from "../../kit/text.ts";

/** The address `serve` listens on when none is given. */
export const DEFAULT_LISTEN = "127.0.0.1:7878";

/** The longest request path accepted, in bytes of its encoded form. */
export const MAX_PATH = 4096;

/** The largest request body accepted, in bytes. */
export const MAX_BODY = 16 * 1024;

/** The most header bytes a request may send (Deno's own limit is higher). */
const MAX_HEADER_BYTES = 16 * 1024;

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
 * import { parseListen } from "./http.ts";
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
export function listenError(error: unknown, where: string): unknown {
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
 * import { isLoopback } from "./http.ts";
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
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Sent with every reply: the page may run only its own script and style. */
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

/** A reply with the security headers, never cached. */
export function respond(
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

/** A JSON reply, one line and a newline. */
export function json(
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
export function statusOf(error: StormlockError): number {
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

/** Reads a JSON object body of at most {@linkcode MAX_BODY} bytes. */
export async function readJsonBody(
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
export class RateLimiter {
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

/** The refusal of a client that is over its rate. */
export function tooMany(wait: number): HttpError {
  return new HttpError(
    429,
    `Too many requests; try again in ${wait} s`,
    { "retry-after": String(wait) },
  );
}

/**
 * Refuses a request whose path or headers are over the limits, before
 * anything reads it.
 */
export function checkRequestSize(request: Request): void {
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
}

/** The reply to a refusal or an error; `body` adds what a client needs. */
export function errorReply(
  error: unknown,
  body: (error: StormlockError) => Record<string, unknown>,
  onError?: (error: unknown) => void,
): Response {
  if (error instanceof HttpError) {
    return json(
      {
        error: error.message,
        ...(error.code ? { code: error.code } : {}),
      },
      error.status,
      error.headers,
    );
  }
  if (error instanceof StormlockError) {
    return json(body(error), statusOf(error));
  }
  onError?.(error);
  return json({ error: "Internal error; see the server's log" }, 500);
}
