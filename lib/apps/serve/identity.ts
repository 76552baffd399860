/**
 * Who a lock server's caller is, and what they may do: named tokens kept
 * as hashes in a tokens file, scopes, and resource patterns. OIDC rules
 * (`oidc.ts`) grant the same {@linkcode Identity}.
 *
 * @module
 */
import { ConfigError, UsageError } from "../../kit/errors.ts";
import { INTERNAL_MARK } from "../../kit/reserved.ts";
import { shorten } from "../../kit/text.ts";

/**
 * What a caller may do: `read` locks, `acquire` (take, renew and release
 * its own leases, and wait; it also reads what it may acquire), `break`
 * another principal's lease.
 * @example
 * ```ts
 * import type { Scope } from "@stormlock/stormlock";
 * const scope: Scope = "acquire";
 * ```
 */
export type Scope = "read" | "acquire" | "break";

/**
 * Every scope, in the order help shows them.
 * @example
 * ```ts
 * import { SCOPES } from "@stormlock/stormlock";
 * console.log(SCOPES.join(",")); // "read,acquire,break"
 * ```
 */
export const SCOPES: readonly Scope[] = ["read", "acquire", "break"];

/**
 * An authenticated caller.
 * @example
 * ```ts
 * import type { Identity } from "@stormlock/stormlock";
 * const ci: Identity = { principal: "github:acme/app@refs/heads/main", scopes: ["acquire"], resources: ["deploy/*"], via: "oidc" };
 * ```
 */
export interface Identity {
  /** The principal leases are recorded under. */
  principal: string;
  /** What it may do. */
  scopes: readonly Scope[];
  /** Resource patterns it may touch (`*` is any text); all when absent. */
  resources?: readonly string[];
  /**
   * How it was established: a named token, an OIDC rule, or the shared
   * `--token` (which names nobody, so the client's own principal is
   * recorded, as before named tokens).
   */
  via: "token" | "oidc" | "shared" | "none";
  /** A link that goes into leases it takes, e.g. its CI run. */
  link?: string;
}

/**
 * Parses `read,acquire,break`.
 * @throws {UsageError} on an unknown or missing scope.
 * @example
 * ```ts
 * import { parseScopes } from "./identity.ts";
 * parseScopes("read, acquire"); // ["read", "acquire"]
 * ```
 */
export function parseScopes(text: string): Scope[] {
  const scopes = text.split(",").map((scope) => scope.trim()).filter(Boolean);
  if (scopes.length === 0) {
    throw new UsageError(
      `No scopes given; name some of ${SCOPES.join(", ")}, e.g. read,acquire`,
    );
  }
  for (const scope of scopes) {
    if (!SCOPES.includes(scope as Scope)) {
      throw new UsageError(
        `Unknown scope "${shorten(scope, 30)}"; choose from ${
          SCOPES.join(", ")
        }`,
      );
    }
  }
  return [...new Set(scopes)] as Scope[];
}

/**
 * Parses comma-separated resource patterns such as `deploy/*,db-prod`.
 * @throws {UsageError} on an empty pattern.
 * @example
 * ```ts
 * import { parsePatterns } from "./identity.ts";
 * parsePatterns("deploy/*, db"); // ["deploy/*", "db"]
 * ```
 */
export function parsePatterns(text: string): string[] {
  const patterns = text.split(",").map((pattern) => pattern.trim());
  if (patterns.some((pattern) => pattern === "")) {
    throw new UsageError(
      "A resource pattern is empty; give patterns such as deploy/*,db-prod",
    );
  }
  return patterns;
}

/**
 * Whether `resource` matches one of `patterns`, where `*` stands for any
 * text (`/` included). Stormlock's bookkeeping for a lock (its waiting
 * queue) counts as the lock itself.
 * @example
 * ```ts
 * import { resourceAllowed } from "./identity.ts";
 * resourceAllowed("deploy/web", ["deploy/*"]); // true
 * resourceAllowed("db", ["deploy/*"]); // false
 * ```
 */
export function resourceAllowed(
  resource: string,
  patterns: readonly string[] | undefined,
): boolean {
  if (patterns === undefined) return true;
  const at = resource.indexOf(INTERNAL_MARK);
  const name = at === -1 ? resource : resource.slice(0, at);
  return patterns.some((pattern) => {
    const parts = pattern.split("*");
    if (parts.length === 1) return name === pattern;
    if (!name.startsWith(parts[0])) return false;
    let from = parts[0].length;
    for (const part of parts.slice(1, -1)) {
      const found = name.indexOf(part, from);
      if (found === -1) return false;
      from = found + part.length;
    }
    const last = parts.at(-1)!;
    return name.length - last.length >= from && name.endsWith(last);
  });
}

/**
 * One named token as the tokens file keeps it: never the token itself,
 * only its SHA-256.
 * @example
 * ```ts
 * import type { TokenEntry } from "@stormlock/stormlock";
 * const entry: TokenEntry = { name: "ci", sha256: "ab".repeat(32), scopes: ["acquire"], created: "2026-01-01T00:00:00Z" };
 * ```
 */
export interface TokenEntry {
  /** The token's name, which is its principal. */
  name: string;
  /** The SHA-256 of the token, in hex. */
  sha256: string;
  /** What it may do. */
  scopes: Scope[];
  /** Resource patterns it may touch; all when absent. */
  resources?: string[];
  /** When it was made, ISO 8601. */
  created: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@:+\/-]{0,127}$/;
/** Tokens start with this, so secret scanners and people recognise them. */
const TOKEN_PREFIX = "slk_";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * The SHA-256 of a token, in hex. Tokens carry 256 random bits, so a fast
 * hash is enough: nobody can guess one from its hash.
 * @example
 * ```ts ignore
 * const digest = await tokenHash("slk_…");
 * ```
 */
