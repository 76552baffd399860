/**
 * Who is calling `stormlock serve`, and what they may do: the bearer token
 * (shared, named, or one a verifier such as OIDC accepts), the scope a
 * route needs, the resources a token covers, and, with no token at all,
 * loopback Host names only.
 *
 * @module
 */
import { UsageError } from "../../kit/errors.ts";
import { shorten } from "../../kit/text.ts";
import {
  type Identity,
  resourceAllowed,
  type Scope,
  type TokenStore,
} from "./identity.ts";
import { HttpError, isLoopback } from "./http.ts";

/** The shortest token accepted: guessing it must be out of reach. */
export const MIN_TOKEN_LENGTH = 16;

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

/** What a route needs of its caller; `read-or-acquire` takes either. */
export type RouteScope = Scope | "read-or-acquire";

/** The tokens a server accepts. */
export interface GateOptions {
  /** The shared token: it names nobody. */
  token?: string;
  /** Whether the shared token may break leases. */
  allowBreak?: boolean;
  /** Named tokens, from the tokens file. */
  tokens?: TokenStore;
  /** Other verifiers, tried in order. */
  verifiers?: TokenVerifier[];
}

/** Compares secrets in time that does not depend on where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(expected);
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i];
  return diff === 0;
}

/** Whether an identity's leases are hidden from other principals. */
export function named(who: Identity): boolean {
  return who.via === "token" || who.via === "oidc";
}

/** Whether any token is set: without one, a server is read-only. */
export function guardedBy(options: GateOptions): boolean {
  return options.token !== undefined || options.tokens !== undefined ||
    (options.verifiers ?? []).length > 0;
}

const challenge = { "www-authenticate": 'Bearer realm="stormlock"' };

/** Checks callers against the tokens a server was started with. */
export class Gate {
  /** Whether any token is set: without one, the server is read-only. */
  readonly guarded: boolean;

  /**
   * @throws {UsageError} when the shared token is short or has spaces, or
   * breaking is allowed without it.
   */
  constructor(readonly options: GateOptions) {
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
    this.guarded = guardedBy(options);
  }

  /** Who is calling, from the bearer token; never from what they claim. */
  async authenticate(request: Request): Promise<Identity> {
    const header = request.headers.get("authorization");
    if (header === null) {
      if (!this.guarded) {
        return { principal: "", scopes: ["read"], via: "none" };
      }
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
    const token = this.options.token;
    if (token !== undefined && sameSecret(given, token)) {
      return {
        principal: "",
        scopes: this.options.allowBreak
          ? ["read", "acquire", "break"]
          : ["read", "acquire"],
        via: "shared",
      };
    }
    const byName = await this.options.tokens?.identify(given);
    if (byName) return byName;
    for (const verifier of this.options.verifiers ?? []) {
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

  requireScope(who: Identity, scope: RouteScope | undefined): void {
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

  requireResource(who: Identity, resource: string): void {
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
  checkHost(request: Request, url: URL): void {
    if (this.guarded) return;
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
}
