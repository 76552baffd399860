/**
 * `stormlock serve`: the team lock server. A live status page, and a JSON
 * API over the configured store for reading and for the lock primitives
 * (acquire, renew, release, break, watch) that the `http` backend calls,
 * with the same lease and event shapes as the CLI's `--json`.
 *
 * This file puts the parts together: the HTTP plumbing (`http.ts`), who
 * the caller is (`auth.ts`), the change feed (`feed.ts`) and the table of
 * routes (`routes.ts`). No lock state lives in the server process: several
 * servers over one store act as one. Every `/api` call carries its token
 * in a header (never a cookie), so another site can't ride on a visitor's
 * session.
 *
 * @module
 */
import { UsageError } from "../../kit/errors.ts";
import type { Identity, TokenStore } from "./identity.ts";
import { Metrics } from "./metrics.ts";
import { Gate, guardedBy, named, type TokenVerifier } from "./auth.ts";
import { ChangeFeed } from "./feed.ts";
import {
  allowMethod,
  errorBody,
  matchRoute,
  serveRoutes,
  type ServeStore,
} from "./routes.ts";
import {
  checkRequestSize,
  DEFAULT_LISTEN,
  errorReply,
  isLoopback,
  json,
  listenError,
  parseListen,
  type RateLimit,
  RateLimiter,
  tooMany,
} from "./http.ts";

export {
  DEFAULT_LISTEN,
  isLoopback,
  type ListenAddress,
  MAX_BODY,
  MAX_PATH,
  parseListen,
  type RateLimit,
} from "./http.ts";
export { MIN_TOKEN_LENGTH, type TokenVerifier } from "./auth.ts";
export type { ServeStore } from "./routes.ts";

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
  const gate = new Gate(options);
  const feed = new ChangeFeed(store, options.pollMs ?? 1000);
  const limiter = new RateLimiter(
    options.rate ?? { burst: 120, perSecond: 20 },
  );
  const metrics = new Metrics();
  const routes = serveRoutes({
    store,
    gate,
    feed,
    metrics,
    breaker: options.breaker,
  });

  async function handler(
    request: Request,
    info?: Deno.ServeHandlerInfo,
  ): Promise<Response> {
    const started = performance.now();
    let routeName = "other";
    let who: Identity | undefined;
    let response: Response;
    try {
      checkRequestSize(request);
      const client = (info?.remoteAddr as Deno.NetAddr | undefined)?.hostname ??
        "local";
      const url = new URL(request.url);
      gate.checkHost(request, url);
      const method = request.method === "HEAD" ? "HEAD" : request.method;
      const { route, resource } = matchRoute(routes, url.pathname);
      routeName = route.name ?? `${route.methods[0]} ${route.path}`;
      allowMethod(route.methods, method);
      const isApi = route.scope !== undefined ||
        url.pathname.startsWith("/api/");
      let key = `address ${client}`;
      if (isApi) {
        try {
          who = await gate.authenticate(request);
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
        gate.requireScope(who, route.scope);
        if (resource) gate.requireResource(who, resource);
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
      response = errorReply(
        error,
        (error) => errorBody(error, who),
        options.onError,
      );
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
    close: () => feed.close(),
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
  const guarded = guardedBy(options);
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