export async function tokenHash(token: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(token),
  );
  return hex(new Uint8Array(digest));
}

/** Compares two hex digests in time that does not depend on where they differ. */
function sameDigest(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) {
    diff |= (a.charCodeAt(i) || 0) ^ b.charCodeAt(i);
  }
  return diff === 0;
}

function fileError(path: string, why: string): ConfigError {
  return new ConfigError(`Tokens file ${path}: ${why}`);
}

/**
 * Reads and checks a tokens file; a missing file holds no tokens.
 * @throws {ConfigError} when it can't be read or is malformed.
 * @example
 * ```ts ignore
 * const names = readTokensFile("/etc/stormlock/tokens.json").map((t) => t.name);
 * ```
 */
export function readTokensFile(path: string): TokenEntry[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw fileError(path, `can't be read (${(error as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw fileError(
      path,
      'is not valid JSON; it is written by "stormlock token", don\'t edit it by hand',
    );
  }
  const tokens = (value as { tokens?: unknown })?.tokens;
  if (!Array.isArray(tokens)) {
    throw fileError(path, 'has no "tokens" list');
  }
  return tokens.map((entry, i) => {
    const e = entry as TokenEntry;
    if (
      typeof e?.name !== "string" || !/^[0-9a-f]{64}$/.test(e.sha256) ||
      !Array.isArray(e.scopes) ||
      e.scopes.some((scope) => !SCOPES.includes(scope)) ||
      (e.resources !== undefined &&
        (!Array.isArray(e.resources) ||
          e.resources.some((r) => typeof r !== "string" || r === "")))
    ) {
      throw fileError(path, `entry ${i + 1} is malformed`);
    }
    return e;
  });
}

/** Writes the tokens file atomically, readable by its owner only. */
function writeTokensFile(path: string, tokens: TokenEntry[]): void {
  const temporary = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    Deno.writeTextFileSync(
      temporary,
      `${JSON.stringify({ version: 1, tokens }, null, 2)}\n`,
      { mode: 0o600 },
    );
    Deno.renameSync(temporary, path);
  } catch (error) {
    try {
      Deno.removeSync(temporary);
    } catch { /* never written */ }
    throw fileError(path, `can't be written (${(error as Error).message})`);
  }
}

/**
 * Makes a named token, stores its hash, and returns the token: the only
 * time it is ever seen.
 * @throws {UsageError} on a bad or taken name.
 * @example
 * ```ts ignore
 * const token = await createToken("/etc/stormlock/tokens.json", "ci", ["acquire"]);
 * ```
 */
export async function createToken(
  path: string,
  name: string,
  scopes: Scope[],
  resources?: string[],
): Promise<string> {
  if (!NAME.test(name)) {
    throw new UsageError(
      `Bad token name "${
        shorten(name, 40)
      }": use letters, digits and . _ @ : + / -, up to 128, e.g. ann or ci-deploy`,
    );
  }
  const tokens = readTokensFile(path);
  if (tokens.some((entry) => entry.name === name)) {
    throw new UsageError(
      `A token named "${name}" exists; revoke it first ("stormlock token revoke ${name}") or choose another name`,
    );
  }
  const token = `${TOKEN_PREFIX}${
    hex(crypto.getRandomValues(new Uint8Array(32)))
  }`;
  tokens.push({
    name,
    sha256: await tokenHash(token),
    scopes,
    ...(resources ? { resources } : {}),
    created: new Date().toISOString(),
  });
  writeTokensFile(path, tokens);
  return token;
}

/**
 * Removes a named token; a running server refuses it from its next request.
 * @returns Whether a token of that name existed.
 * @example
 * ```ts ignore
 * await revokeToken("/etc/stormlock/tokens.json", "ci");
 * ```
 */
export function revokeToken(path: string, name: string): boolean {
  const tokens = readTokensFile(path);
  const kept = tokens.filter((entry) => entry.name !== name);
  if (kept.length === tokens.length) return false;
  writeTokensFile(path, kept);
  return true;
}

/**
 * A tokens file as a running server reads it: checked again on every
 * request (a `stat`), and re-read when it changed, so a revoked token is
 * refused at once without a restart.
 * @example
 * ```ts ignore
 * const tokens = new TokenStore("/etc/stormlock/tokens.json");
 * const who = await tokens.identify("slk_…");
 * ```
 */
export class TokenStore {
  /** The tokens file. */
  readonly path: string;
  #stamp = "";
  #entries: TokenEntry[] = [];

  /**
   * Reads the tokens file once; later it is read again when it changes.
   * @param path The tokens file; a missing one holds no tokens yet.
   * @throws {ConfigError} when it can't be read or is malformed.
   */
  constructor(path: string) {
    this.path = path;
    this.#reload();
  }

  #reload(): void {
    let stamp: string;
    try {
      const info = Deno.statSync(this.path);
      stamp = `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw fileError(
          this.path,
          `can't be read (${(error as Error).message})`,
        );
      }
      stamp = "missing";
    }
    if (stamp === this.#stamp) return;
    this.#entries = readTokensFile(this.path);
    this.#stamp = stamp;
  }

  /** The identity of `token`, or `undefined` when no named token matches. */
  async identify(token: string): Promise<Identity | undefined> {
    this.#reload();
    const digest = await tokenHash(token);
    let found: TokenEntry | undefined;
    for (const entry of this.#entries) {
      if (sameDigest(digest, entry.sha256)) found = entry;
    }
    if (!found) return undefined;
    return {
      principal: found.name,
      scopes: found.scopes,
      resources: found.resources,
      via: "token",
    };
  }
}
